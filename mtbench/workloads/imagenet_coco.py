"""The ImageNet + COCO workload: ImageNet classification and COCO segmentation, each task with its
own images (a batch per task), one ResNet backbone and two heads (``mtbench.model.MultiTaskNet``).

The declaration (``WORKLOAD``) imports no torch, so ``mtbench list`` shows it without; the losses,
meters and builders import what they need when a run calls them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .types import Metric, Task, Workload, WorkloadData

__all__ = ["CLASSIFICATION", "SEGMENTATION", "WORKLOAD", "build_data", "build_model", "classification_loss",
           "classification_meter", "masked_cross_entropy", "segmentation_loss", "segmentation_meter"]

_HERE = "mtbench.workloads.imagenet_coco"


def classification_loss(logits, target):
    """Cross-entropy of the class scores, computed in float32 (under autocast too)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float(), target)


def masked_cross_entropy(logits, target):
    """Pixel cross-entropy averaged over the labelled pixels (0 when a batch has none, never NaN)."""
    import torch.nn.functional as F

    from ..data.coco import IGNORE_INDEX

    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp_min(1)


def segmentation_loss(logits, target):
    # Looked up at each call, so a test may replace masked_cross_entropy in this module.
    return masked_cross_entropy(logits, target)


class _Meter:
    """A counting meter of mtbench.metrics behind the workload contract's update / all_reduce / compute:
    the outputs are taken in float32 and only the task's metrics are returned."""

    def __init__(self, counts, names: tuple[str, ...]):
        self.counts, self.names = counts, names

    def update(self, output, target) -> None:
        self.counts.update(output.float(), target)

    def all_reduce(self) -> None:
        self.counts.all_reduce()

    def compute(self) -> dict[str, float]:
        values = self.counts.compute()
        return {name: values[name] for name in self.names}


def classification_meter(data: WorkloadData, device) -> _Meter:
    from ..metrics import TopKAccuracy

    return _Meter(TopKAccuracy((1, 5), device=device), ("top1", "top5"))


def segmentation_meter(data: WorkloadData, device) -> _Meter:
    from ..data.coco import IGNORE_INDEX
    from ..metrics import ConfusionMatrix

    return _Meter(ConfusionMatrix(data.info["num_seg_classes"], IGNORE_INDEX, device=device), ("miou", "pixel_acc"))


def build_model(backbone: str, data: WorkloadData):
    from ..model import MultiTaskNet

    return MultiTaskNet(backbone, data.info["num_cls_outputs"], data.info["num_seg_classes"])


def build_data(root: str | Path | None, *, image_size: int | None = None, limit_train: int | None = None,
               limit_val: int | None = None, holdout: float | None = None, imagenet: str | Path | None = None,
               coco: str | Path | None = None) -> WorkloadData:
    """ImageNet (folder layout) and COCO (instances), or the embedded set when no folder is given.

    ``root`` (``--data``) holds both as ``root/imagenet`` and ``root/coco``; ``imagenet`` and
    ``coco`` (``--imagenet``, ``--coco``) name them apart.
    """
    from ..data import build_datasets
    from ..errors import ConfigError

    if root is not None:
        if imagenet is not None or coco is not None:
            raise ConfigError("--data and --imagenet/--coco both name the data; give one of them")
        imagenet, coco = Path(root, "imagenet"), Path(root, "coco")
    b = build_datasets(imagenet=imagenet, coco=coco, image_size=image_size, limit_train=limit_train,
                       limit_val=limit_val, holdout=holdout)
    holdouts = None if b.cls_holdout is None else [b.cls_holdout, b.seg_holdout]
    info: dict[str, Any] = {"num_cls_outputs": b.num_cls_outputs, "num_seg_classes": b.num_seg_classes,
                            "cls_classes": b.cls_classes, "imagenet_dir": str(b.imagenet_dir),
                            "coco_dir": str(b.coco_dir)}
    return WorkloadData(train=[b.cls_train, b.seg_train], val=[b.cls_val, b.seg_val], holdout=holdouts,
                        image_size=b.image_size, synthetic=b.synthetic, info=info)


CLASSIFICATION = Task(
    name="cls", title="classification",
    metrics=(Metric("top1", "top-1", True, "%"), Metric("top5", "top-5", True, "%")),
    primary="top1", loss=f"{_HERE}:classification_loss", meter=f"{_HERE}:classification_meter",
)
SEGMENTATION = Task(
    name="seg", title="segmentation",
    metrics=(Metric("miou", "mIoU", True), Metric("pixel_acc", "pixel acc", True, "%")),
    primary="miou", loss=f"{_HERE}:segmentation_loss", meter=f"{_HERE}:segmentation_meter",
)
WORKLOAD = Workload(
    name="imagenet-coco",
    title="ImageNet classification + COCO segmentation",
    tasks=(CLASSIFICATION, SEGMENTATION),
    build_model=f"{_HERE}:build_model",
    build_data=f"{_HERE}:build_data",
    batches="per_task",
    image_size=64,
    batch_size=8,
    epochs=5,
    description="One ResNet backbone, a 1000-way classification head (ImageNet) and an FCN-8s "
                "segmentation head over the 21 PASCAL-VOC classes (COCO); a batch of each task per step. "
                "Real data with --imagenet and --coco (or --data DIR holding imagenet/ and coco/), "
                "else the embedded set in both layouts.",
    order=0,
)
