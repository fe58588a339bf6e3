"""``MethodPreset``: one multi-task gradient method with its settings, as a plugin declares it, what a
method reads of each step, and the ``Method`` protocol its factory returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol, Sequence

from ..errors import ConfigError
from .base import Factory, Preset
from .params import Param

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["COSTS", "OPTIONAL", "REQUIRED", "REQUIRED_LOSS", "SUM_METHOD", "Method", "MethodPreset"]

SUM_METHOD = "sum"  # the plain weighted loss: the default multi-task method, computed by the trainer itself

# What a method object must have: ``combine`` when it reads the tasks' gradients, ``scalarize`` when it
# reads the losses only (``reads="loss"``); the OPTIONAL ones must be callable when present.
REQUIRED = ("combine", "state_dict", "load_state_dict")
REQUIRED_LOSS = ("scalarize", "state_dict", "load_state_dict")
OPTIONAL = ("parameters", "after_step", "bind")

# What a method reads of each step, as its preset declares it (``MethodPreset.reads``), and what a
# training step with it costs beyond the forward passes, as `mtbench list` shows it. "T gradients":
# the trainer keeps the tasks' gradients apart, one backward pass into the [T, N] buffer
# (training/gradients.py, TaskGradientBuffer); then the method's own passes over the buffer.
COSTS = {
    "loss": "one backward (weighted loss)",
    "weights": "T gradients + weighted sum",
    "norms": "T gradients + task norms + weighted sum",
    "gramian": "T gradients + Gramian + weighted sum",
    "jacobian": "T gradients + Jacobian copy + aggregator",
    "gradients": "T gradients + the method's combine",
}


class Method(Protocol):
    """The object a ``MethodPreset``'s factory returns; the trainer calls it once per step.

    Optional, looked up with ``getattr``:

    - ``parameters()``: learnable tensors (loss weights, say) that the run's optimizer trains as a
      parameter group of their own; ``combine`` sets their ``.grad``, or the backward pass of
      ``scalarize``'s result does.
    - ``last_weights``: the task weights used by the last ``combine`` (a 1-d tensor of T values),
      or None when the method has no weights to show.

    NOTE [losses-only methods]: a preset with ``reads="loss"`` never sees gradients. The trainer calls
    ``scalarize(losses, step) -> Tensor`` instead of ``combine``: ``losses`` is the 1-d tensor of the T
    weighted task losses, attached to the autograd graph, and the 0-d result is backpropagated once
    (one backward pass, as for ``sum``). Such a method must have ``scalarize`` (``combine`` is then
    optional: the built-in ones keep it, the chain rule on the tasks' gradients, for the method
    benchmark). Its ``last_weights`` are the derivatives of the result by the T losses. ``step`` tells
    a second evaluation of the same step (an optimizer that takes a closure, SAM say, computes the
    gradient at a second point) from the next step: a method's state advances once per step.
    Optional for such a method:

    - ``after_step(recompute)``: called after the optimizer step; ``recompute()`` returns the same
      batch's T weighted losses at the new parameters, without gradient (one extra forward pass, paid
      only when called; FAMO's weight update).
    - ``bind(shared)``: called once before training with the parameters of the model's last shared
      layer (GradNorm reads the task gradients there only).
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


@dataclass(frozen=True)
class MethodPreset(Preset):
    """One multi-task gradient method with its settings, as a plugin declares it.

    ``factory(num_tasks, **settings)`` builds the ``Method`` (a callable, or its dotted name
    ``package.module:attr``, imported when a run builds it); ``defaults`` holds its settings under
    the factory's keyword names and ``params`` says what ``--set method.key=value`` accepts (a
    default without a Param accepts values of its own type). ``reads`` says what ``combine`` needs
    of the tasks' gradients, a key of COSTS: ``loss`` (nothing: the step is one backward pass of the
    method's ``scalarize``, as for ``sum``), ``weights`` (it only weights them), ``norms``,
    ``gramian``, ``jacobian``, or ``gradients`` (anything: the default). ``extra_cost`` names what a
    step with it pays beyond that, in words (GradNorm's backward passes to the last shared layer,
    FAMO's forward pass without gradient). ``needs_losses``: it reads the task losses.
    ``description`` is one paragraph naming the paper. ``order`` places the method in listings (ties
    keep discovery order). ``source`` is filled in by the registry: the plugin that brought it and
    where from.
    """

    KIND: ClassVar[str] = "method"

    name: str
    title: str
    factory: Factory
    defaults: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Param] = field(default_factory=dict)
    description: str = ""
    reads: str = "gradients"
    extra_cost: str = ""
    needs_losses: bool = False
    order: int = 100
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.reads not in COSTS:
            raise ValueError(f"method {self.name!r}: reads={self.reads!r}, expected one of {', '.join(COSTS)}")

    @property
    def needs_grads(self) -> bool:
        """Whether a run with this method keeps the tasks' gradients apart (every ``reads`` but ``loss``)."""
        return self.reads != "loss"

    def cost(self) -> str:
        """What a training step with this method costs, in words (from ``reads`` and ``extra_cost``)."""
        return f"{COSTS[self.reads]} + {self.extra_cost}" if self.extra_cost else COSTS[self.reads]

    def build(self, num_tasks: int, **settings: Any) -> Method:
        """The method object for ``num_tasks`` tasks; ConfigError when the plugin fails or returns
        something that is not a Method."""
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
            raise ConfigError(f"{self.label()}: num_tasks={num_tasks!r} is not allowed: expected an integer >= 1")
        method = self._call_factory(num_tasks, **settings)
        required = REQUIRED_LOSS if self.reads == "loss" else REQUIRED
        missing = [name for name in required if not callable(getattr(method, name, None))]
        missing += [name for name in OPTIONAL if hasattr(method, name) and not callable(getattr(method, name))]
        if missing:
            raise self._returned(method, f"an object with callable {', '.join(missing)}")
        return method
