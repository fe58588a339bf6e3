"""How the gradient the optimizer steps on is made: the one seam where runs differ.

- ``CombinedLoss``: the weighted sum of the task losses, one backward pass (the method ``sum``).
- ``OptimizerTaskGradients``: each task's gradient apart, handed to an optimizer that takes them
  (``preset.per_task_gradients``, e.g. MTAdamV2).
- ``MethodGradients``: each task's gradient apart, turned into one by a multi-task method
  (PCGrad, UPGrad, ...), then an ordinary ``optimizer.step()``.

The last two share ``TaskGradientBuffer``: one backward pass leaves every task's gradient in one
contiguous ``[T, N]`` buffer per dtype and device, which a distributed run all-reduces in place.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call

from .. import distributed, ops
from ..config import SUM_METHOD, TASKS, RunConfig
from ..data.coco import IGNORE_INDEX
from ..distributed import Dist
from .contract import CheckedMethod


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy averaged over the labelled pixels (0 when a batch has none, never NaN)."""
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp_min(1)


def task_losses(out_c: torch.Tensor, yc: torch.Tensor, out_s: torch.Tensor, ys: torch.Tensor):
    """(classification loss, segmentation loss) of one batch of each task."""
    return F.cross_entropy(out_c.float(), yc), masked_cross_entropy(out_s, ys)


@dataclass
class StepResult:
    """The raw task losses (averaged over ranks), whether the step was taken, and what it measured."""

    losses: list[float | None]  # None for a task the run does not train (--tasks)
    taken: bool
    diagnostics: dict[str, float | None] = field(default_factory=dict)


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

    def reduced(self, loss_c: torch.Tensor | None, loss_s: torch.Tensor | None) -> list[float | None]:
        """The task losses averaged over ranks (None for a task not trained): a NaN on any rank is a
        NaN on all, so all decide alike."""
        computed = [loss for loss in (loss_c, loss_s) if loss is not None]
        losses = torch.stack([loss.detach().float() for loss in computed])
        if self.dist.enabled:
            distributed.all_reduce_mean_([losses])
        values = iter(losses.tolist())
        return [None if loss is None else next(values) for loss in (loss_c, loss_s)]

    def to_device(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        return [t.to(self.device, non_blocking=True) for t in tensors]


class GradientStrategy:
    """Makes one optimizer step from one batch of each task."""

    uses_task_gradients = False

    def __init__(self, ctx: StepContext):
        self.ctx = ctx

    def step(self, xc, yc, xs, ys, step: int) -> StepResult:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def all_finite(losses: list[float | None]) -> bool:
    return all(math.isfinite(x) for x in losses if x is not None)


class CombinedLoss(GradientStrategy):
    """``w_cls * s_cls * L_cls + w_seg * s_seg * L_seg``, one backward pass, ``optimizer.step()``.

    A single-task run (``--tasks cls`` or ``seg``) computes only its task, with weight 1
    (``RunConfig.loss_weights``).
    """

    def step(self, xc, yc, xs, ys, step: int) -> StepResult:
        ctx = self.ctx
        lw = ctx.config.loss_weights
        if len(ctx.config.tasks) == 1:
            return self._single_task(xc, yc, xs, ys, lw)
        xc, yc, xs, ys = ctx.to_device(xc, yc, xs, ys)
        with ctx.autocast():
            out_c, out_s = ctx.net(xc, xs)
            loss_c, loss_s = task_losses(out_c, yc, out_s, ys)
        losses = ctx.reduced(loss_c, loss_s)
        if not all_finite(losses):
            return StepResult(losses, False)
        return self._backward(lw[0] * loss_c + lw[1] * loss_s, losses)

    def _single_task(self, xc, yc, xs, ys, lw) -> StepResult:
        ctx = self.ctx
        with ctx.autocast():
            if ctx.config.tasks == ("cls",):
                xc, yc = ctx.to_device(xc, yc)
                loss_c, loss_s = F.cross_entropy(ctx.net(xc, None)[0].float(), yc), None
            else:
                xs, ys = ctx.to_device(xs, ys)
                loss_c, loss_s = None, masked_cross_entropy(ctx.net(None, xs)[1], ys)
        losses = ctx.reduced(loss_c, loss_s)
        if not all_finite(losses):
            return StepResult(losses, False)
        return self._backward(lw[0] * loss_c if loss_c is not None else lw[1] * loss_s, losses)

    def _backward(self, total: torch.Tensor, losses: list[float | None]) -> StepResult:
        ctx = self.ctx
        ctx.optimizer.zero_grad(set_to_none=True)
        if ctx.scaler is not None:
            ctx.scaler.scale(total).backward()
            ctx.scaler.step(ctx.optimizer)
            ctx.scaler.update()
        else:
            total.backward()
            ctx.optimizer.step()
        return StepResult(losses, True)


class TaskGradientBuffer:
    """Every task's gradient of every parameter from ONE backward pass, in a ``[T, N]`` buffer.

    NOTE [per-task gradients]: each task runs the model through its own detached aliases of the
    parameters (no copies). One backward pass over the sum of the task losses then leaves each
    task's gradient on its own leaves: the tasks' gradients stay apart at the cost of a single
    backward. The leaves' ``.grad`` are views into one contiguous buffer per dtype and device (row
    t = task t), zeroed before the pass, so autograd accumulates straight into it; a distributed run
    all-reduces each buffer in place, and a method reads the shared parameters' Jacobian as the
    buffer's leading columns without a copy. Which task reaches which parameter is learnt from
    the first pass (before the buffer exists); a parameter a task never reaches gets None.
    """

    def __init__(self, ctx: StepContext):
        self.ctx = ctx
        self.reach: list[list[bool]] | None = None  # reach[t][i]: task t reaches parameter i
        self.views: list[list[torch.Tensor | None]] = []
        self.buffers: list[torch.Tensor] = []
        self.shared: list[int] = []  # indices of the parameters two tasks or more reach

    def compute(self, xc, yc, xs, ys, weights: tuple[float, float]):
        """(raw losses, weighted losses, task_grads); task_grads is None when a loss is not finite.

        The gradients are those of ``weights[t] * L_t``; the weighted losses a 1-d tensor.
        """
        ctx = self.ctx
        xc, yc, xs, ys = ctx.to_device(xc, yc, xs, ys)
        leaves = [[p.detach().requires_grad_() for p in ctx.params] for _ in TASKS]
        if self.reach is not None:
            for buffer in self.buffers:
                buffer.zero_()
            for task_leaves, task_views in zip(leaves, self.views):
                for leaf, view in zip(task_leaves, task_views):
                    leaf.grad = view
        with ctx.autocast():
            out_c, _ = functional_call(ctx.model, dict(zip(ctx.names, leaves[0])), (xc, None))
            _, out_s = functional_call(ctx.model, dict(zip(ctx.names, leaves[1])), (None, xs))
            loss_c, loss_s = task_losses(out_c, yc, out_s, ys)
        losses = ctx.reduced(loss_c, loss_s)
        weighted = torch.tensor([w * x for w, x in zip(weights, losses)], dtype=torch.float64)
        if not all_finite(losses):
            return losses, weighted, None
        (weights[0] * loss_c + weights[1] * loss_s).backward()
        if self.reach is None:
            self._layout([[leaf.grad for leaf in task] for task in leaves])
        if ctx.dist.enabled:
            for buffer in self.buffers:
                distributed.all_reduce_mean_in_place_(buffer)
        return losses, weighted, self.views

    def _layout(self, grads: list[list[torch.Tensor | None]]) -> None:
        """Build the buffers from the first pass's gradients: shared parameters first, then each task's own."""
        params = self.ctx.params
        self.reach = [[g is not None for g in task] for task in grads]
        reached_by = [sum(task[i] for task in self.reach) for i in range(len(params))]
        self.shared = [i for i, n in enumerate(reached_by) if n >= 2]
        order = self.shared + [i for i, n in enumerate(reached_by) if n == 1]
        groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        for i in order:
            groups.setdefault((params[i].dtype, params[i].device), []).append(i)
        self.views = [[None] * len(params) for _ in TASKS]
        for (dtype, device), members in groups.items():
            buffer = torch.zeros(len(TASKS), sum(params[i].numel() for i in members), dtype=dtype, device=device)
            self.buffers.append(buffer)
            offset = 0
            for i in members:
                n = params[i].numel()
                for t in range(len(TASKS)):
                    if self.reach[t][i]:
                        view = buffer[t, offset:offset + n].view_as(params[i])
                        view.copy_(grads[t][i])
                        self.views[t][i] = view
                offset += n

    def shared_matrices(self) -> list[torch.Tensor]:
        """The Jacobian of the shared parameters, ``[T, N_shared]`` per buffer, as views (no copy)."""
        n_shared = {id(b): 0 for b in self.buffers}
        params = self.ctx.params
        for i in self.shared:
            buffer = next(b for b in self.buffers if b.dtype == params[i].dtype and b.device == params[i].device)
            n_shared[id(buffer)] += params[i].numel()
        return [b[:, :n_shared[id(b)]] for b in self.buffers if n_shared[id(b)]]

    def conflict(self) -> dict[str, float | None]:
        """Over the shared parameters: the cosine between the two task gradients and their norm ratio."""
        matrices = self.shared_matrices()
        if not matrices:
            return {"grad_cosine": None, "grad_norm_ratio": None}
        # One pass over the buffer's shared columns, read in place (a copy would cost as much as the step).
        gram = sum(ops.gramian([m]).double() for m in matrices)
        n0, n1 = gram[0, 0].sqrt().item(), gram[1, 1].sqrt().item()
        return {"grad_cosine": gram[0, 1].item() / (n0 * n1) if n0 * n1 > 0 else None,
                "grad_norm_ratio": n0 / n1 if n1 > 0 else None}

    def sync_buffers(self) -> None:
        """On CPU ranks normalise with their own batch: rank 0's BatchNorm statistics win (see the trainer)."""
        if self.ctx.dist.enabled and self.ctx.device.type != "cuda":
            distributed.broadcast_(list(self.ctx.model.buffers()))


class OptimizerTaskGradients(GradientStrategy):
    """The tasks' gradients handed to an optimizer that takes them apart: ``optimizer.step(task_grads)``.

    The task weights are the optimizer's own (``task_weights``), so the gradients are those of the
    loss-scaled task losses.
    """

    uses_task_gradients = True

    def __init__(self, ctx: StepContext):
        super().__init__(ctx)
        self.grads = TaskGradientBuffer(ctx)

    def step(self, xc, yc, xs, ys, step: int) -> StepResult:
        losses, _, task_grads = self.grads.compute(xc, yc, xs, ys, self.ctx.config.loss_scale)
        if task_grads is None:
            return StepResult(losses, False)
        self.ctx.optimizer.step(task_grads)
        self.grads.sync_buffers()
        return StepResult(losses, True, self.grads.conflict())


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

    def step(self, xc, yc, xs, ys, step: int) -> StepResult:
        losses, weighted, task_grads = self.grads.compute(xc, yc, xs, ys, self.weights)
        if task_grads is None:
            return StepResult(losses, False)
        self.ctx.optimizer.zero_grad(set_to_none=True)
        combined = self.method.combine(task_grads, weighted, step)
        for param, grad in zip(self.ctx.params, combined):
            param.grad = grad
        self.ctx.optimizer.step()
        self.grads.sync_buffers()
        diagnostics = self.grads.conflict()
        weights = self.method.last_weights
        if weights is not None:
            diagnostics.update({f"method_weight_{task}": v for task, v in zip(TASKS, weights)})
        return StepResult(losses, True, diagnostics)

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
