"""AdamW: Adam with decoupled weight decay."""

from mtbench import Expected, OptimizerPreset, hookimpl, standard_params

__all__ = ["mtbench_optimizers"]


@hookimpl
def mtbench_optimizers():
    return [
        OptimizerPreset(
            name="adamw",
            title="AdamW",
            factory="torch.optim:AdamW",  # imported when a run builds it: listing imports no torch
            defaults={"lr": 0.001, "betas": (0.9, 0.999), "weight_decay": 0.01},
            description=(
                "Adam with decoupled weight decay 0.01. As fast as Adam and usually generalises "
                "better; the recommended choice for transfer learning and longer runs."
            ),
            params=standard_params("eps", "amsgrad"),
            order=4,
            expected=Expected(top1=(0.56, 0.66), miou=(0.03, 0.04), convergence="fast"),
        )
    ]
