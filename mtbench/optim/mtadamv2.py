"""MTAdamV2, the multi-task optimizer of DESIGN §3, as a torch.optim.Optimizer."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from .. import ops
from . import reference

IMPLS = ("auto", "fused", "reference")


def _check_hyperparameters(group: dict[str, Any]) -> None:
    """Raises ValueError/TypeError naming the first invalid hyperparameter of a parameter group."""

    def number(name: str, value: Any, low: float, high: float | None = None, *, closed_high: bool = False) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        below_high = high is None or (value <= high if closed_high else value < high)
        if not (math.isfinite(value) and value >= low and below_high):
            allowed = f">= {low}" if high is None else f"in [{low}, {high}{']' if closed_high else ')'}"
            raise ValueError(f"{name} must be {allowed}, got {value!r}")

    number("lr", group["lr"], 0.0)
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    number("betas[0]", betas[0], 0.0, 1.0)
    number("betas[1]", betas[1], 0.0, 1.0)
    number("norm_beta", group["norm_beta"], 0.0, 1.0)
    number("eps", group["eps"], 0.0)
    number("weight_decay", group["weight_decay"], 0.0)
    weights = group["task_weights"]
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or not weights:
        raise ValueError(f"task_weights must be a non-empty sequence of weights, one per task, got {weights!r}")
    for t, weight in enumerate(weights):
        number(f"task_weights[{t}]", weight, 0.0)


class MTAdamV2(torch.optim.Optimizer):
    """Adam with per-task moments: each task's gradient is rescaled to the running gradient norm of
    an anchor task, and the step divides the summed first moments by the largest per-task
    denominator (DESIGN §3).

    Args:
        params: parameters or parameter groups; a group may override any hyperparameter below
            except that task_weights must keep the same number of tasks.
        lr, betas, eps, weight_decay: as in AdamW (weight decay is decoupled).
        norm_beta: decay of the running per-task gradient norms.
        task_weights: one weight per task; their number is the number of tasks T.
        impl: "fused" (compiled ops), "reference" (plain PyTorch) or "auto" (fused where the
            compiled ops cover the parameters' device). The state is the same for all three.

    ``step(task_grads)`` takes ``task_grads[t][i]``, task t's gradient of the i-th parameter (all
    groups, in order) or None where task t does not reach it. ``step()`` without task_grads
    reads each parameter's ``.grad`` as task 0's gradient, the other tasks being absent, so the
    optimizer also drops into an ordinary training loop (where it behaves like Adam).
    """

    per_task_gradients = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        norm_beta: float = 0.9,
        eps: float = 1e-8,
        task_weights: Sequence[float] = (0.5, 0.5),
        weight_decay: float = 0.0,
        impl: str = "auto",
    ):
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        self.impl = impl
        defaults = dict(lr=lr, betas=betas, norm_beta=norm_beta, eps=eps, task_weights=task_weights,
                        weight_decay=weight_decay)
        _check_hyperparameters(defaults)
        defaults["betas"] = tuple(betas)
        defaults["task_weights"] = tuple(task_weights)
        self.num_tasks = len(task_weights)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group after checking its hyperparameters, its tensors and, for impl="fused", its devices."""
        group = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        _check_hyperparameters(group)
        if len(group["task_weights"]) != self.num_tasks:
            raise ValueError(f"task_weights of a parameter group must hold {self.num_tasks} weights "
                             f"(one per task, as in the defaults), got {group['task_weights']!r}")
        super().add_param_group(param_group)
        added = self.param_groups[-1]
        added["betas"] = tuple(added["betas"])
        added["task_weights"] = tuple(added["task_weights"])
        for param in added["params"]:
            if not param.is_floating_point():
                raise TypeError(f"MTAdamV2 optimizes floating-point parameters, got one of dtype {param.dtype}")
            if self.impl == "fused" and not ops.supports(param.device):
                raise ValueError(f"impl='fused' needs the compiled ops for {param.device.type} tensors: "
                                 f"{ops.describe()}; use impl='auto' or 'reference'")

    def _use_fused(self, device: torch.device) -> bool:
        return self.impl == "fused" or (self.impl == "auto" and ops.supports(device))

    @torch.no_grad()
    def step(self, task_grads: Sequence[Sequence[torch.Tensor | None]] | None = None,
             closure: Callable[[], Any] | None = None) -> Any:
        """One step from the per-task gradients (see the class docstring); returns closure()'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for group in self.param_groups for p in group["params"]]
        if task_grads is None:
            task_grads = [[p.grad for p in params]] + [[None] * len(params)] * (self.num_tasks - 1)
        else:
            self._check_task_grads(task_grads, params)
        start = 0
        for group in self.param_groups:
            end = start + len(group["params"])
            self._step_group(group, [list(grads[start:end]) for grads in task_grads])
            start = end
        return loss

    def _check_task_grads(self, task_grads: Any, params: list[torch.Tensor]) -> None:
        if callable(task_grads) or not isinstance(task_grads, Sequence):
            raise TypeError(f"task_grads must be a sequence of {self.num_tasks} gradient lists, one per task, "
                            f"got {type(task_grads).__name__} (pass a closure as closure=...)")
        if len(task_grads) != self.num_tasks:
            raise ValueError(f"task_grads holds {len(task_grads)} tasks; expected {self.num_tasks} "
                             f"(len(task_weights))")
        for t, grads in enumerate(task_grads):
            if isinstance(grads, torch.Tensor) or not isinstance(grads, Sequence) or len(grads) != len(params):
                got = f"a {type(grads).__name__}" if not isinstance(grads, Sequence) else f"{len(grads)} entries"
                raise ValueError(f"task_grads[{t}] must hold one gradient or None per parameter "
                                 f"({len(params)}), got {got}")
            for i, (grad, param) in enumerate(zip(grads, params)):
                if grad is None:
                    continue
                where = f"task_grads[{t}][{i}]"
                if not isinstance(grad, torch.Tensor):
                    raise TypeError(f"{where} must be a tensor or None, got {type(grad).__name__}")
                if grad.is_sparse:
                    raise TypeError(f"{where} is sparse; MTAdamV2 takes dense gradients")
                if grad.shape != param.shape:
                    raise ValueError(f"{where} has shape {tuple(grad.shape)}; expected {tuple(param.shape)} "
                                     f"(the shape of parameter {i})")
                if grad.dtype != param.dtype:
                    raise TypeError(f"{where} has dtype {grad.dtype}; expected {param.dtype} "
                                    f"(the dtype of parameter {i})")
                if grad.device != param.device:
                    raise ValueError(f"{where} is on {grad.device}; expected {param.device} "
                                     f"(the device of parameter {i})")

    def _init_state(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        """State of one parameter: see mtbench.optim.reference.mtadamv2_ for the layout."""
        dtype = torch.float64 if param.dtype == torch.float64 else torch.float32
        shape = (self.num_tasks, *param.shape)
        state = self.state[param]
        state["step"] = torch.tensor(0.0)
        state["exp_avg"] = torch.zeros(shape, dtype=dtype, device=param.device)
        state["exp_avg_sq"] = torch.zeros(shape, dtype=dtype, device=param.device)
        state["norm_avg"] = torch.full((self.num_tasks,), -1.0, dtype=dtype, device=param.device)
        return state

    def _step_group(self, group: dict[str, Any], task_grads: list[list[torch.Tensor | None]]) -> None:
        # Parameters with at least one gradient, batched per (device, dtype) as the kernels require.
        batches: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, param in enumerate(group["params"]):
            if any(grads[i] is not None for grads in task_grads):
                batches.setdefault((param.device, param.dtype), []).append(i)
        beta1, beta2 = group["betas"]
        hyper = dict(lr=group["lr"], beta1=beta1, beta2=beta2, norm_beta=group["norm_beta"], eps=group["eps"],
                     weight_decay=group["weight_decay"], task_weights=group["task_weights"])
        for (device, _), indices in batches.items():
            params, states = [], []
            for i in indices:
                param = group["params"][i]
                state = self.state[param] or self._init_state(param)
                state["step"] += 1
                # NOTE [contiguity]: the kernels walk raw memory, so a non-contiguous parameter is
                # stepped in a contiguous copy that is written back below.
                params.append(param if param.is_contiguous() else param.contiguous())
                states.append(state)
            grads = [None if task[i] is None else task[i].contiguous() for task in task_grads for i in indices]
            step = ops.mtadamv2_ if self._use_fused(device) else reference.mtadamv2_
            step(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                 [s["norm_avg"] for s in states], [int(s["step"].item()) for s in states], **hyper)
            for i, stepped in zip(indices, params):
                if stepped is not group["params"][i]:
                    group["params"][i].copy_(stepped)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads a state_dict exactly: torch.optim would cast the float32 state of bfloat16/float16
        parameters down to the parameter's dtype, so the state is copied over again here."""
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for index, saved in state_dict["state"].items():
            param = params[index]
            dtype = torch.float64 if param.dtype == torch.float64 else torch.float32
            state = self.state[param]
            state["step"] = saved["step"].detach().to(dtype=torch.float32, device="cpu").clone()
            for key in ("exp_avg", "exp_avg_sq", "norm_avg"):
                state[key] = saved[key].detach().to(dtype=dtype, device=param.device).clone()
