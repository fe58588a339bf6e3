"""COCO instances as 21-class semantic segmentation (the VOC categories of the torchvision reference).

Layout: ``DIR/train2017/``, ``DIR/val2017/``, ``DIR/annotations/instances_{train,val}2017.json``.
Instance masks are decoded with pycocotools (polygons, compressed and uncompressed RLE) and
painted into one label map per image:

- index i of ``VOC_CATEGORY_IDS`` is class i; its value is the COCO category id (0 = background);
- categories outside that list are background, as are images without annotations;
- a pixel covered by instances of two different classes is 255 (ignored by loss and mIoU);
  instances of one class may overlap freely;
- a crowd annotation (``iscrowd=1``) of a VOC class marks its region 255 where no single
  instance labels the pixel: a crowd region's pixels are not reliably that class.

The JSON is read once and only what the masks need is kept per image (file name, size, the
VOC-class annotations), in plain lists that are cheap to pickle to DataLoader workers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..errors import DataError
from .common import ImageReader

VOC_CATEGORY_IDS = [0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72]
NUM_CLASSES = len(VOC_CATEGORY_IDS)
IGNORE_INDEX = 255
EXPECTED_LAYOUT = "expected DIR/train2017/, DIR/val2017/ and DIR/annotations/instances_{train,val}2017.json"

_CLASS_OF_CATEGORY = {cat_id: cls for cls, cat_id in enumerate(VOC_CATEGORY_IDS) if cls > 0}


def check_layout(root: Path) -> None:
    """DataError naming what is missing when ``root`` is not a COCO 2017 folder."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"COCO folder {root} {what}; {EXPECTED_LAYOUT}")
    for split in ("train", "val"):
        if not (root / f"{split}2017").is_dir():
            raise DataError(f"COCO folder {root} has no {split}2017/ folder; {EXPECTED_LAYOUT}")
        if not annotation_file(root, split).is_file():
            raise DataError(f"COCO folder {root} has no annotations/instances_{split}2017.json; {EXPECTED_LAYOUT}")


def annotation_file(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{split}2017.json"


def _load_instances(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"annotation file {path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read annotation file {path}: {exc.strerror or exc}") from None
    if not (isinstance(data, dict) and all(isinstance(data.get(key), list) for key in ("images", "annotations"))):
        raise DataError(f"annotation file {path} is not a COCO instances file (no 'images' and 'annotations' lists)")
    return data


def voc_annotation(ann: dict) -> tuple[int, int, list | dict] | None:
    """(class index 1..20, iscrowd, segmentation) of an annotation; None outside the VOC classes or without area."""
    cls = _CLASS_OF_CATEGORY.get(ann["category_id"])
    segm = ann["segmentation"]
    if isinstance(segm, list):
        # Polygons with fewer than 3 points (6 coordinates) have no area; pycocotools mis-rasterises them.
        segm = [poly for poly in segm if len(poly) >= 6]
    if cls is None or not segm:
        return None
    return cls, int(ann.get("iscrowd", 0)), segm


def read_split(root: Path, split: str, limit: int | None) -> list[tuple[str, int, int, list]]:
    """Per image, sorted by id (the first ``limit`` with a limit): (file name, height, width, annotations).

    The annotations are those of the VOC categories, as ``voc_annotation`` gives them.
    """
    path = annotation_file(root, split)
    data = _load_instances(path)
    try:
        images = sorted((img["id"], img["file_name"], int(img["height"]), int(img["width"])) for img in data["images"])
        by_image: dict[int, list] = {}
        for ann in data["annotations"]:
            kept = voc_annotation(ann)
            if kept is not None:
                by_image.setdefault(ann["image_id"], []).append(kept)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"annotation file {path} has a malformed image or annotation entry ({exc!r})") from None
    if not images:
        raise DataError(f"annotation file {path} lists no images")
    if limit is not None:
        images = images[:limit]
    folder = root / f"{split}2017"
    present = set(os.listdir(folder))
    missing = [name for _, name, _, _ in images if name not in present]
    if missing:
        raise DataError(
            f"{len(missing)} of the {len(images)} images listed in {path} are not in {folder} (first: {missing[0]})"
        )
    return [(str(folder / name), h, w, by_image.get(image_id, [])) for image_id, name, h, w in images]


def _instance_mask(segm, height: int, width: int) -> np.ndarray:
    if isinstance(segm, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm["counts"], list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segm, height, width)
    else:  # compressed RLE
        rle = segm
    return mask_utils.decode(rle).astype(bool)


def label_map(annotations: list, height: int, width: int) -> np.ndarray:
    """uint8 [height, width] label map: class indices, 255 where classes overlap or crowds lie (see module doc)."""
    target = np.zeros((height, width), dtype=np.uint8)
    crowd = np.zeros((height, width), dtype=bool)
    for cls, iscrowd, segm in annotations:
        mask = _instance_mask(segm, height, width)
        if mask.shape != target.shape:
            raise ValueError(f"annotation mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}")
        if iscrowd:
            crowd |= mask
            continue
        conflict = mask & (target != 0) & (target != cls)
        target[mask & (target == 0)] = cls
        target[conflict] = IGNORE_INDEX
    target[crowd & (target == 0)] = IGNORE_INDEX
    return target


class CocoSegmentation(Dataset):
    """One split of COCO 2017: (image [3,S,S] float32, mask [S,S] int64), or None for a corrupt file."""

    def __init__(self, root: str | Path, split: str, transform: Callable, limit: int | None = None):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.samples = read_split(self.root, split, limit)
        self._reader = ImageReader()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, height, width, annotations = self.samples[index]
        image = self._reader.read(path)
        if image is None:
            return None
        if tuple(image.shape[-2:]) != (height, width):
            found = f"{image.shape[-1]}x{image.shape[-2]}"
            self._reader.warn(path, f"image is {found}, the annotations say {width}x{height}")
            return None
        try:
            target = label_map(annotations, height, width)
        except ValueError as exc:
            self._reader.warn(path, str(exc))
            return None
        return self.transform(image, tv_tensors.Mask(torch.from_numpy(target)))
