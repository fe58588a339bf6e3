"""The hooks a plugin may implement (project name ``mtbench``); a plugin implements any of them."""

from __future__ import annotations

import pluggy

from ..presets import MethodPreset, OptimizerPreset
from ..workloads import Workload

__all__ = ["PROJECT", "hookimpl", "hookspec", "mtbench_methods", "mtbench_optimizers", "mtbench_workloads"]

PROJECT = "mtbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mtbench_optimizers() -> list[OptimizerPreset]:
    """Return the optimizer presets this plugin brings.

    Called once per plugin when the registry loads (at the first command that needs optimizers).
    Each preset's ``name`` must be unique across all plugins; a duplicate is reported as an error
    naming both plugins and the later one is dropped.
    """


@hookspec
def mtbench_methods() -> list[MethodPreset]:
    """Return the multi-task gradient methods this plugin brings (see ``mtbench.Method``).

    Called once per plugin when the registry loads, right after ``mtbench_optimizers`` where the
    plugin has both. Method names are unique across all plugins, apart from optimizer names; a
    duplicate is reported as an error naming both plugins and the later one is dropped.
    """


@hookspec
def mtbench_workloads() -> list[Workload]:
    """Return the workloads this plugin brings: tasks, their metrics, the model and data builders
    (see ``mtbench.Workload`` and NOTE [workload contract] in mtbench.workloads.types).

    Called once per plugin when the registry loads, after ``mtbench_methods``. Workload names are
    unique across all plugins; a duplicate is reported as an error naming both plugins and the later
    one is dropped.
    """
