"""The four datasets of a run, real or synthetic, chosen from the data options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import ConfigError
from .coco import NUM_CLASSES, CocoSegmentation, check_layout
from .common import check_limit
from .imagenet import NUM_OUTPUTS, ImageNetClassification, find_classes
from .synthetic import ensure_synthetic
from .transforms import classification_transform, segmentation_transform

REAL_IMAGE_SIZE = 224
SYNTHETIC_IMAGE_SIZE = 64


@dataclass
class DataBundle:
    """Train and validation datasets of both tasks, and what the model needs to know about them."""

    cls_train: Dataset
    cls_val: Dataset
    seg_train: Dataset
    seg_val: Dataset
    cls_classes: list[str]  # sorted wnids; label i is cls_classes[i]
    image_size: int
    synthetic: bool
    imagenet_dir: Path
    coco_dir: Path
    num_cls_outputs: int = NUM_OUTPUTS
    num_seg_classes: int = NUM_CLASSES


def build_datasets(
    imagenet: str | Path | None = None,
    coco: str | Path | None = None,
    image_size: int | None = None,
    limit_train: int | None = None,
    limit_val: int | None = None,
    cache_dir: str | Path | None = None,
) -> DataBundle:
    """Datasets of real ImageNet + COCO folders, or of the synthetic set (in the cache) when neither is given.

    ``image_size`` defaults to 224 on real data and 64 on synthetic data; ``limit_train`` and
    ``limit_val`` cap the images per task (deterministic subsets). Layout problems raise DataError.
    """
    if (imagenet is None) != (coco is None):
        given, missing = ("imagenet", "coco") if coco is None else ("coco", "imagenet")
        raise ConfigError(
            f"{given} data given without {missing} data; give both folders, or neither for the synthetic set"
        )
    check_limit("limit_train", limit_train)
    check_limit("limit_val", limit_val)
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16):
        raise ConfigError(f"image size must be an integer of at least 16 pixels, got {image_size!r}")
    synthetic = imagenet is None
    if synthetic:
        imagenet, coco = ensure_synthetic(cache_dir)
    imagenet, coco = Path(imagenet), Path(coco)
    size = image_size or (SYNTHETIC_IMAGE_SIZE if synthetic else REAL_IMAGE_SIZE)

    classes = find_classes(imagenet)
    check_layout(coco)
    return DataBundle(
        cls_train=ImageNetClassification(imagenet, "train", classes, classification_transform(size, True), limit_train),
        cls_val=ImageNetClassification(imagenet, "val", classes, classification_transform(size, False), limit_val),
        seg_train=CocoSegmentation(coco, "train", segmentation_transform(size, True), limit_train),
        seg_val=CocoSegmentation(coco, "val", segmentation_transform(size, False), limit_val),
        cls_classes=classes,
        image_size=size,
        synthetic=synthetic,
        imagenet_dir=imagenet,
        coco_dir=coco,
    )
