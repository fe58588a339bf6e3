"""RMSprop: a running average of squared gradients scales each step."""

from mtbench import Expected, OptimizerPreset, hookimpl, standard_params

__all__ = ["mtbench_optimizers"]


@hookimpl
def mtbench_optimizers():
    return [
        OptimizerPreset(
            name="rmsprop",
            title="RMSprop",
            factory="torch.optim:RMSprop",  # imported when a run builds it: listing imports no torch
            defaults={"lr": 0.001, "alpha": 0.99, "eps": 1e-8},
            description=(
                "RMSprop with smoothing constant 0.99. Adapts the step size to recent gradient "
                "magnitudes, which suits non-stationary objectives and small mini-batches; between "
                "SGD and Adam in speed."
            ),
            params=standard_params("momentum", "weight_decay", "centered"),
            order=5,
            expected=Expected(top1=(0.53, 0.63), miou=(0.03, 0.04), convergence="medium"),
        )
    ]
