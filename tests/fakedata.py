"""Small fake data sets on disk: an ImageFolder tree and a COCO 2017 tree with hand-checkable masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

# COCO category ids and the VOC class index the loader must give them.
PERSON, CAR, CAT, DOG, TOOTHBRUSH = 1, 3, 17, 18, 90  # toothbrush is not a VOC category
VOC = {PERSON: 15, CAR: 7, CAT: 8, DOG: 12}


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """Save an HxWx3 uint8 array; the suffix picks the format (PNG keeps pixels exact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def noise_image(seed: int, height: int = 16, width: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def make_imagenet(root: Path, counts: dict[str, tuple[int, int]] | None = None, size: int = 16) -> Path:
    """``root/{train,val}/<wnid>/*.JPEG``; counts maps wnid -> (train images, val images)."""
    counts = counts or {"n01440764": (3, 2), "n01443537": (2, 1), "n01484850": (1, 1)}
    seed = 0
    for wnid, per_split in counts.items():
        for split, n in zip(("train", "val"), per_split):
            for i in range(n):
                seed += 1
                write_image(root / split / wnid / f"{wnid}_{i}.JPEG", noise_image(seed, size, size))
    return root


def box_polygon(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    """COCO polygon covering the pixel columns x0..x1-1 and rows y0..y1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major run lengths, starting with a run of zeros), computed by hand."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def region(height: int, width: int, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[rows, cols] = True
    return mask


def coco_split(root: Path, split: str, images: list[dict]) -> None:
    """Write ``root/<split>2017/`` and its instances JSON.

    Each image dict: id, file_name, pixels (HxWx3), annotations (dicts with category_id,
    segmentation and optionally iscrowd). Every listed image file is written.
    """
    folder = root / f"{split}2017"
    folder.mkdir(parents=True, exist_ok=True)
    entries, annotations = [], []
    for image in images:
        height, width = image["pixels"].shape[:2]
        write_image(folder / image["file_name"], image["pixels"])
        entries.append({"id": image["id"], "file_name": image["file_name"], "height": height, "width": width})
        for ann in image.get("annotations", []):
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "iscrowd": 0, **ann})
    categories = [{"id": c, "name": str(c), "supercategory": "x"} for c in (PERSON, CAR, CAT, DOG, TOOTHBRUSH)]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}2017.json").write_text(
        json.dumps({"images": entries, "annotations": annotations, "categories": categories})
    )


def mixed_image_annotations(size: int = 32) -> tuple[list[dict], np.ndarray]:
    """Every annotation kind on one size x size image, and the label map the loader must make of it.

    person polygon rows 0-11 cols 0-11 overlapping a car polygon cols 8-19 (overlap -> 255);
    a cat as compressed RLE, a dog as uncompressed RLE; a person crowd (RLE) that covers part of
    the dog (dog kept) and background (-> 255); a toothbrush (not VOC -> background); a
    degenerate two-point polygon (ignored).
    """
    s = size
    dog = region(s, s, slice(20, 28), slice(20, 28))
    crowd = region(s, s, slice(26, 32), slice(16, 32))
    annotations = [
        {"category_id": PERSON, "segmentation": box_polygon(0, 0, 12, 12)},
        {"category_id": CAR, "segmentation": box_polygon(8, 0, 20, 12)},
        {"category_id": CAT, "segmentation": compressed_rle(region(s, s, slice(14, 18), slice(0, 8)))},
        {"category_id": DOG, "segmentation": uncompressed_rle(dog)},
        {"category_id": PERSON, "segmentation": uncompressed_rle(crowd), "iscrowd": 1},
        {"category_id": TOOTHBRUSH, "segmentation": box_polygon(24, 0, 32, 8)},
        {"category_id": CAR, "segmentation": [[1, 1, 5, 5]]},
    ]
    expected = np.zeros((s, s), dtype=np.int64)
    expected[0:12, 0:12] = VOC[PERSON]
    expected[0:12, 8:20] = VOC[CAR]
    expected[0:12, 8:12] = 255
    expected[14:18, 0:8] = VOC[CAT]
    expected[crowd] = 255
    expected[dog] = VOC[DOG]
    return annotations, expected


def make_coco(root: Path, size: int = 32) -> tuple[Path, dict[int, np.ndarray]]:
    """A COCO tree; returns it and the expected label map of each val image id.

    val: image 7 with every annotation kind, image 3 with two overlapping persons (one class, no
    255), image 5 without annotations; ids listed out of order. train: two plain images.
    """
    annotations, mixed = mixed_image_annotations(size)
    same_class = np.zeros((size, size), dtype=np.int64)
    same_class[4:20, 4:20] = VOC[PERSON]
    val = [
        {"id": 7, "file_name": "000000000007.jpg", "pixels": noise_image(7, size, size), "annotations": annotations},
        {"id": 3, "file_name": "000000000003.jpg", "pixels": noise_image(3, size, size), "annotations": [
            {"category_id": PERSON, "segmentation": box_polygon(4, 4, 14, 14)},
            {"category_id": PERSON, "segmentation": box_polygon(10, 10, 20, 20)},
            {"category_id": PERSON, "segmentation": box_polygon(4, 10, 10, 20)},
            {"category_id": PERSON, "segmentation": box_polygon(14, 4, 20, 14)},
        ]},
        {"id": 5, "file_name": "000000000005.jpg", "pixels": noise_image(5, size, size)},
    ]
    train = [
        {"id": i, "file_name": f"{i:012d}.jpg", "pixels": noise_image(100 + i, size, size),
         "annotations": [{"category_id": DOG, "segmentation": box_polygon(2, 2, 10 + i, 12)}]}
        for i in (1, 2)
    ]
    coco_split(root, "val", val)
    coco_split(root, "train", train)
    return root, {7: mixed, 3: same_class, 5: np.zeros((size, size), dtype=np.int64)}


def corrupt(path: Path, how: str) -> Path:
    """Make an image file unreadable: 'empty' (0 bytes) or 'truncated' (first third of its bytes)."""
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 3])
    return path
