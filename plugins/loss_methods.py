"""Loss-weighting methods that torchjd lacks: uncertainty weighting, DWA and GradNorm.

Each sets one weight per task and the step is on ``sum_t w_t L_t``: every parameter, shared or
task-specific, gets ``sum_t w_t g_t`` (the ``losses`` and gradients the trainer hands in already
carry the user's task weights). The learnable weights of uncertainty weighting and GradNorm are
the method's ``parameters()``: the run's optimizer steps them, ``combine`` sets their gradient.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from mtbench import LossWeightingMethod, MethodPreset, Param, TaskGradients, hookimpl


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

    def __init__(self, num_tasks: int, temperature: float = 2.0, window: int = 100) -> None:
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

    def __init__(self, num_tasks: int, alpha: float = 1.5) -> None:
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


@hookimpl
def mtbench_methods():
    return [
        MethodPreset(
            name="uncertainty",
            title="Uncertainty weighting",
            factory=UncertaintyWeighting,
            description=(
                "Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, 'Multi-Task Learning "
                "Using Uncertainty to Weigh Losses for Scene Geometry and Semantics', CVPR 2018): one "
                "learnable log-variance per task, trained with the model; a noisy task weighs less."
            ),
            reads="weights",
            needs_losses=True,
            order=30,
        ),
        MethodPreset(
            name="dwa",
            title="DWA",
            factory=DynamicWeightAverage,
            defaults={"temperature": 2.0, "window": 100},
            params={"temperature": Param(float, 0.0, None, low_open=True), "window": Param(int, 1, None)},
            description=(
                "Dynamic weight average (Liu, Johns & Davison, 'End-to-End Multi-Task Learning with "
                "Attention', CVPR 2019): a task whose loss falls slowly gets more weight. Loss averages "
                "over windows of `window` steps stand in for the paper's epochs."
            ),
            reads="weights",
            needs_losses=True,
            order=31,
        ),
        MethodPreset(
            name="gradnorm",
            title="GradNorm",
            factory=GradNorm,
            defaults={"alpha": 1.5},
            params={"alpha": Param(float, 0.0, None)},
            description=(
                "GradNorm (Chen et al., 'GradNorm: Gradient Normalization for Adaptive Loss Balancing "
                "in Deep Multitask Networks', ICML 2018): learnable task weights pull each task's "
                "gradient norm on the shared parameters towards the mean, scaled by its relative "
                "training rate to the power alpha."
            ),
            reads="norms",
            needs_losses=True,
            order=32,
        ),
    ]
