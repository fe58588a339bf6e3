"""The zoo's optimizer factories that are more than a class name: Muon over the hidden matrices with
AdamW for the rest, SAM around a base optimizer, and pytorch-optimizer's classes made copyable.

Imported (with torch) only when a run builds one of these optimizers: the presets in zoo_torch and
zoo_pytorch_optimizer name them by dotted name, so `mtbench list` imports no torch.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from mtbench.training.optimizers import CombinedOptimizer

__all__ = ["LIBRARY_CLASSES", "MatrixMuon", "adopt", "adopt_clip", "muon_with_adamw", "sam_adamw", "sam_sgd",
           "split_roles"]


class MatrixMuon(torch.optim.Muon):
    """torch.optim.Muon over every parameter of 2 dimensions or more, each seen as the matrix
    [out, in x kh x kw].

    NOTE [convolution filters]: torch's Muon takes 2-D parameters only, and a ResNet's hidden layers
    are convolutions; Keller Jordan's reference implementation orthogonalises a filter bank as its
    [out, rest] matrix, and so does this: its step is torch's own (Newton-Schulz, momentum, the
    learning-rate adjustment from the matrix's shape), handed 2-D views of the parameters, their
    gradients and their momentum buffers, so the update lands in the parameters themselves.
    """

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None):
        # torch's Muon checks its settings (on a 2-D stand-in, since it refuses anything else) ...
        probe = torch.optim.Muon([torch.zeros(1, 1)], lr=lr, weight_decay=weight_decay, momentum=momentum,
                                 nesterov=nesterov, ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                                 adjust_lr_fn=adjust_lr_fn)
        # ... and the groups are built as torch.optim.Optimizer builds them, with Muon's defaults.
        torch.optim.Optimizer.__init__(self, params, probe.defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ValueError(f"MatrixMuon takes parameters of 2 dimensions or more (matrices, filters), "
                                     f"got one of shape {tuple(p.shape)}; give it to AdamW")

    def _init_group(self, group, params_with_grad, grads, muon_momentum_bufs) -> bool:
        for p in group["params"]:
            if p.grad is None:
                continue
            if torch.is_complex(p) or p.grad.is_sparse:
                raise RuntimeError("MatrixMuon supports neither complex parameters nor sparse gradients")
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.contiguous_format)
            params_with_grad.append(_matrix(p, "parameter"))
            grads.append(_matrix(p.grad, "gradient"))
            muon_momentum_bufs.append(_matrix(state["momentum_buffer"], "momentum buffer"))
        return False


class _WholeState:
    """Copied and pickled with every attribute, as torch.optim's own optimizers are.

    NOTE [copyable library optimizers]: pytorch-optimizer 4.1.0 keeps some settings in instance
    attributes (``maximize``, ``foreach``, SAM's ``base_optimizer``, ...) that
    torch.optim.Optimizer.__getstate__ leaves out, so a deepcopy or an unpickled copy of one fails at
    its next step. Its classes are used through subclasses that keep everything but the hooks
    (torch.optim.Optimizer.__setstate__ makes those afresh, as for any optimizer).
    """

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_optimizer_")}


def _copyable(name: str) -> type:
    """pytorch-optimizer's class ``name`` as a subclass of this module's, so pickle finds it by name."""
    import pytorch_optimizer

    base = getattr(pytorch_optimizer, name)
    return type(name, (_WholeState, base), {"__module__": __name__, "__qualname__": name, "__doc__": base.__doc__})


# The library's classes the presets use, each as this module's attribute of the same name.
LIBRARY_CLASSES = ("Lion", "ADOPT", "SOAP", "Shampoo", "Prodigy", "DAdaptAdam", "Lamb", "ScheduleFreeAdamW",
                   "ScheduleFreeSGD", "SAM", "AdEMAMix", "MARS", "Adan", "AdaBelief")
globals().update({name: _copyable(name) for name in LIBRARY_CLASSES})


def adopt_clip(step: float) -> float:
    """ADOPT's default gradient clip at a step, step ** 0.25, as a named function (the library's is a
    lambda, which no pickle can hold)."""
    return step ** 0.25


def adopt(params, **settings) -> torch.optim.Optimizer:
    """ADOPT with its default clip, copyable and picklable."""
    return globals()["ADOPT"](params, clip_lambda=adopt_clip, **settings)


def _matrix(t: torch.Tensor, what: str) -> torch.Tensor:
    """``t`` as a [out, rest] view sharing its storage (an update of the view is an update of ``t``)."""
    try:
        return t.view(t.shape[0], -1)
    except RuntimeError:
        raise RuntimeError(f"MatrixMuon needs a contiguous {what} of shape {tuple(t.shape)} to view as a matrix") \
            from None


def split_roles(params: Sequence[Any], role: str) -> tuple[list, list]:
    """(the groups of ``role``, the other groups) of the param groups a preset's ``groups`` made."""
    groups = list(params)
    if not groups or not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    mine = [g for g in groups if g.get("role") == role]
    return mine, [g for g in groups if g.get("role") != role]


def muon_with_adamw(params, lr: float = 0.02, momentum: float = 0.95, weight_decay: float = 0.1,
                    nesterov: bool = True, ns_steps: int = 5, adamw_lr: float = 3e-4,
                    adamw_betas: tuple[float, float] = (0.9, 0.95), adamw_eps: float = 1e-8,
                    adamw_weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """Muon over the groups of role ``hidden``, AdamW over the rest (torch.optim.Muon's documented use),
    as one optimizer; ``lr``, ``momentum``, ... are Muon's, ``adamw_*`` AdamW's."""
    hidden, rest = split_roles(params, "hidden")
    parts = []
    if hidden:
        parts.append(MatrixMuon(hidden, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                                ns_steps=ns_steps))
    if rest:
        parts.append(torch.optim.AdamW(rest, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps,
                                       weight_decay=adamw_weight_decay))
    return parts[0] if len(parts) == 1 else CombinedOptimizer(parts)


def sam_sgd(params, rho: float = 0.05, adaptive: bool = False, lr: float = 0.01, momentum: float = 0.9,
            nesterov: bool = False, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """SAM (pytorch-optimizer) around torch.optim.SGD: ``rho`` the neighbourhood radius, the rest SGD's."""
    return globals()["SAM"](params, torch.optim.SGD, rho=rho, adaptive=adaptive, lr=lr, momentum=momentum, nesterov=nesterov,
               weight_decay=weight_decay)


def sam_adamw(params, rho: float = 0.05, adaptive: bool = False, lr: float = 1e-3,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
              weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """SAM (pytorch-optimizer) around torch.optim.AdamW: ``rho`` the neighbourhood radius, the rest AdamW's."""
    return globals()["SAM"](params, torch.optim.AdamW, rho=rho, adaptive=adaptive, lr=lr, betas=betas, eps=eps,
               weight_decay=weight_decay)
