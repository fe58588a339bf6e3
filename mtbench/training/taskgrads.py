"""Every task's gradient of every parameter, kept apart in one ``[T, N]`` buffer, for both data shapes.

NOTE [per-task gradients]: the leaves' ``.grad`` are views into one contiguous buffer per dtype and
device (row t = task t), zeroed before the pass, so autograd accumulates straight into it; a
distributed run all-reduces each buffer in place, and a method reads the shared parameters'
Jacobian as the buffer's leading columns without a copy. Which task reaches which parameter is
learnt from the first pass (before the buffer exists); a parameter a task never reaches (another
task's head) gets None, so a head's parameters get only their own task's gradient.

- Per-task batches: each task runs the model on its own images through its own detached aliases
  of the parameters (no copies); one backward pass over the weighted sum of the task losses then
  leaves each task's gradient on its own leaves, at the cost of a single backward.
- Shared batch: one forward pass of the one batch through the parameters themselves, then one
  backward pass per task over the retained graph, each into its row of the buffer (the
  ``.grad`` of the parameters pointed at that row). See NOTE [shared-batch gradients] for why
  this and not a batched (vmap'd) backward.

NOTE [shared-batch gradients]: measured side by side in one process (benchmarks/shared_batch_grads.py:
a ResNet-18 backbone with three heads, T = 3, batch 8, 64x64 images, CPU, one thread, median of 7
interleaved rounds): one forward + one backward of the summed losses 207 ms (1.00x, the floor);
one forward + T backward passes over the retained graph 463 ms (2.24x); one forward + a batched
vector-Jacobian product, ``autograd.grad(losses, params, eye(T), is_grads_batched=True)``, and the
copy of its results into the buffer 627 ms (3.03x); T forwards through per-task aliases + one
backward (the per-task-batch route) 649 ms (3.14x). The T backward passes win and are what this
module does: they write into the buffer directly, while the batched backward does the same T
products through vmap's batched kernels (no cheaper on this CPU) and then copies [T, N] more. The
extra cost over the floor is the T - 1 further backward passes; the forward is paid once. torchjd's autojac
makes the same trade: it vmaps the vector-Jacobian product over chunks of the stacked losses
(``parallel_chunk_size``; a chunk of 1 is this sequential route, its advice when vmap misbehaves),
and gives the task-specific parameters each only its task's gradient, as the reach here does.
torchjd's autogram engine forms the Gramian J J^T without J: right for a method that reads only the
Gramian, but the optimizers and the other methods need the gradients themselves.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch.func import functional_call

from .. import distributed, ops

__all__ = ["TaskGradientBuffer", "weighted_loss_sum"]


def weighted_loss_sum(weights: Sequence[float], losses: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """``w_0 * L_0 + w_1 * L_1 + ...`` over the losses computed (a task not run this step is None and
    left out), added left to right so every route sums in the same order."""
    terms = [w * loss for w, loss in zip(weights, losses) if loss is not None]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


class TaskGradientBuffer:
    """Every task's gradient of every parameter from one forward pass, in a ``[T, N]`` buffer (see the
    module's NOTE [per-task gradients])."""

    def __init__(self, ctx: Any):  # a gradients.StepContext
        self.ctx = ctx
        self.num_tasks = len(ctx.tasks)
        self.reach: list[list[bool]] | None = None  # reach[t][i]: task t reaches parameter i
        self.views: list[list[torch.Tensor | None]] = []
        self.buffers: list[torch.Tensor] = []
        self.shared: list[int] = []  # indices of the parameters two tasks or more reach

    def compute(self, batch, weights: Sequence[float]):
        """(raw losses, weighted losses, task_grads); task_grads is None when a loss is not finite.

        The gradients are those of ``weights[t] * L_t``; the weighted losses a 1-d float64 tensor.
        """
        ctx = self.ctx
        ctx.count(forward=1)
        if self.reach is not None:
            for buffer in self.buffers:
                buffer.zero_()
        if ctx.shared_batch:
            with ctx.autocast():
                loss_tensors = ctx.losses_of(ctx.net, batch)
            leaves = None
        else:
            leaves = [[p.detach().requires_grad_() for p in ctx.params] for _ in range(self.num_tasks)]
            if self.reach is not None:
                for task_leaves, task_views in zip(leaves, self.views):
                    for leaf, view in zip(task_leaves, task_views):
                        leaf.grad = view
            with ctx.autocast():
                loss_tensors = ctx.losses_of(self._aliased(leaves), batch)
        losses = ctx.reduced(loss_tensors)
        weighted = torch.tensor([w * x for w, x in zip(weights, losses) if x is not None], dtype=torch.float64)
        if not all(math.isfinite(x) for x in losses if x is not None):
            return losses, weighted, None
        if leaves is not None:
            ctx.count(backward=1)
            weighted_loss_sum(weights, loss_tensors).backward()
            if self.reach is None:
                self._layout([[leaf.grad for leaf in task] for task in leaves])
        else:
            self._backward_each(weights, loss_tensors)
        if ctx.dist.enabled:
            for buffer in self.buffers:
                distributed.all_reduce_mean_in_place_(buffer)
        return losses, weighted, self.views

    def _aliased(self, leaves: list[list[torch.Tensor]]):
        """A callable like the model whose task t runs through task t's aliases of the parameters."""
        ctx, names = self.ctx, self.ctx.names

        def call(*inputs):
            outputs = [None] * len(inputs)
            for t, x in enumerate(inputs):
                if x is not None:
                    only = [x if i == t else None for i in range(len(inputs))]
                    outputs[t] = functional_call(ctx.model, dict(zip(names, leaves[t])), tuple(only))[t]
            return tuple(outputs)

        return call

    def _backward_each(self, weights: Sequence[float], loss_tensors: list[torch.Tensor | None]) -> None:
        """Shared batch: one backward pass per task over the one forward's graph, each into its row."""
        ctx, params = self.ctx, self.ctx.params
        tasks = [t for t, loss in enumerate(loss_tensors) if loss is not None]
        if self.reach is None:
            grads = [[None] * len(params) for _ in range(self.num_tasks)]
            for t in tasks:
                ctx.count(backward=1)
                found = torch.autograd.grad(weights[t] * loss_tensors[t], params, retain_graph=t != tasks[-1],
                                            allow_unused=True)
                grads[t] = list(found)
            self._layout(grads)
            return
        for t in tasks:
            ctx.count(backward=1)
            reached = []
            for param, view in zip(params, self.views[t]):
                param.grad = view
                if view is not None:
                    reached.append(param)
            (weights[t] * loss_tensors[t]).backward(retain_graph=t != tasks[-1], inputs=reached)
        for param in params:
            param.grad = None

    def _layout(self, grads: list[list[torch.Tensor | None]]) -> None:
        """Build the buffers from the first pass's gradients: shared parameters first, then each task's own."""
        params, T = self.ctx.params, self.num_tasks
        self.reach = [[g is not None for g in task] for task in grads]
        reached_by = [sum(task[i] for task in self.reach) for i in range(len(params))]
        self.shared = [i for i, n in enumerate(reached_by) if n >= 2]
        order = self.shared + [i for i, n in enumerate(reached_by) if n == 1]
        groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        for i in order:
            groups.setdefault((params[i].dtype, params[i].device), []).append(i)
        self.views = [[None] * len(params) for _ in range(T)]
        for (dtype, device), members in groups.items():
            buffer = torch.zeros(T, sum(params[i].numel() for i in members), dtype=dtype, device=device)
            self.buffers.append(buffer)
            offset = 0
            for i in members:
                n = params[i].numel()
                for t in range(T):
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
        """Over the shared parameters: the cosine between the first two tasks' gradients and their norm
        ratio (T = 2 as before; for more tasks, the mean cosine over the pairs as ``grad_cosine_mean``)."""
        matrices = self.shared_matrices()
        if not matrices or self.num_tasks < 2:
            return {"grad_cosine": None, "grad_norm_ratio": None}
        # One pass over the buffer's shared columns, read in place (a copy would cost as much as the step).
        gram = sum(ops.gramian([m]).double() for m in matrices)
        norms = gram.diagonal().sqrt().tolist()
        n0, n1 = norms[0], norms[1]
        out = {"grad_cosine": gram[0, 1].item() / (n0 * n1) if n0 * n1 > 0 else None,
               "grad_norm_ratio": n0 / n1 if n1 > 0 else None}
        if self.num_tasks > 2:
            pairs = [gram[a, b].item() / (norms[a] * norms[b]) for a in range(self.num_tasks)
                     for b in range(a + 1, self.num_tasks) if norms[a] * norms[b] > 0]
            out["grad_cosine_mean"] = sum(pairs) / len(pairs) if pairs else None
        return out

    def sync_buffers(self) -> None:
        """On CPU ranks normalise with their own batch: rank 0's BatchNorm statistics win (see the trainer)."""
        if self.ctx.dist.enabled and self.ctx.device.type != "cuda":
            distributed.broadcast_(list(self.ctx.model.buffers()))
