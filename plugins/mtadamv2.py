"""MTAdamV2: multi-task Adam that balances the tasks' gradient magnitudes per parameter."""

from mtbench import Expected, OptimizerPreset, Param, hookimpl, standard_params

__all__ = ["mtbench_optimizers"]


@hookimpl
def mtbench_optimizers():
    return [
        OptimizerPreset(
            name="mtadamv2",
            title="MTAdamV2",
            factory="mtbench:MTAdamV2",  # imported when a run builds it: listing imports no torch
            defaults={"lr": 0.001, "betas": (0.9, 0.999), "task_weights": (0.5, 0.5)},
            description=(
                "Multi-task Adam: each task's gradient is rescaled to the magnitude of the first "
                "task's before Adam's moments, so a task with a large loss cannot drown the other. "
                "Takes the tasks' gradients apart (per-task gradients); equal task weights by "
                "default. Adam's speed with balanced tasks."
            ),
            per_task_gradients=True,
            params={
                "task_weights": Param(tuple, 0.0, None, length=2),
                **standard_params("eps", "norm_beta", "weight_decay"),
            },
            order=8,
            expected=Expected(top1=(0.55, 0.65), miou=(0.03, 0.04), convergence="fast"),
        )
    ]
