"""Adam: adaptive moments, the default that works out of the box."""

from mtbench import Expected, OptimizerPreset, hookimpl, standard_params

__all__ = ["mtbench_optimizers"]


@hookimpl
def mtbench_optimizers():
    return [
        OptimizerPreset(
            name="adam",
            title="Adam",
            factory="torch.optim:Adam",  # imported when a run builds it: listing imports no torch
            defaults={"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8},
            description=(
                "Adam with the standard settings. Per-parameter adaptive step sizes make it work "
                "well without tuning and converge fast; the natural first try and the baseline for "
                "MTAdamV2."
            ),
            params=standard_params("weight_decay", "amsgrad"),
            order=3,
            expected=Expected(top1=(0.55, 0.65), miou=(0.03, 0.04), convergence="fast"),
        )
    ]
