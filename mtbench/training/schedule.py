"""Learning-rate schedules, the same for every optimizer of a comparison: a factor on each group's lr per step.

- constant: 1 (after the warm-up);
- cosine:   half a cosine from 1 to 0 over the steps after the warm-up (timm, torchvision references);
- step:     0.1 after a third of the steps and 0.01 after two thirds (torchvision's StepLR, 30 of 90 epochs).

Warm-up: a linear ramp from 1/warmup_steps to 1 over ``warmup`` steps (the torchvision references'
LinearLR). The scheduler's state goes into the checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

import math

import torch


def lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    """The lr factor after ``step`` of ``total`` steps (counted from 0), ``warmup`` of them warm-up."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 0.1 ** int(min(progress, 0.999999) * 3)


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int,
                    warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, step, total_steps, warmup_steps))
