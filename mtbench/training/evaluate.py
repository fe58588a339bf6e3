"""Metrics on an evaluation split: each task's meter over its batches, counts summed over ranks."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .batches import Batches

__all__ = ["evaluate"]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, sets: Sequence[Dataset], meters: Sequence, batches: Batches,
             autocast: Callable[[], AbstractContextManager], shared_batch: bool = False) -> dict[str, float]:
    """The metrics of ``model`` on one split (every task's, by metric name); the model is left in train mode.

    ``meters`` holds one fresh meter per task of the workload; ``sets`` one data set per task, or
    with ``shared_batch`` the one set whose items are labelled for every task.
    """
    device = batches.device
    model.eval()
    if shared_batch:
        for images, targets in batches.evaluation(sets[0]):
            with autocast():
                outputs = model(images.to(device))
            for meter, output, target in zip(meters, outputs, targets):
                meter.update(output, target.to(device))
    else:
        for t, (dataset, meter) in enumerate(zip(sets, meters)):
            for images, targets in batches.evaluation(dataset):
                inputs = [images.to(device) if i == t else None for i in range(len(sets))]
                with autocast():
                    output = model(*inputs)[t]
                meter.update(output, targets.to(device))
    metrics: dict[str, float] = {}
    for meter in meters:
        meter.all_reduce()
        metrics.update(meter.compute())
    model.train()
    return metrics
