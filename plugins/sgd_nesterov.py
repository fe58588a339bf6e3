"""SGD with Nesterov momentum: SGD's preset with the look-ahead momentum switched on."""

from mtbench import Expected, OptimizerPreset, hookimpl, standard_params

__all__ = ["mtbench_optimizers"]


@hookimpl
def mtbench_optimizers():
    return [
        OptimizerPreset(
            name="sgd_nesterov",
            title="SGD + Nesterov",
            factory="torch.optim:SGD",  # imported when a run builds it: listing imports no torch
            defaults={"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
            description=(
                "SGD with Nesterov momentum: the same settings as SGD, with the gradient taken at "
                "the look-ahead point. Usually a little faster and steadier than plain momentum on "
                "curved loss landscapes; a good choice when generalisation matters more than speed."
            ),
            params=standard_params("dampening"),
            order=2,
            expected=Expected(top1=(0.52, 0.62), miou=(0.03, 0.04), convergence="medium"),
        )
    ]
