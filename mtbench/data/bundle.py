"""The datasets of a run (train, validation and optionally holdout of both tasks), real or synthetic."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import ConfigError
from .coco import NUM_CLASSES, CocoSegmentation, check_layout
from .common import check_limit
from .holdout import check_holdout, split_holdout
from .imagenet import NUM_OUTPUTS, ImageNetClassification, find_classes
from .sizes import MIN_IMAGE_SIZE, REAL_IMAGE_SIZE, SYNTHETIC_IMAGE_SIZE
from .synthetic import ensure_synthetic
from .transforms import classification_transform, segmentation_transform


@dataclass
class DataBundle:
    """Train, validation and (optionally) holdout datasets of both tasks, and what the model needs to know about them.

    The holdout datasets are the selection split (None without one): images taken out of the
    training sets, read with the validation transform.
    """

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
    cls_holdout: Dataset | None = None
    seg_holdout: Dataset | None = None


def build_datasets(
    imagenet: str | Path | None = None,
    coco: str | Path | None = None,
    image_size: int | None = None,
    limit_train: int | None = None,
    limit_val: int | None = None,
    cache_dir: str | Path | None = None,
    holdout: float | None = None,
) -> DataBundle:
    """Datasets of real ImageNet + COCO folders, or of the synthetic set (in the cache) when neither is given.

    ``image_size`` defaults to 224 on real data and 64 on synthetic data; ``limit_train`` and
    ``limit_val`` cap the images per task (deterministic subsets). ``holdout`` (a fraction in
    [0, 1)) moves that part of each task's training set, after the limit, into the holdout
    datasets (see ``holdout.py``). Layout problems raise DataError.
    """
    if (imagenet is None) != (coco is None):
        given, missing = ("imagenet", "coco") if coco is None else ("coco", "imagenet")
        raise ConfigError(
            f"{given} data given without {missing} data; give both folders, or neither for the synthetic set"
        )
    check_limit("limit_train", limit_train)
    check_limit("limit_val", limit_val)
    holdout = check_holdout(holdout)
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE
    ):
        raise ConfigError(f"image size must be an integer of at least {MIN_IMAGE_SIZE} pixels, got {image_size!r}")
    synthetic = imagenet is None
    if synthetic:
        imagenet, coco = ensure_synthetic(cache_dir)
    imagenet, coco = Path(imagenet), Path(coco)
    size = image_size or (SYNTHETIC_IMAGE_SIZE if synthetic else REAL_IMAGE_SIZE)

    classes = find_classes(imagenet)
    check_layout(coco)
    bundle = DataBundle(
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
    if holdout:
        bundle.cls_train, bundle.cls_holdout = split_holdout(
            bundle.cls_train, holdout, bundle.cls_val.transform, "classification"
        )
        bundle.seg_train, bundle.seg_holdout = split_holdout(
            bundle.seg_train, holdout, bundle.seg_val.transform, "segmentation"
        )
    return bundle
