"""Loss-weighting methods that torchjd lacks: uncertainty weighting, DWA and GradNorm.

Each sets one weight per task and the step is on ``sum_t w_t L_t``: every parameter, shared or
task-specific, gets ``sum_t w_t g_t`` (the ``losses`` and gradients the trainer hands in already
carry the user's task weights). The learnable weights of uncertainty weighting and GradNorm are
the method's ``parameters()``: the run's optimizer steps them, ``combine`` sets their gradient.

The method objects are in loss_weighting.py, named here by dotted name: listing the methods
imports no torch. Each default is said once, in ``defaults=``.
"""

from mtbench import MethodPreset, Param, hookimpl

__all__ = ["mtbench_methods"]


@hookimpl
def mtbench_methods():
    return [
        MethodPreset(
            name="uncertainty",
            title="Uncertainty weighting",
            factory="mtbench_plugins.loss_weighting:UncertaintyWeighting",
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
            factory="mtbench_plugins.loss_weighting:DynamicWeightAverage",
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
            factory="mtbench_plugins.loss_weighting:GradNorm",
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
