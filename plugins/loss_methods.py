"""The losses-only methods: torchjd's scalarizers (UW, DWA, FAMO, STCH, IMTL-L, GLS, PBI, RLW), Kendall's
classification form of uncertainty weighting, and GradNorm, which torchjd lacks.

Each reads the task losses only (``reads="loss"``): the step is one backward pass of the scalar it
makes of them, as for the plain sum (the ``losses`` it gets already carry the user's task weights).
GradNorm also reads the tasks' gradients on the last shared layer; FAMO takes a forward pass without
gradient after the step; ``extra_cost`` says so in `mtbench list`.

The method objects are in jd_scalarizers.py and loss_weighting.py, named here by dotted name:
listing the methods imports neither torch nor torchjd. Each default is said once, in ``defaults=``.
"""

from mtbench import MethodPreset, Param, hookimpl

__all__ = ["mtbench_methods"]

POSITIVE = Param(float, 0.0, None, low_open=True)
NON_NEGATIVE = Param(float, 0.0, None)
PREF_VECTOR = Param(tuple, 0.0, None)  # one weight per task; its length is checked against T when built
SCALARIZERS = "mtbench_plugins.jd_scalarizers"


@hookimpl
def mtbench_methods():
    return [
        MethodPreset(
            name="uw",
            title="UW",
            factory=f"{SCALARIZERS}:uw",
            description=(
                "Uncertainty weighting (Kendall, Gal & Cipolla, 'Multi-Task Learning Using Uncertainty to "
                "Weigh Losses for Scene Geometry and Semantics', CVPR 2018), torchjd's: sum_t exp(-s_t) L_t / "
                "2 + s_t / 2, one learnable log-variance s_t per task trained with the model (the paper's "
                "regression form, as in LibMTL); a noisy task weighs less."
            ),
            reads="loss",
            needs_losses=True,
            order=30,
        ),
        MethodPreset(
            name="uncertainty",
            title="UW (classification)",
            factory=f"{SCALARIZERS}:uncertainty",
            description=(
                "Uncertainty weighting in the classification form of Kendall, Gal & Cipolla (CVPR 2018), "
                "eq. (10): sum_t exp(-s_t) L_t + s_t / 2, i.e. uw on doubled losses: the weights start at 1 "
                "(the plain sum) rather than 1/2 and settle at the same 1 / (2 L_t)."
            ),
            reads="loss",
            needs_losses=True,
            order=31,
        ),
        MethodPreset(
            name="dwa",
            title="DWA",
            factory=f"{SCALARIZERS}:dwa",
            defaults={"temperature": 2.0, "window": 100},
            params={"temperature": POSITIVE, "window": Param(int, 1, None)},
            description=(
                "Dynamic weight average (Liu, Johns & Davison, 'End-to-End Multi-Task Learning with "
                "Attention', CVPR 2019), torchjd's: a task whose loss falls slowly gets more weight. Loss "
                "averages over windows of `window` steps stand in for the paper's epochs."
            ),
            reads="loss",
            needs_losses=True,
            order=32,
        ),
        MethodPreset(
            name="famo",
            title="FAMO",
            factory=f"{SCALARIZERS}:famo",
            defaults={"lr": 0.025, "weight_decay": 1e-3},
            params={"lr": NON_NEGATIVE, "weight_decay": NON_NEGATIVE},
            description=(
                "Fast adaptive multitask optimization (Liu et al., 'FAMO: Fast Adaptive Multitask "
                "Optimization', NeurIPS 2023), torchjd's: the log-losses weighted so that all tasks fall at "
                "about the same rate; after each step the same batch's losses at the new parameters move "
                "the weights' logits (their own Adam: lr, weight_decay)."
            ),
            reads="loss",
            needs_losses=True,
            extra_cost="one forward without gradient",
            order=33,
        ),
        MethodPreset(
            name="stch",
            title="STCH",
            factory=f"{SCALARIZERS}:stch",
            defaults={"mu": 1.0, "warmup": 400, "window": 100},
            params={"mu": POSITIVE, "warmup": Param(int, 0, None), "window": Param(int, 1, None),
                    "pref_vector": PREF_VECTOR},
            description=(
                "Smooth Tchebycheff scalarization (Lin et al., 'Smooth Tchebycheff Scalarization for "
                "Multi-Objective Optimization', ICML 2024), torchjd's: T mu logsumexp(log(L_t / z_t) / mu), "
                "a smooth worst task; the nadir point z is the mean loss of the last `window` of the "
                "`warmup + window` first steps, trained on the summed log-losses (the paper's epochs)."
            ),
            reads="loss",
            needs_losses=True,
            order=34,
        ),
        MethodPreset(
            name="imtl_l",
            title="IMTL-L",
            factory=f"{SCALARIZERS}:imtl_l",
            description=(
                "Impartial multi-task learning, loss part (Liu et al., 'Towards Impartial Multi-task "
                "Learning', ICLR 2021), torchjd's: sum_t exp(s_t) L_t - s_t, one learnable scale per task "
                "trained with the model, so that the scaled losses stay alike."
            ),
            reads="loss",
            needs_losses=True,
            order=35,
        ),
        MethodPreset(
            name="geometric_mean",
            title="GLS",
            factory=f"{SCALARIZERS}:geometric_mean",
            description=(
                "Geometric loss strategy (Chennupati et al., 'MultiNet++: Multi-Stream Feature Aggregation "
                "and Geometric Loss Strategy for Multi-Task Learning', CVPR Workshops 2019), torchjd's: the "
                "geometric mean of the task losses, so each task's weight is inverse to its loss."
            ),
            reads="loss",
            needs_losses=True,
            order=36,
        ),
        MethodPreset(
            name="pbi",
            title="PBI",
            factory=f"{SCALARIZERS}:pbi",
            defaults={"theta": 5.0},
            params={"theta": NON_NEGATIVE, "pref_vector": PREF_VECTOR},
            description=(
                "Penalty-based boundary intersection (Zhang & Li, 'MOEA/D: A Multiobjective Evolutionary "
                "Algorithm Based on Decomposition', IEEE TEC 2007), torchjd's: the losses' distance along "
                "the preference direction (pref_vector, default equal) plus theta times their distance to it."
            ),
            reads="loss",
            needs_losses=True,
            order=37,
        ),
        MethodPreset(
            name="rlw",
            title="RLW (losses)",
            factory=f"{SCALARIZERS}:rlw",
            params={"seed": Param(int, 0, None)},
            description=(
                "Random loss weighting (Lin et al., 'Reasonable Effectiveness of Random Weighting: A Litmus "
                "Test for Multi-Task Learning', TMLR 2022), torchjd's Random scalarizer: fresh softmax-"
                "normalised Gaussian weights on the losses every step; `random` draws the same weights but "
                "pays for the tasks' gradients."
            ),
            reads="loss",
            needs_losses=True,
            order=38,
        ),
        MethodPreset(
            name="gradnorm",
            title="GradNorm",
            factory="mtbench_plugins.loss_weighting:GradNorm",
            defaults={"alpha": 1.5},
            params={"alpha": NON_NEGATIVE},
            description=(
                "GradNorm (Chen et al., 'GradNorm: Gradient Normalization for Adaptive Loss Balancing in "
                "Deep Multitask Networks', ICML 2018): learnable task weights pull each task's gradient "
                "norm on the last shared layer towards the mean, scaled by its relative inverse training "
                "rate to the power alpha."
            ),
            reads="loss",
            needs_losses=True,
            extra_cost="T backwards to the last shared layer",
            order=39,
        ),
    ]
