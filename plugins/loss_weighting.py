"""What the losses-only methods share (``LossMethod``), and GradNorm, which torchjd lacks.

loss_methods.py names the method objects by dotted name, so listing the methods imports no torch.
The scalarizers of torchjd (UW, DWA, FAMO, STCH, ...) are wrapped in jd_scalarizers.py.

NOTE [a scalar's task weights]: a method that reads only the task losses (``reads="loss"``) makes
its step one backward pass of ``scalarize(losses, step)``, a scalar of the T weighted task losses
(NOTE [losses-only methods] in mtbench.presets.method). Its task weights are the derivatives of that scalar by the losses: every
parameter, shared or task-specific, gets ``sum_t (d scalar / d L_t) g_t`` from the one backward pass.
The same step on the tasks' gradients kept apart is that weighted sum, which ``combine`` computes
(the method benchmark times it; a trainer that takes the losses-only path never calls it).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from mtbench import TaskGradients

__all__ = ["GradNorm", "LossMethod"]


def _weighted(task_grads, num_tasks: int, weights: Tensor, grads: TaskGradients | None = None) -> list[Tensor | None]:
    """``sum_t weights[t] g_t`` for every parameter, shared or task-specific; None where no task reaches it."""
    grads = grads if grads is not None else TaskGradients(task_grads, num_tasks)
    combined: list[Tensor | None] = [None] * grads.num_params
    for i, g in zip(grads.shared, grads.weighted_sum(weights)):
        combined[i] = g
    scales = weights.tolist()
    for i, task in grads.specific:
        combined[i] = task_grads[task][i] * scales[task]
    return combined


class LossMethod:
    """Base of the built-in losses-only methods: a subclass says its ``objective(losses, step)``.

    ``scalarize`` returns the objective of the attached losses and records ``last_weights``, its
    derivatives by the T losses (read from the objective's own small graph, not the model's).
    ``combine`` is the same step on the tasks' gradients kept apart (the chain rule); the method's
    own learnable tensors (``parameters()``) get their gradient from either.
    """

    def __init__(self, num_tasks: int) -> None:
        self.num_tasks = num_tasks
        self.last_weights: Tensor | None = None
        self._device: torch.device | None = None
        self._step: int | None = None  # the step of the last scalarize, and the state it started from
        self._before: dict[str, Any] = {}

    def objective(self, losses: Tensor, step: int) -> Tensor:
        """The 0-d tensor whose gradient the step follows; ``losses`` is the 1-d tensor of T losses."""
        raise NotImplementedError

    def parameters(self) -> list[Tensor]:
        """The learnable tensors the run's optimizer trains (none unless a subclass says so)."""
        return []

    def to_device(self, device: torch.device) -> None:
        """Move what the method computes with to ``device`` (where the losses are); a no-op here."""

    def _follow(self, device: torch.device) -> None:
        if self._device != device:
            self.to_device(device)
            self._device = device

    def _check(self, losses: Tensor) -> None:
        if tuple(losses.shape) != (self.num_tasks,):
            raise ValueError(f"losses has shape {tuple(losses.shape)}: expected ({self.num_tasks},), one loss per task")

    def scalarize(self, losses: Tensor, step: int) -> Tensor:
        """The scalar the step backpropagates once; ``losses`` must be attached to the autograd graph.

        A second call with the same ``step`` is the same step evaluated again (an optimizer that
        takes a closure, SAM say, asks for the gradient at a second point): it is computed from the
        state the step started with (the learnable weights where the optimizer has put them), and
        leaves the state as the first call left it, so that DWA's history, STCH's count, FAMO's
        losses before the step and RLW's draw advance once per step.
        """
        self._check(losses)
        if not losses.requires_grad:
            raise ValueError("losses do not require grad: expected the task losses attached to the autograd graph")
        self._follow(losses.device)
        if step != self._step:
            self._step, self._before = step, self.state_dict()
            return self.evaluate(losses, step)
        now = self.state_dict()
        own = [p.detach().clone() for p in self.parameters()]
        self.load_state_dict(self._before)
        with torch.no_grad():
            for p, value in zip(self.parameters(), own):
                p.copy_(value)  # the learnable weights are the optimizer's: evaluated where it has put them
        self._follow(losses.device)
        result = self.evaluate(losses, step)
        self.load_state_dict(now)
        self._follow(losses.device)
        return result

    def evaluate(self, losses: Tensor, step: int) -> Tensor:
        """The objective of the attached losses, its derivatives by them kept as ``last_weights``."""
        result = self.objective(losses, step)
        (weights,) = torch.autograd.grad(result, losses, retain_graph=True)
        self.last_weights = weights.detach()
        return result

    def combine(self, task_grads: Sequence[Sequence[Tensor | None]], losses: Tensor,
                step: int) -> list[Tensor | None]:
        """The gradient of ``objective`` from the tasks' gradients: ``sum_t (d objective / d L_t) g_t``
        for every parameter (None where no task reaches it). Sets the ``.grad`` of ``parameters()``."""
        if len(task_grads) != self.num_tasks:
            raise ValueError(f"task_grads holds {len(task_grads)} tasks: expected {self.num_tasks}, one list per task")
        present = next((g for row in task_grads for g in row if g is not None), None)
        device = present.device if present is not None else losses.device
        leaf = losses.detach().to(device).clone().requires_grad_()
        self._check(leaf)
        self._follow(device)
        own = [p for p in self.parameters() if p.requires_grad]
        grads = torch.autograd.grad(self.objective(leaf, step), [leaf, *own], allow_unused=True)
        for p, g in zip(own, grads[1:]):  # as the trainer's backward pass would after its zero_grad
            p.grad = g
        self.last_weights = grads[0].detach()
        return _weighted(task_grads, self.num_tasks, self.last_weights)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class GradNorm(LossMethod):
    """GradNorm (Chen et al. 2018): learnable task weights that equalise the tasks' training rates.

    With ``G_t = w_t ||grad_W L_t||`` over the last shared layer W (``bind``: the paper's choice, to
    save compute), ``r_t`` task t's loss ratio ``L_t / L_t(first step)`` over
    the mean ratio, and the target ``mean(G) r_t^alpha`` held constant, the weights' gradient is that
    of the GradNorm loss ``sum_t |G_t - target_t|``: ``sign(G_t - target_t) ||grad_W L_t||``. The
    step is on ``sum_t w_t L_t``; the run's optimizer steps the weights, and the next step
    renormalises them to sum to T before using them.

    The scalar handed back carries the weights' gradient as a term of value zero,
    ``w . d - (w . d).detach()`` with ``d`` the GradNorm gradient: the one backward pass sets it,
    whenever the trainer clears the gradients, and a gradient scaler scales and unscales it with
    the others. Cost: T backward passes from the losses to W (the heads and W only), then the one
    backward pass. ``combine`` (tasks' gradients kept apart) reads the norms over all shared
    parameters instead, as this method did before it took the losses-only path.
    """

    # A weight that one large step drove to or below zero would silence or invert its task.
    MIN_WEIGHT = 1e-6

    def __init__(self, num_tasks: int, *, alpha: float) -> None:
        super().__init__(num_tasks)
        self.alpha = alpha
        self.weights = torch.ones(num_tasks, requires_grad=True)
        self.initial_losses: Tensor | None = None
        self.shared: list[Tensor] | None = None
        self.last_gradnorm_loss: Tensor | None = None  # sum_t |G_t - target_t| of the last step, for diagnostics

    def parameters(self) -> list[Tensor]:
        return [self.weights]

    def bind(self, shared: Sequence[Tensor]) -> None:
        """The parameters of the model's last shared layer, where the tasks' gradient norms are read."""
        self.shared = [p for p in shared if p.requires_grad]
        if not self.shared:
            raise ValueError("bind was given no trainable parameter of the last shared layer")

    def _renormalised(self) -> Tensor:
        with torch.no_grad():
            self.weights.clamp_(min=self.MIN_WEIGHT)
            self.weights.mul_(self.num_tasks / self.weights.sum())
        return self.weights.detach().clone()

    def _weights_grad(self, w: Tensor, norms: Tensor, losses: Tensor) -> Tensor:
        """``d/dw sum_t |w_t n_t - target_t|`` with the target held constant (Chen et al. 2018, eq. 2)."""
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        rates = losses / self.initial_losses.clamp(min=torch.finfo(w.dtype).tiny)  # inverse training rates
        target = (w * norms).mean() * (rates / rates.mean()) ** self.alpha
        self.last_gradnorm_loss = (w * norms - target).abs().sum()
        return torch.sign(w * norms - target) * norms

    def scalarize(self, losses: Tensor, step: int) -> Tensor:
        if self.shared is None:
            raise ValueError("gradnorm reads the task gradients on the last shared layer: bind(shared) was not called")
        return super().scalarize(losses, step)

    def evaluate(self, losses: Tensor, step: int) -> Tensor:
        w = self._renormalised()
        sq = []
        for t in range(self.num_tasks):
            grads = torch.autograd.grad(losses[t], self.shared, retain_graph=True, allow_unused=True)
            sq.append(sum((g.float().square().sum() for g in grads if g is not None), torch.zeros((), device=w.device)))
        norms = torch.stack(sq).to(w).sqrt()
        d = self._weights_grad(w, norms, losses.detach().to(w))
        self.last_weights = w
        carrier = (self.weights * d).sum()
        return (w.to(losses.dtype) * losses).sum() + (carrier - carrier.detach()).to(losses.dtype)

    def combine(self, task_grads, losses, step):
        grads = TaskGradients(task_grads, self.num_tasks)
        self._check(losses)
        w = self._renormalised()
        norms = grads.sq_norms().to(w).sqrt()
        d = self._weights_grad(w, norms, losses.detach().to(w))
        self.weights.grad = d
        self.last_weights = w
        return _weighted(task_grads, self.num_tasks, w, grads)

    def to_device(self, device: torch.device) -> None:
        self.weights.data = self.weights.data.to(device)
        if self.initial_losses is not None:
            self.initial_losses = self.initial_losses.to(device)

    def state_dict(self) -> dict[str, Any]:
        initial = None if self.initial_losses is None else self.initial_losses.clone()
        return {"weights": self.weights.detach().clone(), "initial_losses": initial}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            self.weights.copy_(state["weights"])
        initial = state["initial_losses"]
        self.initial_losses = None if initial is None else initial.to(self.weights).clone()
