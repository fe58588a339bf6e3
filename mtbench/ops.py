"""The compiled operators (torch.ops.mtbench.*), loaded at import, with pure-PyTorch fallbacks.

When the extension is not built or does not load, one warning says why and every wrapper here
computes the same result in plain PyTorch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["available", "cuda_available", "describe", "mtadamv2_", "sq_norms", "supports"]


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
        dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
        return tensors[0].new_empty(len(tensors), dtype=dtype)

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


def _opmath(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def sq_norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Squared L2 norm of each tensor (float64 for float64 tensors, else float32); all on one device."""
    tensors = list(tensors)
    if not tensors:
        return torch.empty(0)
    if supports(tensors[0].device):
        return torch.ops.mtbench.sq_norms(tensors)
    dtype = _opmath(tensors[0].dtype)
    return torch.stack([torch.linalg.vector_norm(t, dtype=dtype).square() for t in tensors])


def mtadamv2_(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, *, lr, beta1, beta2, norm_beta, eps,
              weight_decay, task_weights) -> None:
    """One fused MTAdamV2 step (arguments as torch.ops.mtbench.mtadamv2_, documented in
    mtbench.optim.reference.mtadamv2_); the reference implementation where no kernel fits."""
    args = (params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps)
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, norm_beta=norm_beta, eps=eps, weight_decay=weight_decay,
                 task_weights=task_weights)
    if params and supports(params[0].device):
        torch.ops.mtbench.mtadamv2_(*args, **hyper)
    else:
        from .optim.reference import mtadamv2_ as reference_step

        reference_step(*args, **hyper)
