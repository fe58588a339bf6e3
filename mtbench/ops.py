"""The compiled operators (torch.ops.mtbench.*), loaded at import, and the facts their callers share.

When the extension is not built or does not load, one warning says why; sq_norms then computes the
same result in plain PyTorch, and MTAdamV2 steps with its reference implementation (the optimizer
picks: this module knows nothing above it).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["MAX_TASKS", "available", "cuda_available", "describe", "mtadamv2_", "sq_norms", "state_dtype", "supports"]

MAX_TASKS = 8  # the most tasks one mtadamv2_ call takes (kMaxTasks in csrc/mtadamv2_math.h)


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
