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
    _check_sq_norms_args(tensors)
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


# The checks of csrc/checks.h, for the fake kernels and the fallbacks, with the same messages. A fake
# serves every device, so it checks that all tensors share the reference's device (NOTE [device
# checks] in csrc/checks.h) but not which device that is.

_FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _check_device(op, t, name, device, origin) -> None:
    torch._check(t.device == device,
                 lambda: f"{op}: {name} is on {t.device}, expected {device} (the device of {origin})")


def _check_sq_norms_args(tensors) -> None:
    torch._check(len(tensors) > 0, lambda: "sq_norms: tensors must hold at least one tensor, got an empty list")
    first = tensors[0]
    for i, t in enumerate(tensors):
        torch._check(t.layout == torch.strided, lambda: f"sq_norms: tensors[{i}] must be a strided tensor, got layout "
                                                        f"{t.layout}")
        torch._check(t.dtype in _FLOAT_DTYPES, lambda: f"sq_norms: tensors[{i}] must be float32, float64, bfloat16 or "
                                                       f"float16, got {t.dtype}")
        torch._check(t.dtype == first.dtype, lambda: f"sq_norms: tensors[{i}] has dtype {t.dtype}, expected "
                                                     f"{first.dtype} (the dtype of tensors[0])")
        _check_device("sq_norms", t, f"tensors[{i}]", first.device, "tensors[0]")


def _check_range(name, value, low, high=math.inf) -> None:
    torch._check(low <= value < high, lambda: f"mtadamv2_: {name} must be in [{low:g}, {high:g}), got {value:g}")


def _check_mtadamv2_args(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, lr, beta1, beta2, norm_beta, eps,
                         weight_decay, task_weights) -> None:
    for name, value, high in (("lr", lr, math.inf), ("beta1", beta1, 1.0), ("beta2", beta2, 1.0),
                              ("norm_beta", norm_beta, 1.0), ("eps", eps, math.inf),
                              ("weight_decay", weight_decay, math.inf)):
        _check_range(name, value, 0.0, high)
    num_tasks, num_params = len(task_weights), len(params)
    torch._check(1 <= num_tasks <= MAX_TASKS, lambda: f"mtadamv2_: task_weights must hold 1 to {MAX_TASKS} weights "
                                                      f"(one per task), got {num_tasks}")
    for t, w in enumerate(task_weights):
        torch._check(math.isfinite(w) and w >= 0, lambda: f"mtadamv2_: task_weights[{t}] must be finite and >= 0, "
                                                          f"got {w:g}")
    torch._check(len(grads) == num_tasks * num_params,
                 lambda: f"mtadamv2_: grads must hold {num_tasks * num_params} entries (task-major, len(task_weights) "
                         f"* len(params)), got {len(grads)}")
    for name, items in (("exp_avgs", exp_avgs), ("exp_avg_sqs", exp_avg_sqs), ("norm_avgs", norm_avgs)):
        torch._check(len(items) == num_params, lambda: f"mtadamv2_: {name} must hold {num_params} tensors (one per "
                                                       f"param), got {len(items)}")
    torch._check(len(steps) == num_params,
                 lambda: f"mtadamv2_: steps must hold {num_params} values (one per param), got {len(steps)}")
    if not params:
        return
    dtype, device = params[0].dtype, params[0].device
    torch._check(dtype in _FLOAT_DTYPES,
                 lambda: f"mtadamv2_: params must be float32, float64, bfloat16 or float16, got {dtype}")

    def check_tensor(t, name, expected_dtype, expected_shape):
        torch._check(t.layout == torch.strided, lambda: f"mtadamv2_: {name} must be strided, got layout {t.layout}")
        torch._check(t.dtype == expected_dtype,
                     lambda: f"mtadamv2_: {name} has dtype {t.dtype}, expected {expected_dtype}")
        _check_device("mtadamv2_", t, name, device, "params[0]")
        torch._check(t.shape == expected_shape,
                     lambda: f"mtadamv2_: {name} has shape {list(t.shape)}, expected {list(expected_shape)}")
        torch._check(t.is_contiguous(), lambda: f"mtadamv2_: {name} must be contiguous")

    for i, p in enumerate(params):
        check_tensor(p, f"params[{i}]", dtype, p.shape)
        for t in range(num_tasks):
            g = grads[t * num_params + i]
            if g is not None:
                check_tensor(g, f"grads[{t * num_params + i}]", dtype, p.shape)
        state = (num_tasks, *p.shape)
        check_tensor(exp_avgs[i], f"exp_avgs[{i}]", state_dtype(dtype), state)
        check_tensor(exp_avg_sqs[i], f"exp_avg_sqs[{i}]", state_dtype(dtype), state)
        check_tensor(norm_avgs[i], f"norm_avgs[{i}]", state_dtype(dtype), (num_tasks,))
        torch._check(steps[i] >= 1, lambda: f"mtadamv2_: steps[{i}] must be >= 1 (the count including this step), "
                                            f"got {steps[i]}")


# The Gramian route of multi-task methods: the T x T Gramian of the task gradients, then one weighted sum.
def _check_task_grads(op, task_grads, num_tasks, dtype, device, origin) -> None:
    for i, g in enumerate(task_grads):
        torch._check(g.layout == torch.strided, lambda: f"{op}: task_grads[{i}] must be strided, got layout {g.layout}")
        torch._check(g.dim() >= 1 and g.shape[0] == num_tasks,
                     lambda: f"{op}: task_grads[{i}] has shape {list(g.shape)}, expected {num_tasks} tasks in its "
                             f"first dimension ([T, *shape], T from {origin})")
        torch._check(g.dtype == dtype,
                     lambda: f"{op}: task_grads[{i}] has dtype {g.dtype}, expected {dtype} (the dtype of {origin})")
        _check_device(op, g, f"task_grads[{i}]", device, origin)


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
        _check_device("weighted_sum_", o, f"out[{i}]", weights.device, "weights")
        torch._check(o.is_contiguous(), lambda: f"weighted_sum_: out[{i}] must be contiguous")
    return num_tasks


if available():

    @torch.library.register_fake("mtbench::sq_norms")
    def _sq_norms_fake(tensors):
        _check_sq_norms_args(tensors)
        return tensors[0].new_empty(len(tensors), dtype=state_dtype(tensors[0].dtype))

    @torch.library.register_fake("mtbench::mtadamv2_")
    def _mtadamv2_fake(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, lr, beta1, beta2, norm_beta, eps,
                       weight_decay, task_weights):
        _check_mtadamv2_args(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, lr, beta1, beta2, norm_beta, eps,
                             weight_decay, task_weights)

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
