"""The embedded default data set: small, deterministic, learnable, in the ImageNet and COCO layouts.

Classification: each class is one polygon shape with a preferred hue (the hues of neighbouring
classes overlap a little), drawn once per image at a random size, angle and place on a noisy
background with distractor strokes. Segmentation: 0-3 objects per image from the first
``seg_classes`` VOC classes, each class a shape and hue of its own, stored as COCO polygons
under the real COCO category ids. Both are read by the same loaders as real data.

Every image draws from its own RNG seeded with (seed, task, split, index), and the files are
written in a fixed order with fixed encoder settings, so the output is the same bytes on every
run with the same library versions. ``ensure_synthetic`` writes the set once into a cache
folder named after the format version and the spec, building it in a temporary folder and
renaming it into place, so concurrent first uses cannot leave a half-written set behind.
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DataError
from ..rundir import make_temp_dir
from .coco import VOC_CATEGORY_IDS

FORMAT_VERSION = 1  # part of the cache folder name: bump it when the drawing changes
MANIFEST = "synthetic.json"

# COCO 2017 names of the VOC categories, by category id.
_COCO_NAMES = {
    5: "airplane", 2: "bicycle", 16: "bird", 9: "boat", 44: "bottle", 6: "bus", 3: "car", 17: "cat",
    62: "chair", 21: "cow", 67: "dining table", 18: "dog", 19: "horse", 4: "motorcycle", 1: "person",
    64: "potted plant", 20: "sheep", 63: "couch", 7: "train", 72: "tv",
}


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; every field changes the cache folder name, so a new spec never reuses an old set."""

    classes: int = 10  # classification classes
    train_per_class: int = 40
    val_per_class: int = 20
    seg_classes: int = 10  # the first seg_classes VOC classes appear in the segmentation images
    seg_train: int = 400
    seg_val: int = 100
    image_size: int = 72  # stored images are image_size x image_size JPEG
    hue_jitter: float = 0.035  # spread of an object's hue around its class hue: less is easier
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.classes <= len(_SHAPES):
            raise ValueError(f"classes must be in 1..{len(_SHAPES)}, got {self.classes}")
        if not 1 <= self.seg_classes <= len(VOC_CATEGORY_IDS) - 1:
            raise ValueError(f"seg_classes must be in 1..{len(VOC_CATEGORY_IDS) - 1}, got {self.seg_classes}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32, got {self.image_size}")

    def cache_name(self) -> str:
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()
        return f"synthetic-v{FORMAT_VERSION}-{digest[:10]}"


# ---- shapes: closed polygons around the origin with radius about 1 --------------------------------


def _arc(start: float, stop: float, n: int) -> np.ndarray:
    angles = np.linspace(start, stop, n)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    return _arc(phase, phase + 2 * np.pi, n + 1)[:-1]


def _star(points: int, inner: float) -> np.ndarray:
    radii = np.tile([1.0, inner], points)
    return _regular(2 * points, -np.pi / 2) * radii[:, None]


def _outline(*xy: float) -> np.ndarray:
    return np.array(xy, dtype=float).reshape(-1, 2)


_SHAPES = {
    "disc": _regular(24),
    "triangle": _regular(3, -np.pi / 2),
    "square": _regular(4, np.pi / 4) * 1.2,
    "star": _star(5, 0.45),
    "cross": _outline(-0.3, -1, 0.3, -1, 0.3, -0.3, 1, -0.3, 1, 0.3, 0.3, 0.3,
                      0.3, 1, -0.3, 1, -0.3, 0.3, -1, 0.3, -1, -0.3, -0.3, -0.3),
    "diamond": _outline(0, -1, 0.5, 0, 0, 1, -0.5, 0),
    "bar": _outline(-1, -0.3, 1, -0.3, 1, 0.3, -1, 0.3),
    "crescent": np.concatenate([_arc(-np.pi / 2, np.pi / 2, 9), _arc(np.pi / 2, -np.pi / 2, 9)[1:-1] * [0.4, 1.0]]),
    "arrow": _outline(-1, -0.25, 0.2, -0.25, 0.2, -0.7, 1, 0, 0.2, 0.7, 0.2, 0.25, -1, 0.25),
    "ell": _outline(-0.8, -1, -0.25, -1, -0.25, 0.45, 0.8, 0.45, 0.8, 1, -0.8, 1),
    "hexagon": _regular(6),
    "tee": _outline(-1, -1, 1, -1, 1, -0.45, 0.28, -0.45, 0.28, 1, -0.28, 1, -0.28, -0.45, -1, -0.45),
}
_SHAPE_NAMES = list(_SHAPES)


def _class_style(index: int, count: int) -> tuple[str, float]:
    """(shape name, hue) of a class: shapes cycle, hues spread so that classes sharing a shape differ in colour."""
    shape = _SHAPE_NAMES[index % len(_SHAPE_NAMES)]
    return shape, (index * 0.61803) % 1.0 if count > len(_SHAPE_NAMES) else index / count


def _place(shape: str, center: np.ndarray, radius: float, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return _SHAPES[shape] @ np.array([[c, s], [-s, c]]) * radius + center


def _rgb(hue: float, sat: float, val: float) -> tuple[int, int, int]:
    return tuple(int(round(255 * v)) for v in colorsys.hsv_to_rgb(hue % 1.0, sat, val))


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A dull colour gradient with a few random strokes: texture that carries no class."""
    top = rng.uniform(60, 200, 3)
    bottom = rng.uniform(60, 200, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    pixels = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3))
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 5))):
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, size, 4))
        colour = _rgb(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.3, 1.0))
        draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(1, 3)))
    return image


def _draw_object(draw: ImageDraw.ImageDraw, polygon: np.ndarray, hue: float, spec: SyntheticSpec,
                 rng: np.random.Generator) -> None:
    colour = _rgb(hue + rng.normal(0, spec.hue_jitter), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))
    draw.polygon([(float(x), float(y)) for x, y in polygon], fill=colour)


def _finish(image: Image.Image, rng: np.random.Generator, path: Path) -> None:
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 12, (image.height, image.width, 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=90)


def _rng(spec: SyntheticSpec, task: int, split: int, index: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, task, split, index])


# ---- the two layouts ----------------------------------------------------------------------------------


def _wnid(index: int) -> str:
    # wnid-shaped ('n' + 8 digits) but outside the range of real WordNet ids.
    return f"n{90000000 + index:08d}"


def _write_classification(spec: SyntheticSpec, root: Path) -> dict[str, str]:
    size = spec.image_size
    styles = [_class_style(k, spec.classes) for k in range(spec.classes)]
    for split_id, (split, per_class) in enumerate((("train", spec.train_per_class), ("val", spec.val_per_class))):
        for k, (shape, hue) in enumerate(styles):
            folder = root / split / _wnid(k)
            folder.mkdir(parents=True)
            for i in range(per_class):
                rng = _rng(spec, 0, split_id, k * per_class + i)
                image = _background(rng, size)
                radius = rng.uniform(0.26, 0.44) * size
                center = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
                polygon = _place(shape, center, radius, rng.uniform(0, 2 * np.pi))
                _draw_object(ImageDraw.Draw(image), polygon, hue, spec, rng)
                _finish(image, rng, folder / f"{_wnid(k)}_{i + 1}.JPEG")
    return {_wnid(k): f"{shape}, hue {hue:.2f}" for k, (shape, hue) in enumerate(styles)}


def _seg_objects(rng: np.random.Generator, spec: SyntheticSpec, shapes: list[str]) -> list[tuple[int, np.ndarray]]:
    """(class index, polygon) of 0-3 objects whose bounding circles do not overlap; class c has shape shapes[c-1]."""
    size = spec.image_size
    count = int(rng.choice(4, p=[0.05, 0.45, 0.35, 0.15]))
    placed: list[tuple[np.ndarray, float]] = []
    objects = []
    for _ in range(count):
        cls = int(rng.integers(1, spec.seg_classes + 1))
        radius = rng.uniform(0.15, 0.3) * size
        angle = rng.uniform(0, 2 * np.pi)
        for _attempt in range(20):
            center = rng.uniform(radius, size - radius, 2)
            if all(np.hypot(*(center - c)) > radius + r for c, r in placed):
                placed.append((center, radius))
                objects.append((cls, _place(shapes[cls - 1], center, radius, angle)))
                break
    return objects


def _write_segmentation(spec: SyntheticSpec, root: Path) -> dict[str, str]:
    size = spec.image_size
    styles = [_class_style(k, spec.seg_classes) for k in range(spec.seg_classes)]
    categories = [
        {"id": VOC_CATEGORY_IDS[c], "name": _COCO_NAMES[VOC_CATEGORY_IDS[c]], "supercategory": "synthetic"}
        for c in range(1, spec.seg_classes + 1)
    ]
    (root / "annotations").mkdir(parents=True)
    for split_id, (split, count) in enumerate((("train", spec.seg_train), ("val", spec.seg_val))):
        folder = root / f"{split}2017"
        folder.mkdir()
        images, annotations = [], []
        for i in range(count):
            image_id = split_id * 1_000_000 + i + 1
            rng = _rng(spec, 1, split_id, i)
            image = _background(rng, size)
            draw = ImageDraw.Draw(image)
            for cls, polygon in _seg_objects(rng, spec, [shape for shape, _ in styles]):
                _draw_object(draw, polygon, styles[cls - 1][1], spec, rng)
                x, y = polygon[:, 0], polygon[:, 1]
                annotations.append({
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": VOC_CATEGORY_IDS[cls],
                    "segmentation": [[round(float(v), 2) for v in polygon.reshape(-1)]],
                    "area": round(float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))), 2),
                    "bbox": [round(float(v), 2) for v in (x.min(), y.min(), np.ptp(x), np.ptp(y))],
                    "iscrowd": 0,
                })
            name = f"{image_id:012d}.jpg"
            _finish(image, rng, folder / name)
            images.append({"id": image_id, "file_name": name, "height": size, "width": size})
        instances = {"info": {"description": "mtbench synthetic segmentation set"}, "images": images,
                     "annotations": annotations, "categories": categories}
        with open(root / "annotations" / f"instances_{split}2017.json", "w", encoding="utf-8") as f:
            json.dump(instances, f, separators=(",", ":"))
    return {c["name"]: f"{shape}, hue {hue:.2f}" for c, (shape, hue) in zip(categories, styles)}


def write_synthetic(out_dir: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> tuple[Path, Path]:
    """Write the set into ``out_dir`` (new or empty): ``imagenet/`` and ``coco/``; returns both folders."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if any(out.iterdir()):
            raise DataError(f"{out} is not empty; choose a new or empty folder for the synthetic data set")
        imagenet, coco = out / "imagenet", out / "coco"
        manifest = {
            "format": FORMAT_VERSION,
            "spec": dataclasses.asdict(spec),
            "imagenet_classes": _write_classification(spec, imagenet),
            "coco_classes": _write_segmentation(spec, coco),
        }
        # Written last: its presence marks a complete set.
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot write the synthetic data set to {out}: {exc.strerror or exc}") from None
    return imagenet, coco


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else $MTBENCH_CACHE, else $XDG_CACHE_HOME/mtbench or ~/.cache/mtbench."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("MTBENCH_CACHE"):
        return Path(os.environ["MTBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtbench"


def build_in_cache(final: Path, manifest: str, what: str, write: Callable[[Path], Any]) -> None:
    """Make the cached set ``final`` unless its ``manifest`` is there: ``write(staging)`` fills a temporary
    folder beside it, which is renamed into place, so concurrent first uses cannot leave a half-written
    set behind (the first rename wins; the others use its copy). ``what`` names the set in errors."""
    if (final / manifest).is_file():
        return
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = make_temp_dir(final.parent, f".{final.name}.")
    except OSError as exc:
        raise DataError(f"cannot create the data cache {final.parent}: {exc.strerror or exc}; "
                        "set MTBENCH_CACHE to a writable folder") from None
    try:
        write(staging)
        os.rename(staging, final)
    except OSError as exc:
        # Another process renamed its complete copy into place first: use that one.
        if not (final / manifest).is_file():
            raise DataError(f"cannot move the {what} data set into {final}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_synthetic(cache_dir: str | Path | None = None, spec: SyntheticSpec = SyntheticSpec()) -> tuple[Path, Path]:
    """The (imagenet, coco) folders of the synthetic set in the cache, generated on first use."""
    final = cache_root(cache_dir) / spec.cache_name()
    build_in_cache(final, MANIFEST, "synthetic", lambda staging: write_synthetic(staging, spec))
    return final / "imagenet", final / "coco"
