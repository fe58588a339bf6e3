"""The machinery the multi-task gradient methods share: split, Gramian, weighted sum, scatter back.

A method's ``combine(task_grads, losses, step)`` gets each task's gradient of each parameter.
Shared parameters (reached by two tasks or more) get the method's aggregation of one Jacobian
``[T, N_shared]`` made of all of them, as torchjd's ``mtl_backward`` and LibMTL do; a parameter one
task reaches gets that task's gradient; a parameter no task reaches gets None.

Two routes to the shared gradient:

- Gramian route (``GramianWeightingMethod``): for methods whose task weights depend only on the
  Gramian ``J J^T``. The T x T Gramian is accumulated parameter by parameter, the weighting turns
  it into T weights, and each shared parameter gets ``sum_t w_t g_t``: the ``[T, N_shared]``
  matrix is never built.
- Jacobian route (``JacobianMethod``): for aggregators that need the matrix itself; the rows are
  concatenated, aggregated, and the result is cut back into parameters.

``LossWeightingMethod`` is the base of methods that weight the task losses (uncertainty
weighting, DWA, GradNorm): their step is on ``sum_t w_t L_t``, so every parameter, shared or
task-specific, gets ``sum_t w_t g_t``.

A method that draws random numbers draws them from its own stream, a ``MethodRng``
(mtbench.method_rng, named here too).
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from . import ops
from .errors import ConfigError
from .method_rng import MethodRng
from .text import format_value

__all__ = [
    "AggregationMethod",
    "GramianWeightingMethod",
    "JacobianMethod",
    "LossWeightingMethod",
    "MethodRng",
    "TaskGradients",
    "check_task_vector",
    "gramian",
    "weighted_sum",
]

Rows = Sequence[Sequence["Tensor | None"]]


def _state_dtype(tensors: Sequence[Tensor]) -> torch.dtype:
    """The dtype results are accumulated in for these gradients (see ``ops.state_dtype``)."""
    return ops.state_dtype(functools.reduce(torch.promote_types, (t.dtype for t in tensors)))


def _task_major(column: Sequence[Tensor | None]) -> Tensor | None:
    """One parameter's T task gradients as a ``[T, *shape]`` view, or None when that needs a copy.

    The view exists when the gradients are equally spaced, contiguous pieces of one storage, as
    rows of a ``[T, N]`` gradient buffer are: the compiled kernels then read them in place.
    """
    first = column[0]
    if any(g is None for g in column) or len(column) > ops.MAX_TASKS or first.numel() == 0:
        return None
    storage = first.untyped_storage().data_ptr()
    spacing = column[1].storage_offset() - first.storage_offset() if len(column) > 1 else first.numel()
    if spacing < first.numel():
        return None
    for t, g in enumerate(column):
        if (
            g.untyped_storage().data_ptr() != storage
            or g.storage_offset() != first.storage_offset() + t * spacing
            or g.shape != first.shape
            or g.dtype != first.dtype
            or not g.is_contiguous()
        ):
            return None
    return first.as_strided((len(column), *first.shape), (spacing, *first.stride()), first.storage_offset())


def _split_by_layout(rows: Rows) -> tuple[list[int], list[Tensor], list[int]]:
    """Parameters whose task gradients have a ``[T, *shape]`` view of one dtype (indices, views), and the rest."""
    views: list[Tensor] = []
    viewed: list[int] = []
    rest: list[int] = []
    for j in range(len(rows[0]) if rows else 0):
        view = _task_major([row[j] for row in rows])
        if view is not None and (not views or view.dtype == views[0].dtype):
            viewed.append(j)
            views.append(view)
        else:
            rest.append(j)
    return viewed, views, rest


def gramian(rows: Rows) -> Tensor:
    """The T x T Gramian ``J J^T`` of the Jacobian whose row t concatenates ``rows[t]``.

    ``rows[t][j]`` is task t's gradient of parameter j, or None (zeros) where t does not reach it.
    Accumulated parameter by parameter in float32 (float64 when a gradient is float64) on the
    gradients' device. Parameters whose gradients are rows of one buffer go to the compiled kernel
    (each element read once); the others are summed from dot products, which read each gradient
    T times but from cache, cheaper than stacking them into a copy.
    """
    num_tasks = len(rows)
    present = [g for row in rows for g in row if g is not None]
    if not present:
        return torch.zeros(num_tasks, num_tasks)
    dtype = _state_dtype(present)
    result = torch.zeros(num_tasks, num_tasks, dtype=dtype, device=present[0].device)
    _, views, rest = _split_by_layout(rows)
    if views:
        result += ops.gramian(views).to(dtype)
    products: dict[tuple[int, int], list[Tensor]] = {}
    for j in rest:
        flat = {t: row[j].reshape(-1).to(dtype) for t, row in enumerate(rows) if row[j] is not None}
        tasks = sorted(flat)
        for k, a in enumerate(tasks):
            for b in tasks[k:]:
                products.setdefault((a, b), []).append(torch.dot(flat[a], flat[b]))
    for (a, b), values in products.items():
        total = torch.stack(values).sum()
        result[a, b] += total
        if a != b:
            result[b, a] += total
    return result


def weighted_sum(rows: Rows, weights: Tensor) -> list[Tensor | None]:
    """``sum_t weights[t] * rows[t][j]`` for each parameter j, over the tasks that reach it (None where none does).

    Each result is a new tensor of its gradients' dtype; the inputs are not modified.
    """
    num_params = len(rows[0]) if rows else 0
    combined: list[Tensor | None] = [None] * num_params
    viewed, views, rest = _split_by_layout(rows)
    if views:
        out = [torch.empty(v.shape[1:], dtype=v.dtype, device=v.device) for v in views]
        ops.weighted_sum_(out, views, weights.to(views[0].device))
        for j, g in zip(viewed, out):
            combined[j] = g
    if not rest:
        return combined
    scales = weights.tolist()  # one host sync; the weights are T numbers
    # Parameters reached by the same tasks form one group, so that each task is one foreach call.
    groups: dict[tuple[int, ...], list[int]] = {}
    for j in rest:
        tasks = tuple(t for t, row in enumerate(rows) if row[j] is not None)
        if tasks:
            groups.setdefault(tasks, []).append(j)
    for tasks, index in groups.items():
        first, *others = tasks
        out = torch._foreach_mul([rows[first][j] for j in index], scales[first])
        for t in others:
            torch._foreach_add_(out, [rows[t][j] for j in index], alpha=scales[t])
        for j, g in zip(index, out):
            combined[j] = g
    return combined


class TaskGradients:
    """One step's per-task gradients, split into shared and task-specific parameters.

    ``shared``: indices of the parameters two tasks or more reach; ``specific``: (index, task) of
    the parameters exactly one task reaches. ``rows[t][j]`` is task t's gradient of the j-th
    shared parameter (None where t does not reach it).
    """

    def __init__(self, task_grads: Rows, num_tasks: int) -> None:
        if len(task_grads) != num_tasks:
            raise ValueError(f"task_grads holds {len(task_grads)} tasks: expected {num_tasks}, one list per task")
        lengths = sorted({len(g) for g in task_grads})
        if len(lengths) > 1:
            raise ValueError(f"task_grads lists have {lengths} entries: expected one per parameter for every task")
        self.task_grads = task_grads
        self.num_tasks = num_tasks
        self.num_params = lengths[0] if lengths else 0
        self.shared: list[int] = []
        self.specific: list[tuple[int, int]] = []
        for i in range(self.num_params):
            tasks = [t for t in range(num_tasks) if task_grads[t][i] is not None]
            shapes = {tuple(task_grads[t][i].shape) for t in tasks}
            if len(shapes) > 1:
                raise ValueError(f"parameter {i}: task gradients have shapes {sorted(shapes)}: expected one shape")
            if len(tasks) >= 2:
                self.shared.append(i)
            elif tasks:
                self.specific.append((i, tasks[0]))
        self.rows = [[task_grads[t][i] for i in self.shared] for t in range(num_tasks)]

    def gramian(self) -> Tensor:
        """The T x T Gramian of the shared Jacobian."""
        return gramian(self.rows)

    def sq_norms(self) -> Tensor:
        """Each task's squared gradient norm over the shared parameters (the Gramian's diagonal)."""
        present = [g for row in self.rows for g in row if g is not None]
        dtype = _state_dtype(present) if present else torch.float32
        device = present[0].device if present else None
        norms = []
        for row in self.rows:
            mine = [g for g in row if g is not None]
            norms.append(ops.sq_norms(mine).to(dtype).sum() if mine else torch.zeros((), dtype=dtype, device=device))
        return torch.stack(norms)

    def weighted_sum(self, weights: Tensor) -> list[Tensor]:
        """``sum_t weights[t] * g_t`` for each shared parameter."""
        return weighted_sum(self.rows, weights)

    def jacobian(self) -> Tensor:
        """The ``[T, N_shared]`` Jacobian: shared gradients flattened and concatenated, zeros where a
        task does not reach a parameter (dtype: the promotion of the gradients' dtypes)."""
        present = [g for row in self.rows for g in row if g is not None]
        if not present:
            return torch.zeros(self.num_tasks, 0)
        dtype = functools.reduce(torch.promote_types, (g.dtype for g in present))
        sizes = [self._reference(j).numel() for j in range(len(self.shared))]
        matrix = torch.zeros(self.num_tasks, sum(sizes), dtype=dtype, device=present[0].device)
        offset = 0
        for j, size in enumerate(sizes):
            for t, row in enumerate(self.rows):
                if row[j] is not None:
                    matrix[t, offset : offset + size] = row[j].reshape(-1)
            offset += size
        return matrix

    def split(self, vector: Tensor) -> list[Tensor]:
        """Cut a vector over the shared parameters (as ``jacobian`` lays them out) into their shapes and dtypes."""
        refs = [self._reference(j) for j in range(len(self.shared))]
        pieces = vector.split([r.numel() for r in refs]) if refs else []
        return [p.reshape(r.shape).to(r.dtype) for p, r in zip(pieces, refs)]

    def _reference(self, j: int) -> Tensor:
        return next(row[j] for row in self.rows if row[j] is not None)


def check_task_vector(key: str, value: Sequence[float] | None, num_tasks: int) -> Tensor | None:
    """A per-task setting (``pref_vector``, ``leak``) as a float tensor; ConfigError unless it has T values."""
    if value is None:
        return None
    if len(value) != num_tasks:
        raise ConfigError(f"{key}={format_value(value)} has {len(value)} values: expected {num_tasks}, one per task")
    return torch.tensor([float(v) for v in value])


class AggregationMethod(ABC):
    """Base of the built-in methods: splits the parameters, asks the subclass for the shared
    gradient, hands task-specific gradients through and leaves unreached parameters at None.

    ``rng`` (a MethodRng) is saved in ``state_dict`` when the method draws random numbers.
    """

    def __init__(self, num_tasks: int, rng: MethodRng | None = None) -> None:
        self.num_tasks = num_tasks
        self.rng = rng
        self.last_weights: Tensor | None = None

    def combine(self, task_grads: Rows, losses: Tensor, step: int) -> list[Tensor | None]:
        grads = TaskGradients(task_grads, self.num_tasks)
        combined: list[Tensor | None] = [None] * grads.num_params
        for i, g in zip(grads.shared, self.combine_shared(grads, losses, step)):
            combined[i] = g
        for i, task in grads.specific:
            combined[i] = self.task_specific(task_grads[task][i], task)
        return combined

    @abstractmethod
    def combine_shared(self, grads: TaskGradients, losses: Tensor, step: int) -> list[Tensor]:
        """The combined gradient of each shared parameter (in ``grads.shared`` order); sets ``last_weights``."""

    def task_specific(self, grad: Tensor, task: int) -> Tensor:
        """The gradient of a parameter only ``task`` reaches: the task's own, unchanged.

        A copy: the caller may reuse the buffers the task gradients live in.
        """
        return grad.clone()

    def drawing(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """The method's random stream in place of torch's global RNG (a no-op for a method without ``rng``)."""
        return self.rng.drawing(device) if self.rng is not None else contextlib.nullcontext()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.state_dict()} if self.rng is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.rng is not None:
            self.rng.load_state_dict(state["rng"])


class GramianWeightingMethod(AggregationMethod):
    """A method whose task weights depend only on the Gramian of the shared Jacobian (the fast route).

    ``weighting`` maps the T x T Gramian to T weights (a torchjd ``Weighting[PSDMatrix]``, say);
    the shared gradient is ``sum_t w_t g_t``, equal to torchjd's ``GramianWeightedAggregator``
    applied to the concatenated Jacobian without ever building it.
    """

    def __init__(self, num_tasks: int, weighting: Any, rng: MethodRng | None = None) -> None:
        super().__init__(num_tasks, rng)
        self.weighting = weighting

    def weights(self, gramian: Tensor) -> Tensor:
        """The task weights for this Gramian (a subclass may adapt what the weighting is given)."""
        return self.weighting(gramian)

    def combine_shared(self, grads: TaskGradients, losses: Tensor, step: int) -> list[Tensor]:
        if not grads.shared:
            self.last_weights = None
            return []
        matrix = grads.gramian()
        with self.drawing(matrix.device):
            weights = self.weights(matrix)
        self.last_weights = weights.detach()
        return grads.weighted_sum(self.last_weights)


class JacobianMethod(AggregationMethod):
    """A method that needs the ``[T, N_shared]`` Jacobian itself: ``aggregator(J)`` is a vector over
    the shared parameters (a torchjd ``Aggregator``, say). Such aggregators have no task weights."""

    def __init__(self, num_tasks: int, aggregator: Any, rng: MethodRng | None = None) -> None:
        super().__init__(num_tasks, rng)
        self.aggregator = aggregator

    def combine_shared(self, grads: TaskGradients, losses: Tensor, step: int) -> list[Tensor]:
        if not grads.shared:
            return []
        matrix = grads.jacobian()
        with self.drawing(matrix.device):
            vector = self.aggregator(matrix)
        return grads.split(vector)


class LossWeightingMethod(AggregationMethod):
    """A method that weights the task losses: the step is on ``sum_t w_t L_t``, so every parameter,
    shared or task-specific, gets ``sum_t w_t g_t`` (as the papers and LibMTL train these)."""

    @abstractmethod
    def task_weights(self, grads: TaskGradients, losses: Tensor, step: int) -> Tensor:
        """The T weights for this step (detached); may set the ``.grad`` of the method's parameters."""

    def combine_shared(self, grads: TaskGradients, losses: Tensor, step: int) -> list[Tensor]:
        if tuple(losses.shape) != (self.num_tasks,):
            raise ValueError(f"losses has shape {tuple(losses.shape)}: expected ({self.num_tasks},), one loss per task")
        weights = self.task_weights(grads, losses.detach(), step).detach()
        self.last_weights = weights
        self._scales = weights.tolist()
        return grads.weighted_sum(weights)

    def task_specific(self, grad: Tensor, task: int) -> Tensor:
        return grad * self._scales[task]
