"""Building a multi-task gradient method by name, from the installed plugins.

A method (PCGrad, UPGrad, MGDA, ...) turns the per-task gradients, and where it needs them the task
losses, into the one gradient a single-gradient optimizer steps on; a losses-only method (UW, DWA,
FAMO, ...) turns the task losses into the one scalar the step backpropagates.
A plugin declares it as a ``MethodPreset`` returned by its ``mtbench_methods()`` hook; the preset
and the ``Method`` protocol are in mtbench.presets. This module imports no torch.
"""

from __future__ import annotations

from typing import Any

from .plugins import load_registry
from .presets import Method

__all__ = ["build_method"]


def build_method(name: str, num_tasks: int = 2, **settings: Any) -> Method:
    """Build the method called ``name`` from the installed plugins and ``$MTBENCH_PLUGINS``.

    ``settings`` override the preset's defaults and are checked as ``--set method.key=value`` is.
    """
    preset = load_registry().get_method(name)
    return preset.build(num_tasks, **preset.resolve(settings))
