"""Metrics on an evaluation split: top-1/top-5 on classification, mIoU and pixel accuracy on segmentation."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable

import torch
from torch.utils.data import Dataset

from ..data.coco import IGNORE_INDEX
from ..metrics import ConfusionMatrix, TopKAccuracy
from .batches import Batches


@torch.inference_mode()
def evaluate(model: torch.nn.Module, cls_set: Dataset, seg_set: Dataset, batches: Batches, num_seg_classes: int,
             autocast: Callable[[], AbstractContextManager]) -> dict[str, float]:
    """The metrics of ``model`` on one split, counts summed over ranks; the model is left in train mode."""
    device = batches.device
    model.eval()
    cls_meter = TopKAccuracy((1, 5), device=device)
    confusion = ConfusionMatrix(num_seg_classes, IGNORE_INDEX, device=device)
    for images, targets in batches.evaluation(cls_set):
        with autocast():
            cls_meter.update(model(images.to(device))[0].float(), targets.to(device))
    for images, targets in batches.evaluation(seg_set):
        with autocast():
            confusion.update(model(None, images.to(device))[1].float(), targets.to(device))
    cls_meter.all_reduce()
    confusion.all_reduce()
    model.train()
    top, seg = cls_meter.compute(), confusion.compute()
    return {"top1": top["top1"], "top5": top["top5"], "miou": seg["miou"], "pixel_acc": seg["pixel_acc"]}
