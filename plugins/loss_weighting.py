"""The method objects of the loss-weighting plugin (loss_methods.py names them by dotted name, so
listing the methods imports no torch): uncertainty weighting, DWA and GradNorm."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from mtbench import LossWeightingMethod, TaskGradients

__all__ = ["DynamicWeightAverage", "GradNorm", "UncertaintyWeighting"]


class UncertaintyWeighting(LossWeightingMethod):
    """Homoscedastic uncertainty weighting (Kendall et al. 2018) with learnable ``s_t = log sigma_t^2``.

    Both tasks here are softmax classifiers (per image, per pixel), so the loss is Kendall's
    classification form, eq. (10): ``sum_t exp(-s_t) L_t + s_t / 2`` (``1/sigma^2 L + log sigma``).
    Its weights start at 1 (the plain sum) and settle where ``exp(-s_t) = 1 / (2 L_t)``. The
    gradient of ``s`` is set analytically, ``1/2 - exp(-s_t) L_t``: no extra backward pass.
    """

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.log_vars = torch.zeros(num_tasks, requires_grad=True)

    def parameters(self) -> list[Tensor]:
        return [self.log_vars]

    def task_weights(self, grads: TaskGradients, losses: Tensor, step: int) -> Tensor:
        s = self.log_vars.detach()
        weights = torch.exp(-s)
        self.log_vars.grad = 0.5 - weights * losses.to(s)
        return weights

    def state_dict(self) -> dict[str, Any]:
        return {"log_vars": self.log_vars.detach().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            self.log_vars.copy_(state["log_vars"])


class DynamicWeightAverage(LossWeightingMethod):
    """Dynamic weight average (Liu et al. 2019): ``w_t = T softmax(r / temperature)_t`` with
    ``r_t = L_t(k-1) / L_t(k-2)``, the ratio of task t's two latest average losses.

    The paper averages losses over epochs; here over windows of ``window`` steps, so the
    weights adapt at a pace that does not depend on the data set size (a window as long as an
    epoch gives the paper's rule). Until two windows are complete the weights are 1.
    """

    def __init__(self, num_tasks: int, *, temperature: float, window: int) -> None:
        super().__init__(num_tasks)
        self.temperature = temperature
        self.window = window
        self.window_sum = torch.zeros(num_tasks, dtype=torch.float64)
        self.window_steps = 0
        self.averages = torch.zeros(0, num_tasks, dtype=torch.float64)  # the latest two window means, oldest first

    def task_weights(self, grads: TaskGradients, losses: Tensor, step: int) -> Tensor:
        if len(self.averages) == 2:
            previous, latest = self.averages
            # A task whose average loss reached zero has nothing left to balance: ratio 0, not inf.
            ratios = latest / previous.clamp(min=torch.finfo(previous.dtype).tiny)
            weights = self.num_tasks * torch.softmax(ratios / self.temperature, dim=0)
        else:
            weights = torch.ones(self.num_tasks, dtype=torch.float64)
        self.window_sum += losses.to("cpu", torch.float64)
        self.window_steps += 1
        if self.window_steps == self.window:
            self.averages = torch.cat([self.averages, (self.window_sum / self.window)[None]])[-2:]
            self.window_sum.zero_()
            self.window_steps = 0
        return weights.float()

    def state_dict(self) -> dict[str, Any]:
        return {
            "window_sum": self.window_sum.clone(),
            "window_steps": self.window_steps,
            "averages": self.averages.clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.window_sum = state["window_sum"].to("cpu", torch.float64).clone()
        self.window_steps = int(state["window_steps"])
        self.averages = state["averages"].to("cpu", torch.float64).clone()


class GradNorm(LossWeightingMethod):
    """GradNorm (Chen et al. 2018): learnable task weights that equalise the tasks' training rates.

    With ``G_t = w_t ||g_t||`` (the norm over all shared parameters), ``r_t`` task t's loss ratio
    ``L_t / L_t(first step)`` over the mean ratio and the target ``mean(G) r_t^alpha`` held
    constant, the weights' gradient is that of ``sum_t |G_t - target_t|``:
    ``sign(G_t - target_t) ||g_t||``. The optimizer steps the weights; the next ``combine``
    renormalises them to sum to T before using them.
    """

    # A weight that one large step drove to or below zero would silence or invert its task.
    MIN_WEIGHT = 1e-6

    def __init__(self, num_tasks: int, *, alpha: float) -> None:
        super().__init__(num_tasks)
        self.alpha = alpha
        self.weights = torch.ones(num_tasks, requires_grad=True)
        self.initial_losses: Tensor | None = None

    def parameters(self) -> list[Tensor]:
        return [self.weights]

    def task_weights(self, grads: TaskGradients, losses: Tensor, step: int) -> Tensor:
        with torch.no_grad():
            self.weights.clamp_(min=self.MIN_WEIGHT)
            self.weights.mul_(self.num_tasks / self.weights.sum())
        w = self.weights.detach()
        losses = losses.to(w)
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        norms = grads.sq_norms().to(w).sqrt()
        rates = losses / self.initial_losses.clamp(min=torch.finfo(w.dtype).tiny)
        target = (w * norms).mean() * (rates / rates.mean()) ** self.alpha
        self.weights.grad = torch.sign(w * norms - target) * norms
        return w.clone()

    def state_dict(self) -> dict[str, Any]:
        initial = None if self.initial_losses is None else self.initial_losses.clone()
        return {"weights": self.weights.detach().clone(), "initial_losses": initial}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            self.weights.copy_(state["weights"])
        initial = state["initial_losses"]
        self.initial_losses = None if initial is None else initial.to(self.weights).clone()
