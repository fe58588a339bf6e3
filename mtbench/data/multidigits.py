"""MultiMNIST-style pairs of handwritten digits: two overlaid digits, two 10-way tasks (left, right).

On disk (``--data DIR``): ``DIR/{train,val}/images.npy``, N x H x W or N x 1 x H x W (float 0..1, or
uint8 0..255), and ``DIR/{train,val}/labels.npy``, N x 2 integers in 0..9 (the left digit, then the
right one).
A split's items are ``(image [1, h, w] float32, (left int64, right int64))``: one batch for both tasks.

The embedded set (``ensure_multidigits``) is written in that format from scikit-learn's bundled 8 x 8
digits (1797 images, no download), each upsampled 3x (bilinear) to 24 x 24 and laid on a 32 x 32
canvas, the left digit shifted up-left (corner at 0..2 pixels) and the right one down-right (corner
at 6..8), the two combined by a pixel-wise maximum as MultiMNIST does. The source images are split
first (a fifth for validation, by a fixed permutation): no digit image appears in both splits.
Defaults: 2000 training and 500 validation pairs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .common import check_limit
from .embedded import ensure_embedded
from .holdout import check_holdout, split_holdout

__all__ = ["DigitsDataset", "DigitsSpec", "ensure_multidigits", "load_split", "open_multidigits", "source_pools",
           "write_multidigits"]

FORMAT_VERSION = 1
EXPECTED_LAYOUT = "expected DIR/{train,val}/images.npy (N x H x W) and DIR/{train,val}/labels.npy (N x 2, 0..9)"
_SCALE = 3  # 8 x 8 digits -> 24 x 24
_SHIFT = 6  # the right digit's corner lies this much further down and right than the left one's


@dataclass(frozen=True)
class DigitsSpec:
    """What to compose; every field changes the cache folder name."""

    train: int = 2000
    val: int = 500
    canvas: int = 32
    val_sources: float = 0.2  # fraction of the source digit images kept for validation pairs
    seed: int = 0

    def __post_init__(self):
        if min(self.train, self.val) < 1 or self.canvas < 8 * _SCALE + _SHIFT + 2 or not 0 < self.val_sources < 1:
            raise ValueError(f"DigitsSpec needs pairs in both splits, a canvas of at least "
                             f"{8 * _SCALE + _SHIFT + 2} and 0 < val_sources < 1, got {self}")


def compose(left: np.ndarray, right: np.ndarray, canvas: int, corners: tuple[int, int, int, int]) -> np.ndarray:
    """The max of two digit images placed at (row, column) corners (left's, then right's) on a blank canvas."""
    out = np.zeros((canvas, canvas), dtype=np.float32)
    for digit, (r, c) in ((left, corners[:2]), (right, corners[2:])):
        h, w = digit.shape
        np.maximum(out[r:r + h, c:c + w], digit, out=out[r:r + h, c:c + w])
    return out


def source_pools(count: int, spec: DigitsSpec) -> dict[str, np.ndarray]:
    """The source images each split draws its pairs from: a fixed permutation cut in two."""
    order = np.random.default_rng([spec.seed, 0]).permutation(count)
    n_val = round(spec.val_sources * count)
    return {"train": order[n_val:], "val": order[:n_val]}


def write_multidigits(out: Path, spec: DigitsSpec) -> dict:
    """Compose the embedded pairs into ``out`` in the on-disk format; returns what the manifest records."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([zoom(img / 16.0, _SCALE, order=1) for img in digits.images]).clip(0, 1).astype(np.float32)
    pools = source_pools(len(images), spec)
    for split_id, (split, count) in enumerate((("train", spec.train), ("val", spec.val))):
        rng = np.random.default_rng([spec.seed, 1, split_id])
        pool = pools[split]
        pairs = rng.choice(pool, size=(count, 2))
        corners = np.concatenate([rng.integers(0, 3, (count, 2)), _SHIFT + rng.integers(0, 3, (count, 2))], axis=1)
        canvases = np.stack([compose(images[a], images[b], spec.canvas, tuple(c)) for (a, b), c in zip(pairs, corners)])
        (out / split).mkdir(parents=True)
        np.save(out / split / "images.npy", canvases)
        np.save(out / split / "labels.npy", digits.target[pairs].astype(np.int64))
    return {"source": "sklearn.datasets.load_digits", "sources": {k: len(v) for k, v in pools.items()}}


def ensure_multidigits(cache_dir: str | Path | None = None, spec: DigitsSpec = DigitsSpec()) -> Path:
    """The embedded set's root folder in the cache, composed on first use."""
    return ensure_embedded("multidigits", FORMAT_VERSION, spec, write_multidigits, cache_dir)


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} does not exist; {EXPECTED_LAYOUT}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None


def load_split(root: Path, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images N x H x W float32 in 0..1, labels N x 2 int64) of one split, checked; the first ``limit``."""
    if not root.is_dir():
        raise DataError(f"multidigits folder {root} {'is not a folder' if root.exists() else 'does not exist'}; "
                        f"{EXPECTED_LAYOUT}")
    images_path, labels_path = root / split / "images.npy", root / split / "labels.npy"
    images, labels = _load(images_path), _load(labels_path)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]  # N x 1 x H x W: one channel, as torchvision's MNIST tensors come
    if images.ndim != 3 or min(images.shape) < 1:
        raise DataError(f"{images_path}: shape {images.shape}, expected N x H x W (or N x 1 x H x W)")
    if images.dtype.kind != "f" and images.dtype != np.uint8:
        raise DataError(f"{images_path}: dtype {images.dtype}, expected a float type (0..1) or uint8 (0..255)")
    if labels.shape != (len(images), 2):
        raise DataError(f"{labels_path}: shape {labels.shape}, expected {len(images)} x 2 (one pair per image)")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{labels_path}: dtype {labels.dtype}, expected integers")
    images, labels = images[:limit], labels[:limit]
    if labels.min() < 0 or labels.max() > 9:
        bad = labels[(labels < 0) | (labels > 9)].flat[0]
        raise DataError(f"{labels_path}: label {bad}, expected 0..9")
    images = images.astype(np.float32) / 255 if images.dtype == np.uint8 else images.astype(np.float32)
    if not np.isfinite(images).all():
        raise DataError(f"{images_path}: holds NaN or infinite values")
    return images, labels.astype(np.int64)


class DigitsDataset(Dataset):
    """One split held in memory; ``samples`` are row numbers of the split's arrays (the holdout moves them)
    and ``transform`` is the side the images are resized to (``split_holdout`` hands it to the holdout part)."""

    def __init__(self, split: str, images: np.ndarray, labels: np.ndarray, size: int | None):
        self.split = split
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
        self.samples = list(range(len(images)))
        self.transform = size

    def __len__(self) -> int:
        return len(self.samples)

    def sample_key(self, index: int) -> str:
        """Names the pair wherever the data set lies: its split and row."""
        return f"{self.split}/images.npy:{self.samples[index]}"

    def with_samples(self, samples: list[int], transform: int | None) -> "DigitsDataset":
        part = copy.copy(self)
        part.samples, part.transform = samples, transform
        return part

    def __getitem__(self, index: int):
        row = self.samples[index]
        image = self.images[row][None]
        if self.transform is not None and self.transform != image.shape[-1]:
            image = F.interpolate(image[None], size=(self.transform, self.transform), mode="bilinear",
                                  antialias=True, align_corners=False)[0]
        left, right = self.labels[row]
        return image, (left, right)


def open_multidigits(root: str | Path, image_size: int | None = None, limit_train: int | None = None,
                     limit_val: int | None = None, holdout: float | None = None):
    """(train, val, holdout or None, image size) of the set at ``root``; images are resized (bilinear,
    square) to ``image_size`` when it is given, else kept as stored."""
    check_limit("limit_train", limit_train)
    check_limit("limit_val", limit_val)
    holdout = check_holdout(holdout)
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8):
        raise ConfigError(f"image size must be an integer of at least 8 pixels, got {image_size!r}")
    root = Path(root)
    train_images, train_labels = load_split(root, "train", limit_train)
    val_images, val_labels = load_split(root, "val", limit_val)
    size = image_size or train_images.shape[-1]
    train = DigitsDataset("train", train_images, train_labels, size)
    val = DigitsDataset("val", val_images, val_labels, size)
    held = None
    if holdout:
        train, held = split_holdout(train, holdout, size, "multidigits")
    return train, val, held, size
