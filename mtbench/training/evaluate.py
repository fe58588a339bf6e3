"""Metrics on an evaluation split: each trained task's meter over its batches, counts summed over ranks.

NOTE [trained tasks only]: a run of a --tasks subset (a single-task baseline) evaluates only the tasks it
trains. An untrained head's figures are those of random weights: they cost an evaluation pass per task
(per-task batches) and, written to summary.json and epochs.csv, read as results. No reader takes them:
a task's baseline figure for Δm is its own task's (report.taskmetrics), a row's joint score, selection and
time to target read its ``tasks`` only, and an old run directory that recorded them reports as before.
A run of every task evaluates exactly as it always has.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .batches import Batches

__all__ = ["evaluate"]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, sets: Sequence[Dataset], meters: Sequence, batches: Batches,
             autocast: Callable[[], AbstractContextManager], shared_batch: bool = False,
             trained: Sequence[bool] | None = None) -> dict[str, float]:
    """The metrics of ``model`` on one split (each trained task's, by metric name); the model is left in
    train mode.

    ``meters`` holds one fresh meter per task of the workload; ``sets`` one data set per task, or
    with ``shared_batch`` the one set whose items are labelled for every task. ``trained``: whether
    each task is trained (default: every one); an untrained task is not evaluated (NOTE [trained tasks only]).
    """
    device = batches.device
    wanted = [True] * len(meters) if trained is None else list(trained)
    model.eval()
    if shared_batch:
        for images, targets in batches.evaluation(sets[0]):
            with autocast():
                outputs = model(images.to(device))
            for meter, output, target, want in zip(meters, outputs, targets, wanted):
                if want:
                    meter.update(output, target.to(device))
    else:
        for t, (dataset, meter) in enumerate(zip(sets, meters)):
            if not wanted[t]:
                continue
            for images, targets in batches.evaluation(dataset):
                inputs = [images.to(device) if i == t else None for i in range(len(sets))]
                with autocast():
                    output = model(*inputs)[t]
                meter.update(output, targets.to(device))
    metrics: dict[str, float] = {}
    for meter in (m for m, want in zip(meters, wanted) if want):
        meter.all_reduce()
        metrics.update(meter.compute())
    model.train()
    return metrics
