"""The gradient aggregators of torchjd as multi-task methods (UPGrad, MGDA, PCGrad, CAGrad, Nash-MTL, ...).

Aggregators whose weights depend only on the Gramian of the shared Jacobian take the Gramian
route of mtbench.aggregation (the ``[T, N_shared]`` matrix is never built); ConFIG and GradDrop
need the matrix and get it. torchjd is imported inside the factories: importing it pulls in
cvxpy, which `mtbench list` should not wait for.

Randomness: PCGrad and GradVac shuffle with ``torch.randperm``, RLW draws ``torch.randn`` and
GradDrop ``torch.rand``, all from torch's global RNG; here they draw from the method's own seeded
generators instead (``seed`` setting), saved in its state.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from mtbench import (
    GramianWeightingMethod,
    JacobianMethod,
    MethodPreset,
    MethodRng,
    Param,
    check_task_vector,
    hookimpl,
)

POSITIVE = Param(float, 0.0, None, low_open=True)
NON_NEGATIVE = Param(float, 0.0, None)
COUNT = Param(int, 1, None)
SEED = Param(int, 0, None)
PREF_VECTOR = Param(tuple, 0.0, None)  # one weight per task; its length is checked against T when built


def _projector(norm_eps: float, reg_eps: float) -> Any:
    from torchjd.linalg import QuadprogProjector

    return QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps)


def upgrad(num_tasks: int, pref_vector=None, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> GramianWeightingMethod:
    from torchjd.aggregation import UPGradWeighting

    pref = check_task_vector("pref_vector", pref_vector, num_tasks)
    return GramianWeightingMethod(num_tasks, UPGradWeighting(pref, projector=_projector(norm_eps, reg_eps)))


def dualproj(num_tasks: int, pref_vector=None, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> GramianWeightingMethod:
    from torchjd.aggregation import DualProjWeighting

    pref = check_task_vector("pref_vector", pref_vector, num_tasks)
    return GramianWeightingMethod(num_tasks, DualProjWeighting(pref, projector=_projector(norm_eps, reg_eps)))


def mgda(num_tasks: int, epsilon: float = 1e-3, max_iters: int = 100) -> GramianWeightingMethod:
    from torchjd.aggregation import MGDAWeighting

    return GramianWeightingMethod(num_tasks, MGDAWeighting(epsilon=epsilon, max_iters=max_iters))


def pcgrad(num_tasks: int, seed: int = 0) -> GramianWeightingMethod:
    from torchjd.aggregation import PCGradWeighting

    return GramianWeightingMethod(num_tasks, PCGradWeighting(), MethodRng(seed))


def cagrad(num_tasks: int, c: float = 0.5, norm_eps: float = 1e-4) -> GramianWeightingMethod:
    from torchjd.aggregation import CAGradWeighting

    return GramianWeightingMethod(num_tasks, CAGradWeighting(c=c, norm_eps=norm_eps))


def aligned_mtl(num_tasks: int, pref_vector=None) -> GramianWeightingMethod:
    from torchjd.aggregation import AlignedMTLWeighting

    pref = check_task_vector("pref_vector", pref_vector, num_tasks)
    return GramianWeightingMethod(num_tasks, AlignedMTLWeighting(pref))


def imtl_g(num_tasks: int) -> GramianWeightingMethod:
    from torchjd.aggregation import IMTLGWeighting

    return GramianWeightingMethod(num_tasks, IMTLGWeighting())


def fairgrad(num_tasks: int, alpha: float = 1.0, max_iters: int | None = None) -> GramianWeightingMethod:
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


def nash_mtl(
    num_tasks: int, max_norm: float = 1.0, update_weights_every: int = 1, optim_niter: int = 20
) -> NashMTLMethod:
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


def gradvac(num_tasks: int, beta: float = 0.5, eps: float = 1e-8, seed: int = 0) -> GradVacMethod:
    from torchjd.aggregation import GradVacWeighting

    return GradVacMethod(num_tasks, GradVacWeighting(beta=beta, eps=eps), MethodRng(seed))


def graddrop(num_tasks: int, leak=None, seed: int = 0) -> JacobianMethod:
    from torchjd.aggregation import GradDrop

    return JacobianMethod(num_tasks, GradDrop(leak=check_task_vector("leak", leak, num_tasks)), MethodRng(seed))


def config(num_tasks: int, pref_vector=None) -> JacobianMethod:
    from torchjd.aggregation import ConFIG

    return JacobianMethod(num_tasks, ConFIG(check_task_vector("pref_vector", pref_vector, num_tasks)))


def _projector_params() -> dict[str, Param]:
    return {"pref_vector": PREF_VECTOR, "norm_eps": NON_NEGATIVE, "reg_eps": NON_NEGATIVE}


@hookimpl
def mtbench_methods():
    return [
        MethodPreset(
            name="upgrad",
            title="UPGrad",
            factory=upgrad,
            defaults={"norm_eps": 1e-4, "reg_eps": 1e-4},
            params=_projector_params(),
            description=(
                "Unconflicting projection of gradients (Quinton & Rey, 'Jacobian Descent for "
                "Multi-Objective Optimization', 2024): each task gradient is projected onto the dual "
                "cone of all of them and the projections are averaged, so the step never increases a "
                "task's loss to first order. pref_vector weighs the projections."
            ),
            reads="gramian",
            order=10,
        ),
        MethodPreset(
            name="mgda",
            title="MGDA",
            factory=mgda,
            defaults={"epsilon": 1e-3, "max_iters": 100},
            params={"epsilon": POSITIVE, "max_iters": COUNT},
            description=(
                "Multiple-gradient descent (Desideri 2012), solved with the Frank-Wolfe algorithm of "
                "Sener & Koltun, 'Multi-Task Learning as Multi-Objective Optimization' (NeurIPS 2018): "
                "the minimum-norm convex combination of the task gradients."
            ),
            reads="gramian",
            order=11,
        ),
        MethodPreset(
            name="pcgrad",
            title="PCGrad",
            factory=pcgrad,
            params={"seed": SEED},
            description=(
                "Projecting conflicting gradients (Yu et al., 'Gradient Surgery for Multi-Task "
                "Learning', NeurIPS 2020): a task gradient that conflicts with another loses its "
                "component along it, the other tasks visited in a random order."
            ),
            reads="gramian",
            order=12,
        ),
        MethodPreset(
            name="cagrad",
            title="CAGrad",
            factory=cagrad,
            defaults={"c": 0.5, "norm_eps": 1e-4},
            params={"c": NON_NEGATIVE, "norm_eps": NON_NEGATIVE},
            description=(
                "Conflict-averse gradient descent (Liu et al., 'Conflict-Averse Gradient Descent for "
                "Multi-task Learning', NeurIPS 2021): the direction within a ball of radius c times the "
                "average gradient's norm that best improves the worst task."
            ),
            reads="gramian",
            order=13,
        ),
        MethodPreset(
            name="nash_mtl",
            title="Nash-MTL",
            factory=nash_mtl,
            defaults={"max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20},
            params={"max_norm": NON_NEGATIVE, "update_weights_every": COUNT, "optim_niter": COUNT},
            description=(
                "Nash bargaining over the update (Navon et al., 'Multi-Task Learning as a Bargaining "
                "Game', ICML 2022): weights solving the bargaining problem, the update's norm clipped "
                "to max_norm (0: no clipping)."
            ),
            reads="gramian",
            order=14,
        ),
        MethodPreset(
            name="aligned_mtl",
            title="Aligned-MTL",
            factory=aligned_mtl,
            params={"pref_vector": PREF_VECTOR},
            description=(
                "Aligned-MTL (Senushkin et al., 'Independent Component Alignment for Multi-Task "
                "Learning', CVPR 2023): aligns the principal components of the task gradients so the "
                "gradient system is well conditioned, scaled by the smallest singular value."
            ),
            reads="gramian",
            order=15,
        ),
        MethodPreset(
            name="imtl_g",
            title="IMTL-G",
            factory=imtl_g,
            description=(
                "Impartial multi-task learning, gradient part (Liu et al., 'Towards Impartial "
                "Multi-task Learning', ICLR 2021), in the generalised form of Quinton & Rey 2024: "
                "the update has equal projections on every task's unit gradient."
            ),
            reads="gramian",
            order=16,
        ),
        MethodPreset(
            name="dualproj",
            title="DualProj",
            factory=dualproj,
            defaults={"norm_eps": 1e-4, "reg_eps": 1e-4},
            params=_projector_params(),
            description=(
                "The average gradient projected onto the dual cone of the task gradients, as in "
                "Lopez-Paz & Ranzato, 'Gradient Episodic Memory for Continual Learning' (NeurIPS 2017)."
            ),
            reads="gramian",
            order=17,
        ),
        MethodPreset(
            name="gradvac",
            title="GradVac",
            factory=gradvac,
            defaults={"beta": 0.5, "eps": 1e-8},
            params={"beta": Param(float, 0.0, 1.0), "eps": NON_NEGATIVE, "seed": SEED},
            description=(
                "Gradient vaccine (Wang et al., 'Gradient Vaccine: Investigating and Improving "
                "Multi-task Optimization in Massively Multilingual Models', ICLR 2021): pulls each pair "
                "of task gradients towards a running average (rate beta) of their cosine similarity."
            ),
            reads="gramian",
            order=18,
        ),
        MethodPreset(
            name="graddrop",
            title="GradDrop",
            factory=graddrop,
            params={"leak": Param(tuple, 0.0, 1.0), "seed": SEED},
            description=(
                "Gradient sign dropout (Chen et al., 'Just Pick a Sign: Optimizing Deep Multitask "
                "Models with Gradient Sign Dropout', NeurIPS 2020): per coordinate, keeps the task "
                "gradients of one sign, drawn by the sign purity; leak lets a share of each through."
            ),
            reads="jacobian",
            order=19,
        ),
        MethodPreset(
            name="config",
            title="ConFIG",
            factory=config,
            params={"pref_vector": PREF_VECTOR},
            description=(
                "Conflict-free update (Liu et al., 'ConFIG: Towards Conflict-free Training of Physics "
                "Informed Neural Networks', ICLR 2025): the direction with equal positive cosine to "
                "every unit task gradient, scaled by the gradients' projections on it."
            ),
            reads="jacobian",
            order=20,
        ),
        MethodPreset(
            name="fairgrad",
            title="FairGrad",
            factory=fairgrad,
            defaults={"alpha": 1.0},
            params={"alpha": NON_NEGATIVE, "max_iters": COUNT},
            description=(
                "Alpha-fair resource allocation (Ban & Ji, 'Fair Resource Allocation in Multi-Task "
                "Learning', ICML 2024): weights solving the alpha-fairness condition; alpha=0 is the "
                "plain average, larger alpha favours the worst-off task."
            ),
            reads="gramian",
            order=21,
        ),
        MethodPreset(
            name="random",
            title="RLW",
            factory=random_weighting,
            params={"seed": SEED},
            description=(
                "Random loss weighting (Lin et al., 'Reasonable Effectiveness of Random Weighting: A "
                "Litmus Test for Multi-Task Learning', TMLR 2022): fresh softmax-normalised Gaussian "
                "weights every step; the baseline a balancing method has to beat."
            ),
            reads="gramian",
            order=22,
        ),
    ]
