"""How the gradient the optimizer steps on is made: the one seam where runs differ.

- ``CombinedLoss``: the weighted sum of the task losses, one backward pass (the method ``sum``).
- ``LossMethod``: a method that reads only the losses (``reads="loss"``) turns them into the one
  scalar that is backpropagated once (NOTE [losses-only methods] in mtbench.presets.method).
- ``OptimizerTaskGradients``: each task's gradient apart, handed to an optimizer that takes them
  (``preset.per_task_gradients``, e.g. MTAdamV2).
- ``MethodGradients``: each task's gradient apart, turned into one by a multi-task method
  (PCGrad, UPGrad, ...), then an ordinary ``optimizer.step()``.

The last two share ``TaskGradientBuffer`` (taskgrads.py): every task's gradient in one ``[T, N]``
buffer. Every strategy makes "the gradient of this batch" in one method, ``gradient(batch)``, which
the step calls and, for an optimizer that needs a closure (``"closure" in preset.needs``: SAM and
its family), the closure calls again at the optimizer's chosen point; the passes are counted.

A batch is what ``Trainer.epoch_batches`` yields: per-task batches, a ``(images, target)`` pair per
task of the workload (``(None, None)`` for a task the run does not train); a shared batch, one
``(images, (target_0, ..., target_{T-1}))`` pair.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from .. import distributed
from ..config import RunConfig
from ..distributed import Dist
from ..errors import MethodError
from ..text import failure_reason
from .contract import CheckedMethod
from .taskgrads import TaskGradientBuffer, weighted_loss_sum

__all__ = ["CombinedLoss", "GradientStrategy", "LossMethod", "MethodGradients", "OptimizerTaskGradients",
           "StepContext", "StepResult", "TaskGradientBuffer", "all_finite"]


@dataclass
class StepResult:
    """The raw task losses (averaged over ranks), whether the step was taken, and what it measured."""

    losses: list[float | None]  # None for a task the run does not train (--tasks)
    taken: bool
    diagnostics: dict[str, float | None] = field(default_factory=dict)
    passes: dict[str, int] = field(default_factory=dict)  # forward / backward passes over the step's batch


@dataclass
class StepContext:
    """What every strategy works with; built once by the trainer."""

    config: RunConfig
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or it wrapped in DistributedDataParallel
    names: list[str]
    params: list[torch.Tensor]
    optimizer: torch.optim.Optimizer
    dist: Dist
    device: torch.device
    autocast: Callable[[], AbstractContextManager]
    scaler: Any = None
    losses: Sequence[Callable] = ()  # each workload task's loss(output, target)
    trained: Sequence[bool] = ()  # whether the run trains each task (--tasks)
    shared_batch: bool = False
    closure: bool = False  # the optimizer steps with a closure that recomputes the batch's gradient
    passes: dict[str, int] = field(default_factory=lambda: {"forward": 0, "backward": 0})

    @property
    def tasks(self) -> range:
        return range(len(self.losses))

    def count(self, forward: int = 0, backward: int = 0) -> None:
        self.passes["forward"] += forward
        self.passes["backward"] += backward

    def take_passes(self) -> dict[str, int]:
        """The passes counted since the last call (one step's)."""
        taken = dict(self.passes)
        self.passes.update(forward=0, backward=0)
        return taken

    def losses_of(self, call: Callable, batch) -> list[torch.Tensor | None]:
        """Each trained task's loss of ``batch`` through ``call`` (the model, or a stand-in), None for the others."""
        if self.shared_batch:
            images, targets = batch
            images, *targets = self.to_device(images, *targets)
            outputs = call(images)
            return [loss(out, y) if on else None
                    for loss, on, out, y in zip(self.losses, self.trained, outputs, targets)]
        moved = [self.to_device(x, y) if x is not None else (None, None) for x, y in batch]
        outputs = call(*(x for x, _ in moved))
        return [loss(out, y) if x is not None else None
                for loss, (x, y), out in zip(self.losses, moved, outputs)]

    def reduced(self, losses: Sequence[torch.Tensor | None]) -> list[float | None]:
        """The task losses averaged over ranks (None for a task not trained): a NaN on any rank is a
        NaN on all, so all decide alike."""
        computed = torch.stack([loss.detach().float() for loss in losses if loss is not None])
        if self.dist.enabled:
            distributed.all_reduce_mean_([computed])
        values = iter(computed.tolist())
        return [None if loss is None else next(values) for loss in losses]

    def to_device(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        return [t.to(self.device, non_blocking=True) for t in tensors]


def _loss_or_nan(total: torch.Tensor | None) -> torch.Tensor:
    """What a closure returns: the recomputed loss, NaN when it was not finite (no gradient was made)."""
    return total.detach() if total is not None else torch.tensor(math.nan)


def all_finite(losses: list[float | None]) -> bool:
    return all(math.isfinite(x) for x in losses if x is not None)


class GradientStrategy:
    """Makes one optimizer step from one batch."""

    uses_task_gradients = False

    def __init__(self, ctx: StepContext):
        self.ctx = ctx

    def step(self, batch, step: int) -> StepResult:
        raise NotImplementedError

    def _closure(self, make: Callable[[], Any]) -> Callable[[], torch.Tensor]:
        """The closure an optimizer that needs one calls: the same batch's gradient again, its loss returned."""
        def closure() -> torch.Tensor:
            with torch.enable_grad():
                return make()
        return closure

    def _result(self, losses, taken: bool, diagnostics: dict | None = None) -> StepResult:
        return StepResult(losses, taken, diagnostics or {}, self.ctx.take_passes())

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class CombinedLoss(GradientStrategy):
    """``sum_t w_t * s_t * L_t`` over the trained tasks, one backward pass, ``optimizer.step()``.

    A single-task run (``--tasks``) computes only its task, with its loss scale alone
    (``RunConfig.loss_weights``).
    """

    def gradient(self, batch) -> tuple[list[float | None], torch.Tensor | None]:
        """The batch's losses and the weighted total, its gradient in the parameters' ``.grad``
        (total None, and no backward pass, when a loss is not finite)."""
        ctx = self.ctx
        ctx.count(forward=1)
        with ctx.autocast():
            loss_tensors = ctx.losses_of(ctx.net, batch)
        losses = ctx.reduced(loss_tensors)
        if not all_finite(losses):
            return losses, None
        total = self.objective(loss_tensors, batch)
        ctx.optimizer.zero_grad(set_to_none=True)
        ctx.count(backward=1)
        (ctx.scaler.scale(total) if ctx.scaler is not None else total).backward()
        return losses, total

    def objective(self, loss_tensors: list[torch.Tensor | None], batch) -> torch.Tensor:
        return weighted_loss_sum(self.ctx.config.loss_weights, loss_tensors)

    def step(self, batch, step: int) -> StepResult:
        ctx = self.ctx
        self.current_step = step
        losses, total = self.gradient(batch)
        if total is None:
            return self._result(losses, False)
        if ctx.scaler is not None:
            ctx.scaler.step(ctx.optimizer)
            ctx.scaler.update()
        elif ctx.closure:
            ctx.optimizer.step(self._closure(lambda: _loss_or_nan(self.gradient(batch)[1])))
        else:
            ctx.optimizer.step()
        self.after_step(batch)
        return self._result(losses, True, self.diagnostics())

    def after_step(self, batch) -> None:
        pass

    def diagnostics(self) -> dict[str, float | None]:
        return {}


class LossMethod(CombinedLoss):
    """A losses-only method (``reads="loss"``): ``method.scalarize(weighted losses, step)`` is
    backpropagated once; ``after_step(recompute)`` may ask for the same batch's losses at the new
    parameters (one forward pass without gradient, counted in the step)."""

    def __init__(self, ctx: StepContext, method, label: str, shared: Sequence[torch.Tensor]):
        super().__init__(ctx)
        self.method, self.label = method, label
        self.checked = CheckedMethod(method, label, ctx.names, ctx.params)  # its state and weights checked
        self.current_step = 0
        bind = getattr(method, "bind", None)
        if callable(bind):
            bind(list(shared))

    def weighted(self, loss_tensors: list[torch.Tensor | None]) -> torch.Tensor:
        """The 1-d tensor of the T weighted task losses, attached to the graph (0 for a task not trained:
        only sum takes a single-task run, see check_combination)."""
        weights = self.ctx.config.loss_weights
        present = next(loss for loss in loss_tensors if loss is not None)
        losses = torch.stack([w * loss.float() if loss is not None else present.new_zeros(())
                              for w, loss in zip(weights, loss_tensors)])
        if not self.ctx.dist.enabled:
            return losses
        # NOTE [losses-only methods across ranks]: the method sees the losses averaged over ranks (their
        # values), so its decisions, its state and the gradients of its own weights agree on every rank,
        # while the model's gradient flows through this rank's losses and DDP averages it as for sum.
        mean = losses.detach().clone()
        distributed.all_reduce_mean_([mean])
        return losses + (mean - losses.detach())

    def objective(self, loss_tensors, batch) -> torch.Tensor:
        try:
            total = self.method.scalarize(self.weighted(loss_tensors), self.current_step)
        except Exception as exc:
            raise MethodError(f"{self.label}: its scalarize {failure_reason(exc)} at step {self.current_step}") from None
        if not isinstance(total, torch.Tensor) or total.dim() != 0 or not total.requires_grad:
            what = type(total).__name__ if not isinstance(total, torch.Tensor) else f"a tensor of shape {tuple(total.shape)}"
            raise MethodError(f"{self.label}: its scalarize returned {what} at step {self.current_step}: expected "
                              "a 0-d tensor attached to the losses' graph")
        return total

    def after_step(self, batch) -> None:
        after = getattr(self.method, "after_step", None)
        if not callable(after):
            return
        ctx = self.ctx

        def recompute() -> torch.Tensor:
            ctx.count(forward=1)
            with torch.no_grad(), ctx.autocast():
                return self.weighted(ctx.losses_of(ctx.net, batch))

        after(recompute)

    def diagnostics(self) -> dict[str, float | None]:
        weights = self.checked.last_weights
        if weights is None:
            return {}
        return {f"method_weight_{task}": v for task, v in zip(self.ctx.config.workload_tasks or (), weights)}

    def state_dict(self) -> dict[str, Any]:
        # An empty state (sum's) needs no check, and sum's checkpoints stay as they were.
        try:
            empty = self.method.state_dict() == {}
        except Exception:
            empty = False  # the checked call names the failure
        state = {} if empty else self.checked.state_dict()
        return {"method": state} if state else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state.get("method", {}))


class OptimizerTaskGradients(GradientStrategy):
    """The tasks' gradients handed to an optimizer that takes them apart: ``optimizer.step(task_grads)``.

    The task weights are the optimizer's own (``task_weights``), so the gradients are those of the
    loss-scaled task losses.
    """

    uses_task_gradients = True

    def __init__(self, ctx: StepContext):
        super().__init__(ctx)
        self.grads = TaskGradientBuffer(ctx)

    def gradient(self, batch):
        return self.grads.compute(batch, self.ctx.config.loss_scale)

    def step(self, batch, step: int) -> StepResult:
        losses, weighted, task_grads = self.gradient(batch)
        if task_grads is None:
            return self._result(losses, False)
        if self.ctx.closure:
            self.ctx.optimizer.step(task_grads, closure=self._closure(lambda: self.gradient(batch)[1].sum()))
        else:
            self.ctx.optimizer.step(task_grads)
        self.grads.sync_buffers()
        return self._result(losses, True, self.grads.conflict())


class MethodGradients(GradientStrategy):
    """A multi-task method combines the tasks' gradients into the one ``.grad`` the optimizer steps on.

    The method sees the gradients and losses of the weighted, loss-scaled tasks
    (``w_t * s_t * L_t``): ``--task-weights`` scale the tasks before the method balances them.
    """

    uses_task_gradients = True

    def __init__(self, ctx: StepContext, method, label: str):
        """``method`` is the object a MethodPreset built, ``label`` names it and its plugin (``preset.label()``):
        what it returns is checked where it enters (``CheckedMethod``)."""
        super().__init__(ctx)
        self.method = CheckedMethod(method, label, ctx.names, ctx.params)
        self.grads = TaskGradientBuffer(ctx)
        self.weights = ctx.config.loss_weights

    def gradient(self, batch, step: int):
        """The batch's losses, weighted losses and whether it is usable; the method's combination of the
        tasks' gradients set as the parameters' ``.grad``."""
        losses, weighted, task_grads = self.grads.compute(batch, self.weights)
        if task_grads is None:
            return losses, weighted, False
        self.ctx.optimizer.zero_grad(set_to_none=True)
        combined = self.method.combine(task_grads, weighted, step)
        for param, grad in zip(self.ctx.params, combined):
            param.grad = grad
        return losses, weighted, True

    def step(self, batch, step: int) -> StepResult:
        losses, _, usable = self.gradient(batch, step)
        if not usable:
            return self._result(losses, False)
        if self.ctx.closure:
            self.ctx.optimizer.step(self._closure(lambda: self.gradient(batch, step)[1].sum()))
        else:
            self.ctx.optimizer.step()
        self.grads.sync_buffers()
        diagnostics = self.grads.conflict()
        weights = self.method.last_weights
        if weights is not None:
            names = self.ctx.config.workload_tasks or ()
            diagnostics.update({f"method_weight_{task}": v for task, v in zip(names, weights)})
        return self._result(losses, True, diagnostics)

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
