"""SGD with momentum: the classic baseline."""

from mtbench import Expected, OptimizerPreset, hookimpl, standard_params

__all__ = ["mtbench_optimizers"]


@hookimpl
def mtbench_optimizers():
    return [
        OptimizerPreset(
            name="sgd",
            title="SGD",
            factory="torch.optim:SGD",  # imported when a run builds it: listing imports no torch
            defaults={"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
            description=(
                "Plain SGD with momentum 0.9 and a little weight decay. The reference point every "
                "other optimizer is measured against; needs the higher learning rate of 0.01 for "
                "the 1000-class head and converges slowly, but generalises predictably."
            ),
            params=standard_params("nesterov", "dampening"),
            order=1,
            expected=Expected(top1=(0.50, 0.60), miou=(0.03, 0.04), convergence="slow"),
        )
    ]
