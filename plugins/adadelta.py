"""Adadelta: Adagrad's step size replaced by a window of past updates."""

from mtbench import Expected, OptimizerPreset, hookimpl, standard_params

__all__ = ["mtbench_optimizers"]


@hookimpl
def mtbench_optimizers():
    return [
        OptimizerPreset(
            name="adadelta",
            title="Adadelta",
            factory="torch.optim:Adadelta",  # imported when a run builds it: listing imports no torch
            defaults={"lr": 1.0, "rho": 0.9, "eps": 1e-6},
            description=(
                "Adadelta with rho 0.9. lr=1.0 is the standard scale factor, not a step size: the "
                "step adapts to a decaying window of past gradients and updates, so no learning-rate "
                "tuning is needed, at the price of the slowest convergence of the set."
            ),
            params=standard_params("weight_decay"),
            order=7,
            expected=Expected(top1=(0.45, 0.55), miou=(0.03, 0.04), convergence="very slow"),
        )
    ]
