"""The selection split: a fixed part of a training set held out for choosing settings and epochs.

Which images are held out depends only on the images themselves: each is ranked by a SHA-256 of
its path relative to the data root, and the lowest ``round(fraction * n)`` form the holdout. So
every seed, optimizer and run on the same training set holds out the same images, wherever the
data set lies on disk; the validation split stays the reported test split and chooses nothing.
"""

from __future__ import annotations

import hashlib
import math
from typing import Callable

from ..errors import ConfigError
from .common import ImageDataset


def check_holdout(fraction: float | None) -> float:
    """The holdout fraction as a float in [0, 1); None means 0 (no holdout)."""
    if fraction is None:
        return 0.0
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ConfigError(f"holdout must be a fraction of the training set in [0, 1), got {fraction!r}")
    return float(fraction)


def split_holdout(
    dataset: ImageDataset, fraction: float, transform: Callable, task: str
) -> tuple[ImageDataset, ImageDataset]:
    """(training part, holdout part) of ``dataset``; the holdout part is read with ``transform``.

    Both parts keep the dataset's order. ConfigError when either part would be empty.
    """
    n = len(dataset)
    held = math.floor(fraction * n + 0.5)
    if not 0 < held < n:
        raise ConfigError(
            f"holdout {fraction} of the {n} {task} training images leaves {held} for the holdout and "
            f"{n - held} for training; each needs at least one image (use another fraction or more data)"
        )
    ranked = sorted(range(n), key=lambda i: hashlib.sha256(dataset.sample_key(i).encode()).digest())
    chosen = set(ranked[:held])
    train = [sample for i, sample in enumerate(dataset.samples) if i not in chosen]
    holdout = [sample for i, sample in enumerate(dataset.samples) if i in chosen]
    return dataset.with_samples(train, dataset.transform), dataset.with_samples(holdout, transform)
