"""Multi-task gradient methods: the object a plugin's factory returns and how mtbench builds one.

A method (PCGrad, UPGrad, MGDA, uncertainty weighting, ...) turns the per-task gradients, and
where it needs them the task losses, into the one gradient a single-gradient optimizer steps on.
A plugin declares it as a ``MethodPreset`` (mtbench.presets) returned by its ``mtbench_methods()``
hook. This module imports no torch: the names are public in ``mtbench`` and importing it must stay
cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from .plugins import load_registry

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["Method", "build_method"]


class Method(Protocol):
    """The object a ``MethodPreset``'s factory returns; the trainer calls it once per step.

    Optional, looked up with ``getattr``:

    - ``parameters()``: learnable tensors (loss weights, say) that the run's optimizer trains as a
      parameter group of their own; ``combine`` sets their ``.grad``.
    - ``last_weights``: the task weights used by the last ``combine`` (a 1-d tensor of T values),
      or None when the method has no weights to show.
    """

    def combine(
        self, task_grads: Sequence[Sequence[Tensor | None]], losses: Tensor, step: int
    ) -> list[Tensor | None]:
        """The gradient to step on, one entry per parameter.

        ``task_grads[t][i]`` is task t's gradient of parameter i, or None where task t does not
        reach it; ``losses`` is the 1-d tensor of the T task losses, already scaled by the task
        weights; ``step`` counts from 1. An entry is None where no task reaches the parameter.
        The trainer checks the result (mtbench.training.contract): one finite gradient per
        parameter reached, of its shape, dtype and device; a MethodError names the method otherwise.
        """

    def state_dict(self) -> dict[str, Any]:
        """What ``load_state_dict`` needs to continue identically; saved in the run's checkpoint, so it
        holds only what ``torch.load(weights_only=True)`` loads (tensors, numbers, strings, None, and
        lists, tuples and dicts of them): the trainer checks it before training and at each checkpoint."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def build_method(name: str, num_tasks: int = 2, **settings: Any) -> Method:
    """Build the method called ``name`` from the installed plugins and ``$MTBENCH_PLUGINS``.

    ``settings`` override the preset's defaults and are checked as ``--set method.key=value`` is.
    """
    preset = load_registry().get_method(name)
    return preset.build(num_tasks, **preset.resolve(settings))
