"""What the ImageNet and COCO loaders share: image reading that tolerates corrupt files, limits, collation."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..errors import ConfigError


class CorruptImageWarning(UserWarning):
    """An image file could not be decoded; its sample is skipped."""


class ImageReader:
    """Reads RGB images as ``tv_tensors.Image``; an unreadable file gives None and one warning.

    The set of files already warned about lives in the reader (one per dataset and process), so
    each DataLoader worker warns at most once per file. Nothing is held open between reads.
    """

    def __init__(self):
        self._warned: set[str] = set()

    def read(self, path: str | Path) -> tv_tensors.Image | None:
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # PIL reports truncated or malformed files with any of these; UnidentifiedImageError is an
            # OSError. An image too large to decode safely is as unusable as a broken one.
            self.warn(path, f"cannot read image: {exc}")
            return None
        return F.pil_to_tensor(rgb).as_subclass(tv_tensors.Image)

    def warn(self, path: str | Path, reason: str) -> None:
        """Warn once per file that its sample is skipped."""
        key = str(path)
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"skipping {key}: {reason}", CorruptImageWarning, stacklevel=3)


def max_image_pixels() -> int | None:
    """The most pixels an image may have: beyond it PIL refuses to decode (DecompressionBombError)."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


class ImageDataset(Dataset):
    """Samples whose first field is the path of an image file under ``root``, and their transform."""

    def __init__(self, root: str | Path, split: str, transform: Callable, samples: list[tuple]):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.samples = samples
        self._reader = ImageReader()

    def __len__(self) -> int:
        return len(self.samples)

    def sample_key(self, index: int) -> str:
        """The image's path relative to the data root: names the sample wherever the data set lies."""
        return Path(self.samples[index][0]).relative_to(self.root).as_posix()

    def with_samples(self, samples: list[tuple], transform: Callable) -> "ImageDataset":
        """The same split restricted to ``samples`` (a part of this one's), read with ``transform``."""
        part = copy.copy(self)
        part.samples, part.transform, part._reader = samples, transform, ImageReader()
        return part


def check_limit(name: str, value: int | None) -> int | None:
    """A limit is None (no limit) or a positive integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be a positive number of images, got {value!r}")
    return value


def collate_skip_corrupt(batch: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Collate (image, target) samples, dropping the None of corrupt files.

    Returns (images, targets, n_corrupt). When every sample was corrupt, images and targets are
    empty 1-d tensors (0 rows); the caller skips such a batch.
    """
    kept = [sample for sample in batch if sample is not None]
    n_corrupt = len(batch) - len(kept)
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), n_corrupt
    images, targets = default_collate(kept)
    return images, targets, n_corrupt
