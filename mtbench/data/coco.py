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

What reaches the rasteriser is checked when the file is read, because pycocotools trusts its
input: a NaN or far-away polygon coordinate makes it allocate gigabytes and crash, and RLE run
lengths that do not cover the image exactly read memory that was never written. A file with
such an annotation is refused (DataError naming the file, the annotation id and the problem)
rather than trained on without it: it is a broken file that the user has to know about. The same
goes for duplicate image ids and two entries of one file name (an image would get another
image's masks) and image sizes that are not positive or exceed what PIL decodes. Polygon coordinates may lie outside the image by
up to one image size (COCO's own polygons stray a little; the rasteriser clips them); polygons
of fewer than 3 points are ignored, as before. Only annotations of the VOC categories are
checked: the others are never rasterised.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision import tv_tensors

from ..errors import DataError
from .common import ImageDataset, max_image_pixels

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


def _described(value) -> str:
    return f"{reprlib.repr(value)} (a {type(value).__name__})"


def _polygons_problem(polygons: list, height: int, width: int) -> str | None:
    for i, poly in enumerate(polygons):
        if not isinstance(poly, list):
            return f"polygon {i} is {_described(poly)}; expected a list of x,y coordinates"
        if len(poly) % 2:
            return f"polygon {i} has an odd number of coordinates ({len(poly)}); expected x,y pairs"
        try:
            finite = all(map(math.isfinite, poly))
        except TypeError:
            bad = next(v for v in poly if not isinstance(v, (int, float)))
            return f"polygon {i} has the coordinate {_described(bad)}; expected numbers"
        except OverflowError:  # an integer beyond the float range
            bad = next(v for v in poly if isinstance(v, int) and not -(2**1023) < v < 2**1023)
            return f"polygon {i} has the coordinate {reprlib.repr(bad)}, far outside the {width}x{height} image"
        if not finite:
            j = next(j for j, v in enumerate(poly) if not math.isfinite(v))
            return f"polygon {i} has the non-finite {'xy'[j % 2]} coordinate {poly[j]}"
        for axis, values, size in (("x", poly[0::2], width), ("y", poly[1::2], height)):
            if values and (min(values) < -size or max(values) > 2 * size):
                v = next(v for v in values if not -size <= v <= 2 * size)
                return (f"polygon {i} has the {axis} coordinate {v}, far outside the {width}x{height} image "
                        f"(expected {-size}..{2 * size})")
    return None


def compressed_counts(text: str) -> list[int] | None:
    """The run lengths of a COCO compressed RLE string; None when the string is not one.

    Format (pycocotools' maskApi): each count is written in 5-bit groups, least significant
    first, as the characters 48 + group (+ 32 when another group follows); the top bit of the
    last group is the sign. From the fourth count on, a count is stored as its difference to
    the count two places before it.
    """
    counts: list[int] = []
    value = shift = 0
    for char in text:
        group = ord(char) - 48
        if not 0 <= group < 64:
            return None
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            return None
        counts.append(value)
        value = shift = 0
    return None if shift else counts


def _rle_problem(rle: dict, height: int, width: int) -> str | None:
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int for v in size)):
        return f"RLE size is {_described(size)}; expected [height, width]"
    if size != [height, width]:
        return f"RLE size {size} does not match the image's [height, width] [{height}, {width}]"
    if isinstance(counts, str):
        runs = compressed_counts(counts)
        if runs is None:
            return f"RLE counts {reprlib.repr(counts)} is not a COCO compressed RLE string"
    elif isinstance(counts, list):
        runs = counts
        if not all(type(c) is int and c >= 0 for c in runs):
            bad = next(c for c in runs if not (type(c) is int and c >= 0))
            return f"RLE counts hold {_described(bad)}; expected run lengths (whole numbers >= 0)"
    else:
        return f"RLE counts is {_described(counts)}; expected a list of run lengths or a compressed string"
    if sum(runs) != height * width:
        return f"RLE run lengths cover {sum(runs)} pixels; the {width}x{height} image has {height * width}"
    return None


def segmentation_problem(segm, height: int, width: int) -> str | None:
    """What makes ``segm`` unsafe or meaningless to rasterise on a height x width image; None when it is sound."""
    if isinstance(segm, list):
        return _polygons_problem(segm, height, width)
    if isinstance(segm, dict):
        return _rle_problem(segm, height, width)
    return f"segmentation is {_described(segm)}; expected a list of polygons or an RLE dict (size, counts)"


def _listed_images(path: Path, entries: list) -> list[tuple]:
    """(id, file name, height, width) of every image entry, sorted by id; DataError for an unusable entry."""
    images, seen, files = [], set(), {}
    pixel_limit = max_image_pixels()
    for entry in entries:
        image_id, name, height, width = entry["id"], entry["file_name"], entry["height"], entry["width"]
        if image_id in seen:
            raise DataError(f"annotation file {path} lists image id {image_id!r} twice; image ids must be unique")
        seen.add(image_id)
        if name in files:
            raise DataError(f"annotation file {path} lists the file {name} for images {files[name]!r} and "
                            f"{image_id!r}; each image entry needs a file of its own")
        files[name] = image_id
        if not all(type(v) is int and v > 0 for v in (height, width)):
            raise DataError(
                f"annotation file {path}: image {image_id!r} ({name}) has height {height!r} and width {width!r}; "
                "expected whole numbers > 0"
            )
        if pixel_limit is not None and height * width > pixel_limit:
            raise DataError(
                f"annotation file {path}: image {image_id!r} ({name}) is listed as {width}x{height} pixels, "
                f"more than the {pixel_limit} that PIL decodes"
            )
        images.append((image_id, name, height, width))
    return sorted(images)


def read_split(root: Path, split: str, limit: int | None) -> list[tuple[str, int, int, list]]:
    """Per image, sorted by id (the first ``limit`` with a limit): (file name, height, width, annotations).

    The annotations are those of the VOC categories, as ``voc_annotation`` gives them, each
    checked by ``segmentation_problem`` first (see the module doc).
    """
    path = annotation_file(root, split)
    data = _load_instances(path)
    try:
        images = _listed_images(path, data["images"])
        sizes = {image_id: (height, width) for image_id, _, height, width in images}
        by_image: dict = {}
        for position, ann in enumerate(data["annotations"]):
            image_id = ann["image_id"]
            if _CLASS_OF_CATEGORY.get(ann["category_id"]) is None or image_id not in sizes:
                continue
            problem = segmentation_problem(ann["segmentation"], *sizes[image_id])
            if problem:
                ann_id = ann.get("id", f"#{position}")
                raise DataError(f"annotation file {path}: annotation {ann_id} (image {image_id!r}): {problem}")
            kept = voc_annotation(ann)
            if kept is not None:
                by_image.setdefault(image_id, []).append(kept)
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


class CocoSegmentation(ImageDataset):
    """One split of COCO 2017: (image [3,S,S] float32, mask [S,S] int64), or None for a corrupt file."""

    def __init__(self, root: str | Path, split: str, transform: Callable, limit: int | None = None):
        super().__init__(root, split, transform, read_split(Path(root), split, limit))

    def __getitem__(self, index: int):
        path, height, width, annotations = self.samples[index]
        image = self._reader.read(path)
        if image is None:
            return None
        if tuple(image.shape[-2:]) != (height, width):
            found = f"{image.shape[-1]}x{image.shape[-2]}"
            self._reader.warn(path, f"image is {found}, the annotations say {width}x{height}")
            return None
        target = label_map(annotations, height, width)
        return self.transform(image, tv_tensors.Mask(torch.from_numpy(target)))
