"""ImageNet classification in the folder layout of the torchvision references (ImageFolder).

``DIR/train/<wnid>/*.JPEG`` and ``DIR/val/<wnid>/*.JPEG``; the labels are the indices of the
sorted wnids found under ``train/``, so any subset of ImageNet (or a set written in its layout)
keeps the label a full ImageNet run would give where the wnids are all present.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import DataError
from .common import ImageDataset

NUM_OUTPUTS = 1000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
EXPECTED_LAYOUT = "expected DIR/train/<wnid>/*.JPEG and DIR/val/<wnid>/*.JPEG"


def find_classes(root: Path) -> list[str]:
    """The sorted wnids (class folders) under ``root/train``; DataError when the layout is wrong."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"ImageNet folder {root} {what}; {EXPECTED_LAYOUT}")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"ImageNet folder {root} has no {split}/ folder; {EXPECTED_LAYOUT}")
    classes = sorted(entry.name for entry in os.scandir(root / "train") if entry.is_dir())
    if not classes:
        raise DataError(f"{root / 'train'} holds no class folders; {EXPECTED_LAYOUT}")
    if len(classes) > NUM_OUTPUTS:
        raise DataError(
            f"{root / 'train'} holds {len(classes)} class folders, more than the {NUM_OUTPUTS} outputs of the head"
        )
    return classes


def _images_in(folder: str) -> list[str]:
    names = [e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    return [os.path.join(folder, name) for name in sorted(names)]


def scan_split(root: Path, split: str, classes: list[str], limit: int | None) -> list[tuple[str, int]]:
    """(path, label) of one split in a stable order; with a limit, a class-balanced subset.

    The subset takes the classes' images in turns (first image of every class, then the second,
    ...), so ``limit`` images cover as many classes as possible, the same ones on every call.
    """
    folder = root / split
    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not found:
        raise DataError(f"{folder} holds no class folders; {EXPECTED_LAYOUT}")
    index = {wnid: label for label, wnid in enumerate(classes)}
    unknown = [wnid for wnid in found if wnid not in index]
    if unknown:
        raise DataError(f"{folder} has class folder {unknown[0]!r} that train/ does not have; {EXPECTED_LAYOUT}")
    per_class = [[(path, index[wnid]) for path in _images_in(str(folder / wnid))] for wnid in found]
    if not any(per_class):
        raise DataError(f"{folder} has class folders but no images ({', '.join(IMAGE_EXTENSIONS)}); {EXPECTED_LAYOUT}")
    if limit is None:
        return [sample for samples in per_class for sample in samples]
    turns = max(len(samples) for samples in per_class)
    balanced = [samples[i] for i in range(turns) for samples in per_class if i < len(samples)]
    return balanced[:limit]


class ImageNetClassification(ImageDataset):
    """One split of an ImageFolder tree: (image [3,S,S] float32, label int), or None for a corrupt file."""

    def __init__(self, root: str | Path, split: str, classes: list[str], transform: Callable, limit: int | None = None):
        super().__init__(root, split, transform, scan_split(Path(root), split, classes, limit))
        self.classes = classes

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = self._reader.read(path)
        if image is None:
            return None
        return self.transform(image), label
