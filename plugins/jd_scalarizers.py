"""torchjd's scalarizers as losses-only methods: UW, Kendall's classification form of it, DWA, FAMO,
STCH, IMTL-L, GLS (the geometric mean), PBI and RLW (loss_methods.py names the factories by dotted
name; torchjd is imported here, when a run builds one).

Each object computes with torchjd's own Scalarizer and adds what a run needs around it: the
device of the losses, the state a checkpoint saves (``state_dict``: tensors, numbers, lists and
dicts only), the paper's schedule where torchjd leaves it to the caller (DWA's windows, FAMO's
second pass, STCH's warm-up), and a seeded random stream for RLW.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import Tensor

from mtbench import MethodRng, check_task_vector
from mtbench_plugins.loss_weighting import LossMethod

__all__ = [
    "DWAMethod", "FAMOMethod", "STCHMethod", "ScalarizerMethod", "UncertaintyWeighting", "dwa", "famo",
    "geometric_mean", "imtl_l", "pbi", "rlw", "stch", "uncertainty", "uw",
]


class ScalarizerMethod(LossMethod):
    """A torchjd ``Scalarizer`` (an ``nn.Module``) as a losses-only method: the objective is the
    scalarizer of the losses. Its ``nn.Parameter``s (UW's log-variances, IMTL-L's scales) are the
    method's ``parameters()``, trained by the run's optimizer as torchjd's examples train them;
    ``state`` names them in ``state_dict``. ``rng`` (RLW) stands in for torch's global RNG."""

    def __init__(self, num_tasks: int, scalarizer: Any, rng: MethodRng | None = None,
                 state: Mapping[str, str] | None = None) -> None:
        super().__init__(num_tasks)
        self.scalarizer = scalarizer
        self.rng = rng
        self.state = dict(state or {})  # state_dict key -> the scalarizer's parameter name

    def objective(self, losses: Tensor, step: int) -> Tensor:
        if self.rng is None:
            return self.scalarizer(losses)
        with self.rng.drawing(losses.device):
            return self.scalarizer(losses)

    def parameters(self) -> list[Tensor]:
        return list(self.scalarizer.parameters())

    def to_device(self, device: torch.device) -> None:
        self.scalarizer.to(device)

    def state_dict(self) -> dict[str, Any]:
        state = {key: getattr(self.scalarizer, name).detach().clone() for key, name in self.state.items()}
        return {**state, "rng": self.rng.state_dict()} if self.rng is not None else state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for key, name in self.state.items():
                getattr(self.scalarizer, name).copy_(state[key])
        if self.rng is not None:
            self.rng.load_state_dict(state["rng"])


def uw(num_tasks: int) -> ScalarizerMethod:
    from torchjd.scalarization import UW

    return ScalarizerMethod(num_tasks, UW(num_tasks), state={"log_var": "log_var"})


class UncertaintyWeighting(ScalarizerMethod):
    """Kendall et al.'s uncertainty weighting in the form of their eq. (10), for classification
    losses: ``sum_t exp(-s_t) L_t + s_t / 2`` with ``s_t = log sigma_t^2``.

    NOTE [uncertainty vs uw]: torchjd's UW is the regression form, eq. (7) of the paper (and LibMTL's):
    ``sum_t exp(-s_t) L_t / 2 + s_t / 2``. Eq. (10) is exactly torchjd's UW applied to ``2 L``, with
    the same parameter: so this is torchjd's UW, on doubled losses. The two differ on purpose: both
    built-in tasks of the ImageNet + COCO workload are softmax classifiers, for which the paper
    derives eq. (10); its task weights ``exp(-s_t)`` start at 1 (the plain sum) where UW's start at
    1/2, and both settle at ``1 / (2 L_t)``. Runs made before UW was torchjd's saved ``log_vars``,
    the same ``s``: they resume unchanged.
    """

    def objective(self, losses: Tensor, step: int) -> Tensor:
        return self.scalarizer(2 * losses)


def uncertainty(num_tasks: int) -> UncertaintyWeighting:
    from torchjd.scalarization import UW

    return UncertaintyWeighting(num_tasks, UW(num_tasks), state={"log_vars": "log_var"})


class DWAMethod(ScalarizerMethod):
    """torchjd's DWA with its epoch made a window of ``window`` steps: ``step()`` rolls its history
    every ``window`` calls, so the weights adapt at a pace that does not depend on the data set's
    size (a window as long as an epoch is the paper's rule). The state keeps the names of the DWA
    written here before (``window_sum``, ``window_steps``, ``averages``): older runs resume."""

    def __init__(self, num_tasks: int, scalarizer: Any, window: int) -> None:
        super().__init__(num_tasks, scalarizer)
        self.window = window

    def objective(self, losses: Tensor, step: int) -> Tensor:
        result = self.scalarizer(losses)
        if self.scalarizer._n_batches == self.window:
            self.scalarizer.step()
        return result

    def to_device(self, device: torch.device) -> None:
        dwa = self.scalarizer
        if dwa._loss_sum is not None:
            dwa._loss_sum = dwa._loss_sum.to(device)
        dwa._previous_averages = [a.to(device) for a in dwa._previous_averages]

    def state_dict(self) -> dict[str, Any]:
        dwa = self.scalarizer
        history = dwa._previous_averages
        return {
            "window_sum": torch.zeros(self.num_tasks) if dwa._loss_sum is None else dwa._loss_sum.clone(),
            "window_steps": dwa._n_batches,
            "averages": torch.stack(history).clone() if history else torch.zeros(0, self.num_tasks),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        dwa = self.scalarizer
        dwa.reset()
        dwa._n_batches = int(state["window_steps"])
        dwa._loss_sum = state["window_sum"].clone() if dwa._n_batches else None
        dwa._previous_averages = [row.clone() for row in state["averages"]]
        self._device = None  # moved where the next losses are


def dwa(num_tasks: int, *, temperature: float, window: int) -> DWAMethod:
    from torchjd.scalarization import DWA

    return DWAMethod(num_tasks, DWA(temperature), window)


class FAMOMethod(ScalarizerMethod):
    """torchjd's FAMO with the paper's second pass: ``after_step(recompute)`` takes the same batch's
    losses at the new parameters (one forward pass without gradient) and steps the logits with
    FAMO's own Adam. FAMO steps its logits itself, so they are not in ``parameters()``; the state
    saved is the logits, that Adam's state and the losses of the step in flight. On the gradients
    route (``combine``, the method benchmark's) nothing calls ``after_step``: the weights stay."""

    def parameters(self) -> list[Tensor]:
        return []

    def after_step(self, recompute) -> None:
        with torch.no_grad():
            after = recompute()
        self._follow(after.device)
        self.scalarizer.update(after.detach())

    def to_device(self, device: torch.device) -> None:
        famo = self.scalarizer
        famo.to(device)
        if famo._prev_losses is not None:
            famo._prev_losses = famo._prev_losses.to(device)
        if famo._optimizer is not None:
            for state in famo._optimizer.state.values():
                for key, value in state.items():
                    if torch.is_tensor(value) and key != "step":  # Adam keeps its step count on the CPU
                        state[key] = value.to(device)

    def state_dict(self) -> dict[str, Any]:
        famo = self.scalarizer
        optimizer = None if famo._optimizer is None else copy.deepcopy(famo._optimizer.state_dict())
        previous = None if famo._prev_losses is None else famo._prev_losses.clone()
        return {"logits": famo._w.detach().clone(), "adam": optimizer, "prev_losses": previous}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from torch.optim import Adam

        famo = self.scalarizer
        famo.reset()
        with torch.no_grad():
            famo._w.copy_(state["logits"])
        if state["adam"] is not None:
            famo._optimizer = Adam([famo._w], lr=famo.lr, weight_decay=famo.weight_decay)
            famo._optimizer.load_state_dict(state["adam"])
        previous = state["prev_losses"]
        famo._prev_losses = None if previous is None else previous.to(famo._w.device).clone()


def famo(num_tasks: int, *, lr: float, weight_decay: float) -> FAMOMethod:
    from torchjd.scalarization import FAMO

    return FAMOMethod(num_tasks, FAMO(num_tasks, lr=lr, weight_decay=weight_decay))


class STCHMethod(LossMethod):
    """Smooth Tchebycheff scalarization (Lin et al., ICML 2024) with the warm-up of its multi-task
    experiments: for ``warmup + window`` steps the objective is ``sum_t log L_t``; the losses of
    the last ``window`` of them are averaged into the nadir point ``z``; from then on the objective
    is ``T * STCH_mu(log(L / z))``, torchjd's STCH with weights ``pref_vector`` (default all 1): ``T
    mu logsumexp(pref_t log(L_t / z_t) / mu)``. The paper counts epochs (4 of warm-up, the fifth
    averaged); here windows of steps stand in for them, as for DWA.
    """

    EPS = 1e-20  # keeps the logarithm of a zero loss finite, as the paper's code does

    def __init__(self, num_tasks: int, scalarizer: Any, warmup: int, window: int) -> None:
        super().__init__(num_tasks)
        self.scalarizer = scalarizer
        self.warmup, self.window = warmup, window
        self.calls = 0
        self.count = 0
        self.loss_sum: Tensor | None = None
        self.nadir: Tensor | None = None

    def objective(self, losses: Tensor, step: int) -> Tensor:
        self.calls += 1
        if self.calls <= self.warmup + self.window:
            if self.calls > self.warmup:
                detached = losses.detach()
                self.loss_sum = detached.clone() if self.loss_sum is None else self.loss_sum + detached
                self.count += 1
            return torch.log(losses + self.EPS).sum()
        if self.nadir is None:
            self.nadir = self.loss_sum / self.count
        self.scalarizer.weights = self.scalarizer.weights.to(losses)  # a plain attribute of torchjd's STCH
        return self.num_tasks * self.scalarizer(torch.log(losses / self.nadir + self.EPS))

    def to_device(self, device: torch.device) -> None:
        self.loss_sum = None if self.loss_sum is None else self.loss_sum.to(device)
        self.nadir = None if self.nadir is None else self.nadir.to(device)

    def state_dict(self) -> dict[str, Any]:
        clone = lambda t: None if t is None else t.clone()  # noqa: E731
        return {"calls": self.calls, "count": self.count, "loss_sum": clone(self.loss_sum), "nadir": clone(self.nadir)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.calls, self.count = int(state["calls"]), int(state["count"])
        self.loss_sum = None if state["loss_sum"] is None else state["loss_sum"].clone()
        self.nadir = None if state["nadir"] is None else state["nadir"].clone()
        self._device = None  # moved where the next losses are


def stch(num_tasks: int, pref_vector=None, *, mu: float, warmup: int, window: int) -> STCHMethod:
    from torchjd.scalarization import STCH

    pref = check_task_vector("pref_vector", pref_vector, num_tasks)
    return STCHMethod(num_tasks, STCH(mu, weights=torch.ones(num_tasks) if pref is None else pref), warmup, window)


def imtl_l(num_tasks: int) -> ScalarizerMethod:
    from torchjd.scalarization import IMTLL

    return ScalarizerMethod(num_tasks, IMTLL(num_tasks), state={"log_scale": "log_scale"})


def geometric_mean(num_tasks: int) -> ScalarizerMethod:
    from torchjd.scalarization import GeometricMean

    return ScalarizerMethod(num_tasks, GeometricMean())


class PBIMethod(ScalarizerMethod):
    """torchjd's PBI; its preference vector is a plain attribute, given the losses' device and dtype."""

    def objective(self, losses: Tensor, step: int) -> Tensor:
        self.scalarizer.weights = self.scalarizer.weights.to(losses)
        return self.scalarizer(losses)


def pbi(num_tasks: int, pref_vector=None, *, theta: float) -> PBIMethod:
    from torchjd.scalarization import PBI

    pref = check_task_vector("pref_vector", pref_vector, num_tasks)
    if pref is not None and not bool(pref.sum() > 0):
        raise ValueError(f"pref_vector={','.join(f'{v:g}' for v in pref.tolist())} has no positive value: "
                         "expected a direction in the positive orthant")
    return PBIMethod(num_tasks, PBI(theta, torch.ones(num_tasks) if pref is None else pref))


def rlw(num_tasks: int, seed: int = 0) -> ScalarizerMethod:
    from torchjd.scalarization import Random

    return ScalarizerMethod(num_tasks, Random(), MethodRng(seed))

