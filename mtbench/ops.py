"""The compiled operators (torch.ops.mtbench.*), loaded at import, and the facts their callers share.

When the extension is not built or does not load, one warning says why; sq_norms, gramian and
weighted_sum_ then compute the same results in plain PyTorch, and MTAdamV2 steps with its reference
implementation (the optimizer picks: this module knows nothing above it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["MAX_TASKS", "available", "cuda_available", "describe", "gramian", "mtadamv2_", "sq_norms", "state_dtype",
           "supports", "weighted_sum_"]

MAX_TASKS = 8  # the most tasks one mtadamv2_, gramian or weighted_sum_ call takes (kMaxTasks in csrc/mtadamv2_math.h)


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype that results and optimizer state are kept in for tensors of `dtype`: float64 for
    float64, float32 (opmath) for everything narrower. csrc/checks.h holds the C++ twin."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _load() -> tuple[str | None, str | None]:
    """Imports mtbench._C; returns (path of the library, None) or (None, why it is unavailable)."""
    try:
        from . import _C
    except ModuleNotFoundError:
        return None, "not built"
    except (ImportError, OSError) as exc:
        return None, f"failed to load: {exc}"
    return _C.__file__, None


_LIBRARY, _UNAVAILABLE = _load()

if _UNAVAILABLE is not None:
    warnings.warn(
        f"mtbench compiled ops {_UNAVAILABLE}; using pure PyTorch instead "
        "(build them with `pip install --no-build-isolation -e .`)",
        RuntimeWarning,
        stacklevel=2,
    )
else:

    @torch.library.register_fake("mtbench::sq_norms")
    def _sq_norms_fake(tensors):
        return tensors[0].new_empty(len(tensors), dtype=state_dtype(tensors[0].dtype))

    @torch.library.register_fake("mtbench::mtadamv2_")
    def _mtadamv2_fake(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, lr, beta1, beta2, norm_beta, eps,
                       weight_decay, task_weights):
        return None


def available() -> bool:
    """Whether the compiled operators are loaded (their CPU kernels always are when they load)."""
    return _UNAVAILABLE is None


def cuda_available() -> bool:
    """Whether the compiled operators include CUDA kernels."""
    return available() and torch._C._dispatch_has_kernel_for_dispatch_key("mtbench::sq_norms", "CUDA")


def supports(device: torch.device | str) -> bool:
    """Whether the compiled operators have kernels for tensors on `device`."""
    kind = torch.device(device).type
    return (kind == "cpu" and available()) or (kind == "cuda" and cuda_available())


def describe() -> str:
    """One line on the compiled operators, for `mtbench plugins` and `mtbench list`."""
    if not available():
        return f"compiled ops: unavailable ({_UNAVAILABLE}); using pure PyTorch"
    backends = "cpu+cuda" if cuda_available() else "cpu"
    library = Path(_LIBRARY)
    return f"compiled ops: {backends} ({library.parent.name}/{library.name})"


def sq_norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Squared L2 norm of each tensor (float64 for float64 tensors, else float32); all on one device."""
    tensors = list(tensors)
    if not tensors:
        return torch.empty(0)
    if supports(tensors[0].device):
        return torch.ops.mtbench.sq_norms(tensors)
    dtype = state_dtype(tensors[0].dtype)
    return torch.stack([torch.linalg.vector_norm(t, dtype=dtype).square() for t in tensors])


def mtadamv2_(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, *, lr, beta1, beta2, norm_beta, eps,
              weight_decay, task_weights) -> None:
    """One fused MTAdamV2 step (arguments as torch.ops.mtbench.mtadamv2_, documented in
    mtbench.optim.reference.mtadamv2_). Callers check supports(device) first; without a kernel for
    the parameters' device this raises RuntimeError."""
    if params and not supports(params[0].device):
        raise RuntimeError(f"no compiled mtadamv2_ kernel for {params[0].device.type} tensors ({describe()})")
    torch.ops.mtbench.mtadamv2_(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, lr, beta1, beta2, norm_beta,
                                eps, weight_decay, task_weights)


# The Gramian route of multi-task methods: the T x T Gramian of the task gradients, then one
# weighted sum. The checks below are those of csrc/checks.h, for the fake kernels and the fallbacks.

_FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _check_task_grads(op, task_grads, num_tasks, dtype, device, origin) -> None:
    for i, g in enumerate(task_grads):
        torch._check(g.layout == torch.strided, lambda: f"{op}: task_grads[{i}] must be strided, got layout {g.layout}")
        torch._check(g.dim() >= 1 and g.shape[0] == num_tasks,
                     lambda: f"{op}: task_grads[{i}] has shape {list(g.shape)}, expected {num_tasks} tasks in its "
                             f"first dimension ([T, *shape], T from {origin})")
        torch._check(g.dtype == dtype,
                     lambda: f"{op}: task_grads[{i}] has dtype {g.dtype}, expected {dtype} (the dtype of {origin})")
        torch._check(g.device == device,
                     lambda: f"{op}: task_grads[{i}] is on {g.device}, expected {device} (the device of {origin})")


def _check_gramian_args(task_grads) -> int:
    torch._check(len(task_grads) > 0, lambda: "gramian: task_grads must hold at least one tensor ([T, *shape] per "
                                               "parameter), got an empty list")
    first = task_grads[0]
    torch._check(first.dim() >= 1 and 1 <= first.shape[0] <= MAX_TASKS,
                 lambda: f"gramian: task_grads[0] must have shape [T, *shape] with 1 to {MAX_TASKS} tasks T, got "
                         f"shape {list(first.shape)}")
    torch._check(first.dtype in _FLOAT_DTYPES,
                 lambda: f"gramian: task_grads[0] must be float32, float64, bfloat16 or float16, got {first.dtype}")
    _check_task_grads("gramian", task_grads, first.shape[0], first.dtype, first.device, "task_grads[0]")
    return first.shape[0]


def _check_weighted_sum_args(out, task_grads, weights) -> int:
    torch._check(weights.layout == torch.strided and weights.dim() == 1 and 1 <= weights.shape[0] <= MAX_TASKS,
                 lambda: f"weighted_sum_: weights must be a 1-D tensor of 1 to {MAX_TASKS} task weights, got shape "
                         f"{list(weights.shape)}")
    torch._check(weights.dtype in _FLOAT_DTYPES,
                 lambda: f"weighted_sum_: weights must be float32, float64, bfloat16 or float16, got {weights.dtype}")
    torch._check(len(out) == len(task_grads), lambda: f"weighted_sum_: out must hold {len(task_grads)} tensors (one "
                                                      f"per entry of task_grads), got {len(out)}")
    num_tasks = weights.shape[0]
    if not task_grads:
        return num_tasks
    dtype = task_grads[0].dtype
    torch._check(dtype in _FLOAT_DTYPES,
                 lambda: f"weighted_sum_: task_grads[0] must be float32, float64, bfloat16 or float16, got {dtype}")
    _check_task_grads("weighted_sum_", task_grads, num_tasks, dtype, weights.device, "weights")
    for i, (o, g) in enumerate(zip(out, task_grads)):
        torch._check(o.layout == torch.strided,
                     lambda: f"weighted_sum_: out[{i}] must be strided, got layout {o.layout}")
        torch._check(o.shape == g.shape[1:],
                     lambda: f"weighted_sum_: out[{i}] has shape {list(o.shape)}, expected {list(g.shape[1:])} "
                             f"(task_grads[{i}] without its task dimension)")
        torch._check(o.dtype == dtype,
                     lambda: f"weighted_sum_: out[{i}] has dtype {o.dtype}, expected {dtype} (the dtype of task_grads)")
        torch._check(o.device == weights.device,
                     lambda: f"weighted_sum_: out[{i}] is on {o.device}, expected {weights.device} (the device of "
                             f"weights)")
        torch._check(o.is_contiguous(), lambda: f"weighted_sum_: out[{i}] must be contiguous")
    return num_tasks


if available():

    @torch.library.register_fake("mtbench::gramian")
    def _gramian_fake(task_grads):
        num_tasks = _check_gramian_args(task_grads)
        return task_grads[0].new_empty((num_tasks, num_tasks), dtype=state_dtype(task_grads[0].dtype))

    @torch.library.register_fake("mtbench::weighted_sum_")
    def _weighted_sum_fake(out, task_grads, weights):
        _check_weighted_sum_args(out, task_grads, weights)


def gramian(task_grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """The [T, T] Gramian G[a, b] = sum_i <task_grads[i][a], task_grads[i][b]> in state_dtype.

    task_grads[i] is parameter i's gradient for each of the T tasks, [T, *shape_i] (typically a view
    of a [T, N] buffer); all of one dtype and device. Plain PyTorch where no kernel fits.
    """
    task_grads = list(task_grads)
    if task_grads and supports(task_grads[0].device):
        return torch.ops.mtbench.gramian(task_grads)
    num_tasks = _check_gramian_args(task_grads)
    dtype = state_dtype(task_grads[0].dtype)
    # Per-parameter products in opmath, their sum in float64, as the kernels accumulate.
    total = torch.zeros(num_tasks, num_tasks, dtype=torch.float64, device=task_grads[0].device)
    for g in task_grads:
        rows = g.reshape(num_tasks, math.prod(g.shape[1:])).to(dtype)
        total += rows @ rows.T
    return total.to(dtype)


def weighted_sum_(out: Sequence[torch.Tensor], task_grads: Sequence[torch.Tensor], weights: torch.Tensor) -> None:
    """out[i] = sum_t weights[t] * task_grads[i][t], summed in state_dtype and written in place.

    out[i]: contiguous, task_grads[i].shape[1:], the dtype of task_grads; weights: [T] on their
    device. Plain PyTorch where no kernel fits.
    """
    out, task_grads = list(out), list(task_grads)
    if supports(weights.device):
        torch.ops.mtbench.weighted_sum_(out, task_grads, weights)
        return
    _check_weighted_sum_args(out, task_grads, weights)
    if not task_grads:
        return
    w = weights.to(state_dtype(task_grads[0].dtype))
    for o, g in zip(out, task_grads):
        o.copy_(torch.tensordot(w, g.to(w.dtype), dims=1))
