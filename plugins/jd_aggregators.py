"""The method factories of the torchjd plugin (jd_methods.py names them by dotted name, so listing
the methods imports neither torch nor torchjd). A setting with a preset default is keyword-only
here and has no default of its own: the preset's ``defaults=`` says it once.

torchjd is imported inside the factories: importing it pulls in cvxpy, which only a run needs.

Randomness: PCGrad and GradVac shuffle with ``torch.randperm``, RLW draws ``torch.randn`` and
GradDrop ``torch.rand``, all from torch's global RNG; here they draw from the method's own seeded
generators instead (``seed`` setting), saved in its state.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from mtbench import GramianWeightingMethod, JacobianMethod, MethodRng, TaskGradients, check_task_vector

__all__ = [
    "CRMOGMMethod", "ExcessMTLMethod", "GradVacMethod", "NashMTLMethod", "aligned_mtl", "cagrad", "config",
    "cr_mogm", "dualproj", "excess_mtl", "fairgrad", "graddrop", "gradvac", "imtl_g", "mgda", "nash_mtl", "pcgrad",
    "random_weighting", "upgrad",
]


def _projector(norm_eps: float, reg_eps: float) -> Any:
    from torchjd.linalg import QuadprogProjector

    return QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps)


def upgrad(num_tasks: int, pref_vector=None, *, norm_eps: float, reg_eps: float) -> GramianWeightingMethod:
    from torchjd.aggregation import UPGradWeighting

    pref = check_task_vector("pref_vector", pref_vector, num_tasks)
    return GramianWeightingMethod(num_tasks, UPGradWeighting(pref, projector=_projector(norm_eps, reg_eps)))


def dualproj(num_tasks: int, pref_vector=None, *, norm_eps: float, reg_eps: float) -> GramianWeightingMethod:
    from torchjd.aggregation import DualProjWeighting

    pref = check_task_vector("pref_vector", pref_vector, num_tasks)
    return GramianWeightingMethod(num_tasks, DualProjWeighting(pref, projector=_projector(norm_eps, reg_eps)))


def mgda(num_tasks: int, *, epsilon: float, max_iters: int) -> GramianWeightingMethod:
    from torchjd.aggregation import MGDAWeighting

    return GramianWeightingMethod(num_tasks, MGDAWeighting(epsilon=epsilon, max_iters=max_iters))


def pcgrad(num_tasks: int, seed: int = 0) -> GramianWeightingMethod:
    from torchjd.aggregation import PCGradWeighting

    return GramianWeightingMethod(num_tasks, PCGradWeighting(), MethodRng(seed))


def cagrad(num_tasks: int, *, c: float, norm_eps: float) -> GramianWeightingMethod:
    from torchjd.aggregation import CAGradWeighting

    return GramianWeightingMethod(num_tasks, CAGradWeighting(c=c, norm_eps=norm_eps))


def aligned_mtl(num_tasks: int, pref_vector=None) -> GramianWeightingMethod:
    from torchjd.aggregation import AlignedMTLWeighting

    pref = check_task_vector("pref_vector", pref_vector, num_tasks)
    return GramianWeightingMethod(num_tasks, AlignedMTLWeighting(pref))


def imtl_g(num_tasks: int) -> GramianWeightingMethod:
    from torchjd.aggregation import IMTLGWeighting

    return GramianWeightingMethod(num_tasks, IMTLGWeighting())


def fairgrad(num_tasks: int, max_iters: int | None = None, *, alpha: float) -> GramianWeightingMethod:
    from torchjd.aggregation import FairGradWeighting

    return GramianWeightingMethod(num_tasks, FairGradWeighting(alpha=alpha, max_iters=max_iters))


def random_weighting(num_tasks: int, seed: int = 0) -> GramianWeightingMethod:
    from torchjd.aggregation import RandomWeighting

    # RandomWeighting reads only the number of rows, dtype and device of what it is given, so the
    # T x T Gramian serves as well as the Jacobian and the weights match torchjd's Random.
    return GramianWeightingMethod(num_tasks, RandomWeighting(), MethodRng(seed))


class NashMTLMethod(GramianWeightingMethod):
    """Nash-MTL on the Gramian route.

    torchjd's Nash-MTL weighting reads the Jacobian only through ``J J^T`` (its bargaining problem)
    and ``||w J||`` (the norm clipping), both functions of the Gramian; so it is given a T x T
    square root ``R`` of the Gramian (``R R^T = J J^T``) instead of the ``[T, N_shared]`` matrix.
    Its state (the previous weights and the step count) is saved; the solver problem is rebuilt.
    """

    def weights(self, gramian: torch.Tensor) -> torch.Tensor:
        values, vectors = torch.linalg.eigh(gramian)
        root = vectors * values.clamp(min=0).sqrt()
        return self.weighting(root)

    def state_dict(self) -> dict[str, Any]:
        w = self.weighting
        return {
            "step": w.step,
            "prvs_alpha": torch.from_numpy(w.prvs_alpha.copy()),
            "normalization_factor": torch.from_numpy(w.normalization_factor.copy()),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        w = self.weighting
        w.reset()
        w.prvs_alpha = state["prvs_alpha"].numpy().copy()
        w.normalization_factor = state["normalization_factor"].numpy().copy()
        w.step = state["step"]
        if w.step:
            # A fresh weighting builds its solver problem on its first call; a resumed one is past it.
            w._init_optim_problem()


def nash_mtl(num_tasks: int, *, max_norm: float, update_weights_every: int, optim_niter: int) -> NashMTLMethod:
    from torchjd.aggregation import NashMTL

    aggregator = NashMTL(
        num_tasks, max_norm=max_norm, update_weights_every=update_weights_every, optim_niter=optim_niter
    )
    return NashMTLMethod(num_tasks, aggregator.weighting)


class GradVacMethod(GramianWeightingMethod):
    """GradVac on the Gramian route; its state is the EMA of the pairwise cosine targets and the RNG."""

    def state_dict(self) -> dict[str, Any]:
        phi = self.weighting._phi_t
        return {**super().state_dict(), "phi": None if phi is None else phi.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.weighting.reset()
        phi = state["phi"]
        if phi is not None:
            self.weighting._phi_t = phi.clone()
            self.weighting._state_key = (phi.shape[0], phi.dtype)


def gradvac(num_tasks: int, seed: int = 0, *, beta: float, eps: float) -> GradVacMethod:
    from torchjd.aggregation import GradVacWeighting

    return GradVacMethod(num_tasks, GradVacWeighting(beta=beta, eps=eps), MethodRng(seed))


def graddrop(num_tasks: int, leak=None, seed: int = 0) -> JacobianMethod:
    from torchjd.aggregation import GradDrop

    return JacobianMethod(num_tasks, GradDrop(leak=check_task_vector("leak", leak, num_tasks)), MethodRng(seed))


def config(num_tasks: int, pref_vector=None) -> JacobianMethod:
    from torchjd.aggregation import ConFIG

    return JacobianMethod(num_tasks, ConFIG(check_task_vector("pref_vector", pref_vector, num_tasks)))


class ExcessMTLMethod(JacobianMethod):
    """ExcessMTL on the ``[T, N_shared]`` Jacobian: torchjd's weighting reads its squared entries (its
    AdaGrad-like accumulator ``S`` is as large as the Jacobian); the shared gradient, torchjd's
    ``w @ J``, is computed as the weighted sum of the task gradients, and ``w`` is logged. Its state,
    ``S`` included, is saved."""

    def __init__(self, num_tasks: int, aggregator: Any) -> None:
        super().__init__(num_tasks, aggregator)
        self.weighting = aggregator.weighting

    def combine_shared(self, grads: TaskGradients, losses: torch.Tensor, step: int) -> list[torch.Tensor]:
        if not grads.shared:
            self.last_weights = None
            return []
        matrix = grads.jacobian()
        self._follow(matrix)
        self.last_weights = self.weighting(matrix).detach()
        return grads.weighted_sum(self.last_weights)

    def _follow(self, matrix: torch.Tensor) -> None:
        """Move the state to the Jacobian's device and dtype: a checkpoint loads on the CPU, and torchjd
        would start afresh on a Jacobian whose device or dtype differs from its state's."""
        w = self.weighting
        s = w._sq_grad_sum
        if s is None or s.shape != matrix.shape or (s.device, s.dtype) == (matrix.device, matrix.dtype):
            return
        for name in ("_weights", "_sq_grad_sum", "_initial_w", "_warmup_w_sum"):
            value = getattr(w, name)
            if value is not None:
                setattr(w, name, value.to(matrix))
        w._state_key = (*matrix.shape, matrix.dtype, matrix.device)

    def state_dict(self) -> dict[str, Any]:
        w = self.weighting
        clone = lambda t: None if t is None else t.clone()  # noqa: E731
        return {"weights": clone(w._weights), "sq_grad_sum": clone(w._sq_grad_sum), "initial_w": clone(w._initial_w),
                "warmup_w_sum": clone(w._warmup_w_sum), "n_steps": w._n_steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        w = self.weighting
        w.reset()
        if state["sq_grad_sum"] is None:
            return
        w._weights, w._sq_grad_sum = state["weights"].clone(), state["sq_grad_sum"].clone()
        w._warmup_w_sum = state["warmup_w_sum"].clone()
        w._initial_w = None if state["initial_w"] is None else state["initial_w"].clone()
        w._n_steps = int(state["n_steps"])
        s = w._sq_grad_sum
        # torchjd rebuilds (zeroes) its state for a Jacobian of another shape, dtype or device than this key.
        w._state_key = (s.shape[0], s.shape[1], s.dtype, s.device)


def excess_mtl(num_tasks: int, *, robust_step_size: float, warmup: int) -> ExcessMTLMethod:
    from torchjd.aggregation import ExcessMTL

    return ExcessMTLMethod(num_tasks, ExcessMTL(robust_step_size=robust_step_size, n_warmup_steps=warmup))


class CRMOGMMethod(GramianWeightingMethod):
    """CR-MOGM on the Gramian route: torchjd's ``CRMOGMWeighting`` smooths the weights of the wrapped
    Gramian weighting (MGDA here) with a moving average; the average is the state saved, and moved
    to the Gramian's device and dtype (a checkpoint loads on the CPU)."""

    def weights(self, gramian: torch.Tensor) -> torch.Tensor:
        previous = self.weighting._lambda
        if previous is not None:
            self.weighting._lambda = previous.to(gramian)
        return self.weighting(gramian)

    def state_dict(self) -> dict[str, Any]:
        previous = self.weighting._lambda
        return {**super().state_dict(), "lambda": None if previous is None else previous.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.weighting.reset()
        self.weighting._lambda = None if state["lambda"] is None else state["lambda"].clone()


def cr_mogm(num_tasks: int, *, alpha: float, epsilon: float, max_iters: int) -> CRMOGMMethod:
    from torchjd.aggregation import CRMOGMWeighting, MGDAWeighting

    return CRMOGMMethod(num_tasks, CRMOGMWeighting(MGDAWeighting(epsilon=epsilon, max_iters=max_iters), alpha=alpha))
