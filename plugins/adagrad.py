"""Adagrad: step sizes shrink with the accumulated squared gradients."""

from mtbench import Expected, OptimizerPreset, hookimpl, standard_params

__all__ = ["mtbench_optimizers"]


@hookimpl
def mtbench_optimizers():
    return [
        OptimizerPreset(
            name="adagrad",
            title="Adagrad",
            factory="torch.optim:Adagrad",  # imported when a run builds it: listing imports no torch
            defaults={"lr": 0.01, "lr_decay": 0.0, "eps": 1e-10},
            description=(
                "Adagrad with a higher initial learning rate of 0.01, since the accumulated squared "
                "gradients shrink every step over time. Good for sparse features; on dense vision "
                "tasks it slows down as training goes on."
            ),
            params=standard_params("weight_decay", "initial_accumulator_value"),
            order=6,
            expected=Expected(top1=(0.48, 0.58), miou=(0.03, 0.04), convergence="slow"),
        )
    ]
