"""MTAdamV2, the multi-task optimizer of DESIGN §3, as a torch.optim.Optimizer."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any

import torch

from .. import ops
from . import reference

IMPLS = ("auto", "fused", "reference")
STATE_KEYS = ("step", "exp_avg", "exp_avg_sq", "norm_avg")


def _checked(name: str, value: Any, low: float, high: float | None = None) -> Any:
    """`value` once it is known to be a finite real in [low, high): a Python number (numpy and other
    real scalars become float) or, as given, a 1-element tensor, which a scheduler may write into."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor {name} must be 1-element, got shape {tuple(value.shape)}")
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real number or a 1-element tensor, got a tensor of dtype {value.dtype}")
        number = value.item()
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number or a 1-element tensor, got {value!r}")
    else:
        number = value if type(value) in (int, float) else float(value)
    if not (math.isfinite(number) and number >= low and (high is None or number < high)):
        allowed = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"{name} must be {allowed}, got {number!r}")
    return value if isinstance(value, torch.Tensor) else number


def _checked_hyperparameters(group: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters of a parameter group, checked and normalised (see _checked); raises
    ValueError/TypeError naming the first invalid one."""
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    weights = group["task_weights"]
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or not weights:
        raise ValueError(f"task_weights must be a non-empty sequence of weights, one per task, got {weights!r}")
    return {
        "lr": _checked("lr", group["lr"], 0.0),
        "betas": tuple(_checked(f"betas[{i}]", beta, 0.0, 1.0) for i, beta in enumerate(betas)),
        "norm_beta": _checked("norm_beta", group["norm_beta"], 0.0, 1.0),
        "eps": _checked("eps", group["eps"], 0.0),
        "weight_decay": _checked("weight_decay", group["weight_decay"], 0.0),
        "task_weights": tuple(_checked(f"task_weights[{t}]", w, 0.0) for t, w in enumerate(weights)),
    }


def _as_step(value: Any) -> torch.Tensor:
    """A step count as MTAdamV2 keeps it: a float32 tensor on the CPU of its own (checkpoints of
    older torch.optim versions hold a plain number)."""
    return torch.tensor(float(value), dtype=torch.float32)


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
        impl: "fused" (compiled ops), "reference" (plain PyTorch) or "auto". "auto" takes the
            compiled ops where they cover the parameters' device and T <= ops.MAX_TASKS (the most
            tasks one compiled call takes), and the reference otherwise; "fused" refuses more
            tasks than that at construction. The state is the same for all three, so a state
            dict moves freely between them.

    Every hyperparameter is a real number (numpy scalars included, stored as float) or a
    1-element tensor, kept as given so that a scheduler can write into it as with torch.optim.Adam.

    ``step(task_grads)`` takes ``task_grads[t][i]``, task t's gradient of the i-th parameter (all
    groups, in order) or None where task t does not reach it. ``step()`` without task_grads
    reads each parameter's ``.grad`` as task 0's gradient, the other tasks being absent, so the
    optimizer also drops into an ordinary training loop (where it behaves like Adam).
    ``step(closure)`` (a callable first argument) and ``step(closure=closure)`` call the closure
    first, with grad enabled, and return its loss; ``step(task_grads, closure=closure)`` then
    steps on task_grads, otherwise on the ``.grad`` the closure left. A step that fails on bad
    input changes neither the parameters nor the state.

    ``load_state_dict`` refuses a state dict of another number of tasks (ValueError) and keeps
    the state in float32 for bfloat16/float16 parameters; load-state-dict hooks see and change
    the state as with any torch.optim optimizer.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float | torch.Tensor, float | torch.Tensor] = (0.9, 0.999),
        norm_beta: float = 0.9,
        eps: float = 1e-8,
        task_weights: Sequence[float] = (0.5, 0.5),
        weight_decay: float = 0.0,
        impl: str = "auto",
    ):
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        defaults = _checked_hyperparameters(dict(lr=lr, betas=betas, norm_beta=norm_beta, eps=eps,
                                                 task_weights=task_weights, weight_decay=weight_decay))
        num_tasks = len(defaults["task_weights"])
        if impl == "fused" and num_tasks > ops.MAX_TASKS:
            raise ValueError(f"impl='fused' takes at most {ops.MAX_TASKS} tasks (one compiled call), got {num_tasks} "
                             f"task weights; use impl='auto' (the reference beyond that) or 'reference'")
        self.impl = impl
        super().__init__(params, defaults)

    @property
    def num_tasks(self) -> int:
        """T, the number of tasks: len(task_weights), the same in every parameter group."""
        return len(self.defaults["task_weights"])

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim.Optimizer pickles defaults, state and param_groups only; impl is MTAdamV2's own.
        return {**super().__getstate__(), "impl": self.impl}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("impl", "auto")  # pickled by a version that did not keep it
        for group in self.param_groups:
            for param in group["params"]:
                param_state = self.state.get(param)
                if param_state and "step" in param_state:
                    param_state["step"] = _as_step(param_state["step"])

    def _check_task_count(self, weights: Sequence[Any]) -> None:
        if len(weights) != self.num_tasks:
            raise ValueError(f"task_weights of a parameter group must hold {self.num_tasks} weights "
                             f"(one per task, as in the defaults), got {tuple(weights)!r}")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group after checking its hyperparameters, its tensors and, for impl="fused", its devices."""
        if not isinstance(param_group, dict):
            super().add_param_group(param_group)  # raises torch.optim's TypeError
        checked = _checked_hyperparameters({**self.defaults, **param_group})
        self._check_task_count(checked["task_weights"])
        super().add_param_group(param_group)
        added = self.param_groups[-1]
        added.update(checked)
        try:
            for param in added["params"]:
                if not param.is_floating_point():
                    raise TypeError(f"MTAdamV2 optimizes floating-point parameters, got one of dtype {param.dtype}")
                if self.impl == "fused" and not ops.supports(param.device):
                    raise ValueError(f"impl='fused' needs the compiled ops for {param.device.type} tensors: "
                                     f"{ops.describe()}; use impl='auto' or 'reference'")
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def _use_fused(self, device: torch.device) -> bool:
        if self.impl == "auto":
            return self.num_tasks <= ops.MAX_TASKS and ops.supports(device)
        return self.impl == "fused"

    @torch.no_grad()
    def step(self, task_grads: Sequence[Sequence[torch.Tensor | None]] | Callable[[], Any] | None = None,
             closure: Callable[[], Any] | None = None) -> Any:
        """One step from the per-task gradients or from .grad (see the class docstring); returns the
        closure's loss, or None without a closure."""
        if callable(task_grads):
            if closure is not None:
                raise TypeError("step() takes one closure; got a callable task_grads and closure= as well")
            task_grads, closure = None, task_grads
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for group in self.param_groups for p in group["params"]]
        from_grad = task_grads is None
        if from_grad:
            task_grads = [[p.grad for p in params]] + [[None] * len(params)] * (self.num_tasks - 1)
        self._check_task_grads(task_grads, params, from_grad)
        # Everything a step could refuse is checked before the first group moves.
        hypers = [self._kernel_hyperparameters(group) for group in self.param_groups]
        start = 0
        for group, hyper in zip(self.param_groups, hypers):
            end = start + len(group["params"])
            self._step_group(group, hyper, [list(grads[start:end]) for grads in task_grads])
            start = end
        return loss

    def _check_task_grads(self, task_grads: Any, params: list[torch.Tensor], from_grad: bool) -> None:
        if not isinstance(task_grads, Sequence):
            raise TypeError(f"task_grads must be a sequence of {self.num_tasks} gradient lists, one per task, "
                            f"got {type(task_grads).__name__}")
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
                where = f"the .grad of parameter {i}" if from_grad else f"task_grads[{t}][{i}]"
                if not isinstance(grad, torch.Tensor):
                    raise TypeError(f"{where} must be a tensor or None, got {type(grad).__name__}")
                if grad.is_sparse:
                    raise RuntimeError(f"MTAdamV2 does not support sparse gradients ({where})")
                if grad.shape != param.shape:
                    raise ValueError(f"{where} has shape {tuple(grad.shape)}; expected {tuple(param.shape)} "
                                     f"(the shape of parameter {i})")
                if grad.dtype != param.dtype:
                    raise TypeError(f"{where} has dtype {grad.dtype}; expected {param.dtype} "
                                    f"(the dtype of parameter {i})")
                if grad.device != param.device:
                    raise ValueError(f"{where} is on {grad.device}; expected {param.device} "
                                     f"(the device of parameter {i})")

    def _kernel_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        """The group's hyperparameters as plain floats for the kernels, checked again: a scheduler,
        a loaded state dict or the user may have changed them since the group was added."""
        checked = _checked_hyperparameters(group)
        self._check_task_count(checked["task_weights"])
        beta1, beta2 = checked["betas"]
        return dict(lr=float(checked["lr"]), beta1=float(beta1), beta2=float(beta2),
                    norm_beta=float(checked["norm_beta"]), eps=float(checked["eps"]),
                    weight_decay=float(checked["weight_decay"]),
                    task_weights=[float(w) for w in checked["task_weights"]])

    def _new_state(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        """State of one parameter before its first step: see mtbench.optim.reference.mtadamv2_ for the layout."""
        dtype = ops.state_dtype(param.dtype)
        shape = (self.num_tasks, *param.shape)
        return {
            "step": _as_step(0),
            "exp_avg": torch.zeros(shape, dtype=dtype, device=param.device),
            "exp_avg_sq": torch.zeros(shape, dtype=dtype, device=param.device),
            "norm_avg": torch.full((self.num_tasks,), -1.0, dtype=dtype, device=param.device),
        }

    def _step_group(self, group: dict[str, Any], hyper: dict[str, Any],
                    task_grads: list[list[torch.Tensor | None]]) -> None:
        # Parameters with at least one gradient, batched per (device, dtype) as the kernels require.
        batches: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, param in enumerate(group["params"]):
            if any(grads[i] is not None for grads in task_grads):
                batches.setdefault((param.device, param.dtype), []).append(i)
        for (device, _), indices in batches.items():
            params, states = [], []
            for i in indices:
                param = group["params"][i]
                # NOTE [contiguity]: the kernels walk raw memory, so a non-contiguous parameter is
                # stepped in a contiguous copy that is written back below.
                params.append(param if param.is_contiguous() else param.contiguous())
                states.append(self.state.get(param) or self._new_state(param))
            grads = [None if task[i] is None else task[i].contiguous() for task in task_grads for i in indices]
            step = ops.mtadamv2_ if self._use_fused(device) else reference.mtadamv2_
            step(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                 [s["norm_avg"] for s in states], [int(s["step"].item()) + 1 for s in states], **hyper)
            # The step counts and new states are recorded once the kernels have accepted the step.
            for i, stepped, state in zip(indices, params, states):
                param = group["params"][i]
                if stepped is not param:
                    param.copy_(stepped)
                state["step"] += 1
                self.state[param] = state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch.optim's load_state_dict, hooks included, keeping MTAdamV2's state exact.

        torch.optim would cast the float32 state of bfloat16/float16 parameters down to the
        parameter's dtype. So, after every load-state-dict pre-hook has run, MTAdamV2 checks the
        state dict (its number of tasks, its state's shapes) and takes its parameters' state out
        of it; before any post-hook runs, it puts that state back, copied into the state dtype on
        each parameter's device, with the step as a float32 tensor (older checkpoints hold a number).
        """
        held: dict[torch.Tensor, dict[str, Any]] = {}

        def take_state(optimizer: MTAdamV2, loaded: dict[str, Any]) -> dict[str, Any] | None:
            return self._take_state(loaded, held)

        def put_state(optimizer: MTAdamV2) -> None:
            for param, saved in held.items():
                self.state[param] = {**saved, **self._loaded_state(param, saved)}

        pre = self.register_load_state_dict_pre_hook(take_state)
        post = self.register_load_state_dict_post_hook(put_state, prepend=True)
        try:
            super().load_state_dict(state_dict)
        finally:
            pre.remove()
            post.remove()

    def _take_state(self, loaded: dict[str, Any], held: dict[torch.Tensor, dict[str, Any]]) -> dict[str, Any] | None:
        """`loaded` without the state of this optimizer's parameters, which goes to `held`; raises
        ValueError for a state dict of another number of tasks or of mis-shaped state."""
        refuse = f"this optimizer has {self.num_tasks} (len(task_weights))"
        saved_groups = loaded["param_groups"]
        for index, group in enumerate(saved_groups):
            if "task_weights" in group and len(group["task_weights"]) != self.num_tasks:
                raise ValueError(f"cannot load a state dict whose parameter group {index} holds "
                                 f"{len(group['task_weights'])} tasks; {refuse}")
        groups = self.param_groups
        if len(saved_groups) != len(groups) or any(len(a["params"]) != len(b["params"])
                                                   for a, b in zip(saved_groups, groups)):
            return None  # torch.optim refuses it, with its own message
        params = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        kept = {}
        for key, saved in loaded["state"].items():
            param = params.get(key) if isinstance(key, int) else None
            if param is None or not saved:
                kept[key] = saved
                continue
            missing = [k for k in STATE_KEYS if k not in saved]
            if missing:
                raise ValueError(f"cannot load a state dict whose state of parameter {key} lacks "
                                 f"{', '.join(missing)}; expected {', '.join(STATE_KEYS)}")
            if saved["norm_avg"].shape != (self.num_tasks,):
                raise ValueError(f"cannot load a state dict whose state of parameter {key} holds "
                                 f"{saved['norm_avg'].numel()} tasks; {refuse}")
            for name in ("exp_avg", "exp_avg_sq"):
                if saved[name].shape != (self.num_tasks, *param.shape):
                    raise ValueError(f"cannot load a state dict whose {name} of parameter {key} has shape "
                                     f"{tuple(saved[name].shape)}; expected {(self.num_tasks, *param.shape)} "
                                     f"(tasks, *parameter shape)")
            held[param] = saved
        return {**loaded, "state": kept}

    @staticmethod
    def _loaded_state(param: torch.Tensor, saved: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The state that MTAdamV2 keeps for `param`, copied from a saved one (after
        torch.optim.Optimizer._process_value_according_to_param_policy, with MTAdamV2's policy)."""
        dtype = ops.state_dtype(param.dtype)
        state = {"step": _as_step(saved["step"])}
        for key in ("exp_avg", "exp_avg_sq", "norm_avg"):
            state[key] = saved[key].detach().to(dtype=dtype, device=param.device, copy=True)
        return state
