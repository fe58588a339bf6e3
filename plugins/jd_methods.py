"""The gradient aggregators of torchjd as multi-task methods (UPGrad, MGDA, PCGrad, CAGrad, Nash-MTL, ...).

Aggregators whose weights depend only on the Gramian of the shared Jacobian take the Gramian
route of mtbench.aggregation (the ``[T, N_shared]`` matrix is never built); ConFIG and GradDrop
need the matrix and get it. The factories are in jd_aggregators.py, named here by dotted name:
listing the methods imports neither torch nor torchjd (which pulls in cvxpy).

NOTE [two-batch methods]: torchjd's MoDo and SDMGrad weightings are not methods here. Their weights
come from the product of the task Jacobians of two (SDMGrad: three) independent batches, and the
trainer draws one batch per task per step; fed one batch's Gramian they lose the guarantee they
are made for. MGDA's description says so, where `mtbench list -v` shows it.
"""

from mtbench import MethodPreset, Param, hookimpl

__all__ = ["mtbench_methods"]

POSITIVE = Param(float, 0.0, None, low_open=True)
NON_NEGATIVE = Param(float, 0.0, None)
COUNT = Param(int, 1, None)
SEED = Param(int, 0, None)
PREF_VECTOR = Param(tuple, 0.0, None)  # one weight per task; its length is checked against T when built


def _projector_params() -> dict[str, Param]:
    return {"pref_vector": PREF_VECTOR, "norm_eps": NON_NEGATIVE, "reg_eps": NON_NEGATIVE}


@hookimpl
def mtbench_methods():
    return [
        MethodPreset(
            name="upgrad",
            title="UPGrad",
            factory="mtbench_plugins.jd_aggregators:upgrad",
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
            factory="mtbench_plugins.jd_aggregators:mgda",
            defaults={"epsilon": 1e-3, "max_iters": 100},
            params={"epsilon": POSITIVE, "max_iters": COUNT},
            description=(
                "Multiple-gradient descent (Desideri 2012), solved with the Frank-Wolfe algorithm of "
                "Sener & Koltun, 'Multi-Task Learning as Multi-Objective Optimization' (NeurIPS 2018): "
                "the minimum-norm convex combination of the task gradients. Not available: MoDo (Chen et "
                "al., JMLR 2024) and SDMGrad (Xiao et al., NeurIPS 2023), stochastic MGDA variants that need "
                "the task gradients of two or three independent batches per step; the trainer draws one."
            ),
            reads="gramian",
            order=11,
        ),
        MethodPreset(
            name="pcgrad",
            title="PCGrad",
            factory="mtbench_plugins.jd_aggregators:pcgrad",
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
            factory="mtbench_plugins.jd_aggregators:cagrad",
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
            factory="mtbench_plugins.jd_aggregators:nash_mtl",
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
            factory="mtbench_plugins.jd_aggregators:aligned_mtl",
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
            factory="mtbench_plugins.jd_aggregators:imtl_g",
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
            factory="mtbench_plugins.jd_aggregators:dualproj",
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
            factory="mtbench_plugins.jd_aggregators:gradvac",
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
            factory="mtbench_plugins.jd_aggregators:graddrop",
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
            factory="mtbench_plugins.jd_aggregators:config",
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
            factory="mtbench_plugins.jd_aggregators:fairgrad",
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
            factory="mtbench_plugins.jd_aggregators:random_weighting",
            params={"seed": SEED},
            description=(
                "Random loss weighting (Lin et al., 'Reasonable Effectiveness of Random Weighting: A "
                "Litmus Test for Multi-Task Learning', TMLR 2022): fresh softmax-normalised Gaussian "
                "weights every step; the baseline a balancing method has to beat. rlw draws the same "
                "weights from the losses alone, for one backward pass."
            ),
            reads="gramian",
            order=22,
        ),
        MethodPreset(
            name="excess_mtl",
            title="ExcessMTL",
            factory="mtbench_plugins.jd_aggregators:excess_mtl",
            defaults={"robust_step_size": 1.0, "warmup": 0},
            params={"robust_step_size": POSITIVE, "warmup": Param(int, 0, None)},
            description=(
                "Excess risk weighting (He et al., 'Robust Multi-Task Learning with Excess Risks', ICML "
                "2024): exponentiated-gradient task weights driven by each task's estimated excess risk "
                "(its squared gradient over an AdaGrad-like accumulator as large as the shared Jacobian, "
                "saved in the checkpoint); `warmup` steps of uniform weights set the baseline risk."
            ),
            reads="jacobian",
            order=23,
        ),
        MethodPreset(
            name="cr_mogm",
            title="CR-MOGM",
            factory="mtbench_plugins.jd_aggregators:cr_mogm",
            defaults={"alpha": 0.9, "epsilon": 1e-3, "max_iters": 100},
            params={"alpha": Param(float, 0.0, 1.0), "epsilon": POSITIVE, "max_iters": COUNT},
            description=(
                "Correlation-reduced multi-objective gradient manipulation (Zhou et al., 'On the "
                "Convergence of Stochastic Multi-Objective Gradient Manipulation and Beyond', NeurIPS "
                "2022): MGDA's weights (epsilon, max_iters) smoothed across steps by a moving average with "
                "rate alpha, which makes the stochastic update converge."
            ),
            reads="gramian",
            order=24,
        ),
    ]
