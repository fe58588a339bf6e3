"""Settings that do not go together, refused before a run writes anything."""

from __future__ import annotations

import torch

from ..config import SUM_METHOD, RunConfig
from ..errors import ConfigError
from ..presets import OptimizerPreset

__all__ = ["check_combination"]


def check_combination(config: RunConfig, preset: OptimizerPreset, device: torch.device) -> None:
    """ConfigError for settings that do not go together.

    NOTE [methods and per-task optimizers]: an optimizer that takes the tasks' gradients apart
    (MTAdamV2) balances the tasks itself; a method would hand it one combined gradient and undo
    that, so the two do not compose.
    """
    if preset.per_task_gradients and config.method != SUM_METHOD:
        raise ConfigError(f"--method {config.method} does not compose with {preset.name!r}, which takes the tasks' "
                          "gradients apart and balances them itself; use --method sum, or a single-gradient "
                          "optimizer such as adam")
    all_tasks = config.workload_tasks or config.tasks
    if len(config.tasks) < len(all_tasks) and (preset.per_task_gradients or config.method != SUM_METHOD):
        culprit = (f"{preset.name!r} takes the tasks' gradients apart" if preset.per_task_gradients
                   else f"--method {config.method} combines the tasks' gradients")  # only what is wrong
        if len(config.tasks) == 1:
            raise ConfigError(f"--tasks {config.tasks[0]} trains one task alone, but {culprit}; a single-task run "
                              "needs a single-gradient optimizer (such as adam) and --method sum")
        raise ConfigError(f"--tasks {','.join(config.tasks)} trains {len(config.tasks)} of the workload's "
                          f"{len(all_tasks)} tasks, but {culprit} for all of them; train every task, or use a "
                          "single-gradient optimizer (such as adam) and --method sum")
    if config.amp == "fp16" and (device.type != "cuda" or preset.per_task_gradients or config.method != SUM_METHOD):
        raise ConfigError("--amp fp16 needs a CUDA device, a single-gradient optimizer and --method sum; "
                          "use --amp bf16")
    if config.amp == "fp16" and "closure" in getattr(preset, "needs", ()):
        raise ConfigError(f"--amp fp16 does not compose with {preset.name!r}, which steps with a closure "
                          "(its loss scaling would have to follow the closure's passes); use --amp bf16")
