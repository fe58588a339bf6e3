"""The preprocessed ``.npy`` layout of NYUv2 and Cityscapes that MTAN and LibMTL read.

``ROOT/{train,val}/<folder>/<i>.npy``, one file per image and target, the same indices in every
folder: ``image/`` (H x W x 3 float, 0..1), the labels (``label/`` for NYUv2, ``label_7/`` for
Cityscapes; H x W, integer values stored as integers or floats, -1 = ignored), ``depth/`` (H x W x 1
or H x W float, 0 = missing) and, for NYUv2, ``normal/`` (H x W x 3 float, unit vectors, 0 where
missing). A split's items are ``(image [3, h, w] float32, (label [h, w] int64, depth [1, h, w]
float32[, normal [3, h, w] float32]))``: one batch labelled for every task.

Checks, each a DataError naming the file: folders present, the same index set in every folder,
every file a .npy array of the layout's shape and a float (labels: any number) dtype, one image
size per split (when the set is opened: only the headers are read); finite image, depth >= 0 and
finite, integral labels in -1..C-1, normals of length at most 1 (when an item is read).

Resizing (``image_size``: the height the model sees; the width keeps the stored aspect ratio):
bilinear for the image, nearest for labels and normals (a normal stays a stored unit vector), and
mask-aware for depth: the resampled depth is the mean of the valid depths under each output
pixel's footprint (area resampling), and missing where less than half of that footprint was valid, so a missing pixel
never drags a depth towards 0. Training augmentation is a horizontal flip, which also negates the
normals' x component.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from .common import ImageDataset, check_limit
from .holdout import check_holdout, split_holdout
from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DenseDataset", "DenseLayout", "DenseTransform", "dense_size", "open_dense", "scan_dense"]

_INDEX = re.compile(r"(0|[1-9][0-9]*)\.npy")


@dataclass(frozen=True)
class DenseLayout:
    """One data set's flavour of the layout: its label folder, class count and whether it has normals."""

    name: str  # "NYUv2"
    label_folder: str  # "label" or "label_7"
    classes: int
    normals: bool

    @property
    def folders(self) -> tuple[str, ...]:
        return ("image", self.label_folder, "depth") + (("normal",) if self.normals else ())

    def expected(self) -> str:
        return f"expected ROOT/{{train,val}}/{{{','.join(self.folders)}}}/<i>.npy"


def _indices(folder: Path, layout: DenseLayout) -> dict[int, Path]:
    found = {}
    for path in folder.iterdir():
        if path.suffix != ".npy":
            continue
        match = _INDEX.fullmatch(path.name)
        if match is None:
            raise DataError(f"{path}: not named <index>.npy; {layout.expected()}")
        found[int(match.group(1))] = path
    return found


def scan_dense(root: Path, split: str, layout: DenseLayout, limit: int | None) -> list[tuple[Path, ...]]:
    """The split's samples, one tuple of files (in ``layout.folders`` order) per index, sorted by
    index; the first ``limit`` of them with a limit. Checks the folders, the index sets and the
    headers of the files it keeps (see the module docstring)."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"{layout.name} folder {root} {what}; {layout.expected()}")
    per_folder = []
    for name in layout.folders:
        folder = root / split / name
        if not folder.is_dir():
            raise DataError(f"{layout.name} folder {root} has no {split}/{name}/ folder; {layout.expected()}")
        per_folder.append(_indices(folder, layout))
    first = per_folder[0]
    if not first:
        raise DataError(f"{root / split / 'image'} holds no <index>.npy files; {layout.expected()}")
    for name, found in zip(layout.folders[1:], per_folder[1:]):
        for index in sorted(set(first) ^ set(found)):
            has, lacks = ("image", name) if index in first else (name, "image")
            raise DataError(f"{root / split / lacks / f'{index}.npy'} is missing: {split}/{has}/ has index "
                            f"{index} and every folder needs the same indices")
    samples = [tuple(found[i] for found in per_folder) for i in sorted(first)][:limit]
    size = None
    for sample in samples:
        for name, path in zip(layout.folders, sample):
            shape = _check_header(path, name, layout)
            if size is None:
                size = shape[:2]
            elif shape[:2] != size:
                raise DataError(f"{path}: {shape[0]} x {shape[1]}, but {samples[0][0]} is {size[0]} x {size[1]}; "
                                f"every array of a split must have one size")
    return samples


def _expected_shape(name: str) -> str:
    return {"image": "H x W x 3", "depth": "H x W x 1 or H x W", "normal": "H x W x 3"}.get(name, "H x W")


def _shape_fits(name: str, shape: tuple[int, ...]) -> bool:
    if name in ("image", "normal"):
        return len(shape) == 3 and shape[2] == 3
    if name == "depth":
        return len(shape) == 2 or (len(shape) == 3 and shape[2] == 1)
    return len(shape) == 2


def _open(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None


def _check_header(path: Path, name: str, layout: DenseLayout) -> tuple[int, ...]:
    array = _open(path)
    shape, dtype = tuple(array.shape), array.dtype
    if not _shape_fits(name, shape) or min(shape) < 1:
        raise DataError(f"{path}: shape {' x '.join(map(str, shape)) or 'scalar'}, expected {_expected_shape(name)}")
    is_label = name == layout.label_folder
    if not (dtype.kind == "f" or (is_label and dtype.kind in "iu")):
        raise DataError(f"{path}: dtype {dtype}, expected {'a number type' if is_label else 'a float type'}")
    return shape


def _read(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None


def _check_values(path: Path, name: str, array: np.ndarray, layout: DenseLayout) -> None:
    if name == layout.label_folder:
        bad = (array != np.round(array)) | (array < -1) | (array > layout.classes - 1) if array.dtype.kind == "f" \
            else (array < -1) | (array > layout.classes - 1)
        if bad.any():
            value = array[bad].flat[0].item()
            raise DataError(f"{path}: label {value:g}, expected whole numbers in 0..{layout.classes - 1} "
                            "or -1 (ignored)")
        return
    if not np.isfinite(array).all():
        raise DataError(f"{path}: holds NaN or infinite values")
    if name == "depth" and (array < 0).any():
        raise DataError(f"{path}: negative depth {array.min().item():g}; depth is >= 0 with 0 for missing")
    if name == "normal" and (np.linalg.norm(array, axis=-1) > 1.01).any():
        raise DataError(f"{path}: normals longer than 1; expected unit vectors, or 0 where missing")


def dense_size(layout_size: tuple[int, int], image_size: int | None) -> tuple[int, int] | None:
    """(height, width) the model sees: ``image_size`` high, the stored aspect ratio kept; None keeps the stored size."""
    if image_size is None:
        return None
    height, width = layout_size
    return image_size, max(1, round(image_size * width / height))


class DenseTransform:
    """Arrays of one sample -> tensors at ``size`` (None: as stored), flipped at random when ``flip``."""

    def __init__(self, size: tuple[int, int] | None, flip: bool):
        self.size, self.flip = size, flip
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __call__(self, image: np.ndarray, label: np.ndarray, depth: np.ndarray, normal: np.ndarray | None):
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
        y = torch.from_numpy(label.astype(np.int64))
        d = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32).reshape(1, *label.shape))
        n = None
        if normal is not None:
            n = torch.from_numpy(np.ascontiguousarray(normal, dtype=np.float32)).permute(2, 0, 1)
        if self.size is not None and self.size != tuple(y.shape):
            x, y, d, n = self._resize(x, y, d, n)
        if self.flip and bool(torch.rand(()) < 0.5):
            x, y, d = x.flip(-1), y.flip(-1), d.flip(-1)
            if n is not None:
                n = n.flip(-1) * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
        x = (x - self._mean) / self._std
        targets = (y, d) if n is None else (y, d, n.contiguous())
        return x.contiguous(), targets

    def _resize(self, x, y, d, n):
        size = self.size
        x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        y = F.interpolate(y[None, None].double(), size=size, mode="nearest-exact")[0, 0].long()
        valid = (d > 0).float()
        weight = F.interpolate(valid[None], size=size, mode="area")[0]
        total = F.interpolate((d * valid)[None], size=size, mode="area")[0]
        d = torch.where(weight >= 0.5, total / weight.clamp(min=1e-6), torch.zeros(()))
        if n is not None:
            n = F.interpolate(n[None], size=size, mode="nearest-exact")[0]
        return x, y, d, n


class DenseDataset(ImageDataset):
    """One split of the layout; ``samples`` are the files of each index (see ``scan_dense``)."""

    def __init__(self, root: str | Path, split: str, layout: DenseLayout, transform: DenseTransform,
                 limit: int | None = None):
        super().__init__(root, split, transform, scan_dense(Path(root), split, layout, limit))
        self.layout = layout

    def __getitem__(self, index: int):
        arrays = []
        for name, path in zip(self.layout.folders, self.samples[index]):
            array = _read(path)
            _check_values(path, name, array, self.layout)
            arrays.append(array)
        if not self.layout.normals:
            arrays.append(None)
        return self.transform(*arrays)

    def stored_size(self) -> tuple[int, int]:
        """(height, width) of the stored arrays."""
        return tuple(_open(self.samples[0][0]).shape[:2])


def check_image_size(image_size: int | None, minimum: int) -> int | None:
    """None, or a whole number of at least ``minimum`` pixels (the model's smallest input)."""
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < minimum):
        raise ConfigError(f"image size must be an integer of at least {minimum} pixels, got {image_size!r}")
    return image_size



def open_dense(layout: DenseLayout, root: str | Path, image_size: int | None = None, limit_train: int | None = None,
               limit_val: int | None = None, holdout: float | None = None, min_size: int = 1):
    """(train, val, holdout or None, (height, width)) of the set at ``root``.

    ``image_size`` is the height the model sees (None: as stored in train/); ``limit_*`` keep the
    first images by index; ``holdout`` moves that fraction of train/ (after the limit) into the
    selection split, chosen as ``holdout.py`` chooses it and read without augmentation. ``min_size``
    is the smallest side the model takes (ConfigError below it).
    """
    check_limit("limit_train", limit_train)
    check_limit("limit_val", limit_val)
    holdout = check_holdout(holdout)
    check_image_size(image_size, min_size)
    root = Path(root)
    train = DenseDataset(root, "train", layout, DenseTransform(None, True), limit_train)
    val = DenseDataset(root, "val", layout, DenseTransform(None, False), limit_val)
    stored = train.stored_size()
    size = dense_size(stored, image_size) or stored
    if min(size) < min_size:
        raise ConfigError(f"{layout.name} images of {size[0]} x {size[1]} are smaller than the model's "
                          f"{min_size} pixels; give a larger --image-size")
    train.transform, val.transform = DenseTransform(size, True), DenseTransform(size, False)
    held = None
    if holdout:
        train, held = split_holdout(train, holdout, val.transform, layout.name)
    return train, val, held, size
