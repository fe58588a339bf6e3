"""NYUv2 (13 classes, depth, surface normals) in MTAN's preprocessed layout, and its embedded stand-in.

The real set: ``ROOT/{train,val}/{image,label,depth,normal}/<i>.npy`` at 288 x 384 (see ``dense.py``),
795 training and 654 validation images; the classes are NYUv2's 13-class grouping.

The stand-in (``ensure_nyuv2``): rooms rendered by ``render.py`` at 72 x 96 (a quarter of each side
of the real images), 400 training and 100 validation images by default. A room is a floor, a
ceiling and three walls seen from near the fourth by a camera 1.1-1.6 m up, pitched down a little;
in it stand 3-7 pieces, each class a primitive with its own size range and colour (a bed is a large
low blue box, a chair an orange cylinder, objects are green spheres, a painting and a window are
thin panels on the walls, ...). One point light under the ceiling shades every surface from its
normal and its distance, so the image shows the geometry. As on a Kinect, a window's glass and
surfaces seen at a grazing angle have no depth (0) and then no normal (0), and unlabelled clutter
(a sphere or box of any colour, in a third of the rooms) is -1 in the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dense import DenseLayout
from .embedded import ensure_embedded, write_indexed_arrays
from .render import Box, Camera, Cylinder, Plane, Primitive, Sphere, cast, colour, shade

__all__ = ["CLASSES", "LAYOUT", "NyuSpec", "ensure_nyuv2", "write_nyuv2"]

CLASSES = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "painting", "sofa", "table",
           "tv", "wall", "window")
LAYOUT = DenseLayout(name="NYUv2", label_folder="label", classes=len(CLASSES), normals=True)
FORMAT_VERSION = 1  # part of the cache folder name: bump it when the rendering changes
_C = {name: k for k, name in enumerate(CLASSES)}
_GRAZING = 0.1  # |cos| between ray and surface below which the depth camera sees nothing


@dataclass(frozen=True)
class NyuSpec:
    """What to render; every field changes the cache folder name."""

    train: int = 400
    val: int = 100
    height: int = 72
    width: int = 96
    seed: int = 0

    def __post_init__(self):
        if min(self.train, self.val) < 1 or min(self.height, self.width) < 8:
            raise ValueError(f"NyuSpec needs at least one image per split and 8 x 8 pixels, got {self}")


def _piece(rng: np.random.Generator, kind: str, x: float, z: float) -> list[Primitive]:
    """One piece of furniture of class ``kind`` standing on the floor at (x, z)."""
    yaw = rng.uniform(-0.6, 0.6)
    if kind in ("bed", "sofa", "furniture", "books"):
        w, h, d, hue, sat, val = {
            "bed": ((0.7, 1.0), (0.2, 0.3), (0.9, 1.1), 0.6, (0.4, 0.6), (0.6, 0.8)),
            "sofa": ((0.8, 1.1), (0.35, 0.45), (0.4, 0.5), 0.93, (0.4, 0.6), (0.6, 0.8)),
            "furniture": ((0.3, 0.6), (0.6, 1.0), (0.2, 0.3), 0.1, (0.5, 0.7), (0.4, 0.6)),
            "books": ((0.1, 0.18), (0.1, 0.15), (0.08, 0.12), 0.0, (0.7, 0.9), (0.6, 0.8)),
        }[kind]
        half = (rng.uniform(*w), rng.uniform(*h), rng.uniform(*d))
        return [Box(_C[kind], colour(rng, hue, sat, val), centre=(x, half[1], z), half=half, yaw=yaw)]
    if kind == "chair":
        return [Cylinder(_C[kind], colour(rng, 0.07, (0.6, 0.8), (0.6, 0.8)), base=(x, z),
                         radius=rng.uniform(0.2, 0.3), top=rng.uniform(0.45, 0.9))]
    if kind == "table":
        return [Cylinder(_C[kind], colour(rng, 0.5, (0.4, 0.6), (0.5, 0.7)), base=(x, z),
                         radius=rng.uniform(0.4, 0.65), top=rng.uniform(0.6, 0.8))]
    radius = rng.uniform(0.15, 0.35)  # objects
    return [Sphere(_C["objects"], colour(rng, 0.33, (0.5, 0.7), (0.5, 0.8)), centre=(x, radius, z), radius=radius)]


_PIECES = ("bed", "sofa", "furniture", "books", "chair", "table", "objects")


def scene(rng: np.random.Generator, spec: NyuSpec) -> tuple[Camera, list[Primitive], tuple[float, float, float]]:
    """(camera, primitives, light position) of one room."""
    top, back = rng.uniform(2.5, 3.0), rng.uniform(4.5, 7.0)
    left, right = -rng.uniform(1.8, 3.0), rng.uniform(1.8, 3.0)
    wall = colour(rng, 0.1, (0.05, 0.25), (0.7, 0.9))
    prims: list[Primitive] = [
        Plane(_C["floor"], colour(rng, 0.07, (0.4, 0.6), (0.35, 0.55)), normal=(0, 1, 0), offset=0.0),
        Plane(_C["ceiling"], colour(rng, 0.1, (0.0, 0.05), (0.85, 0.95)), normal=(0, -1, 0), offset=-top),
        Plane(_C["wall"], wall, normal=(0, 0, -1), offset=-back),
        Plane(_C["wall"], wall, normal=(1, 0, 0), offset=left),
        Plane(_C["wall"], wall, normal=(-1, 0, 0), offset=-right),
    ]
    for _ in range(int(rng.integers(3, 8))):
        kind = _PIECES[int(rng.integers(len(_PIECES)))]
        prims += _piece(rng, kind, rng.uniform(left + 0.5, right - 0.5), rng.uniform(1.5, back - 0.6))
    # Panels on the back wall: a painting, a tv, a window; a window may be on a side wall instead.
    for kind in ("painting", "tv", "window"):
        if rng.uniform() < 0.6:
            w, h = rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.5)
            y = rng.uniform(1.0 + h, top - 0.2 - h) if top - 0.2 - h > 1.0 + h else 1.5
            paint = {"painting": colour(rng, 0.8, (0.5, 0.7), (0.5, 0.8)),
                      "tv": colour(rng, 0.6, (0.0, 0.2), (0.08, 0.18)),
                      "window": colour(rng, 0.57, (0.1, 0.2), (0.9, 1.0))}[kind]
            if kind == "window" and rng.uniform() < 0.5:
                x = left if rng.uniform() < 0.5 else right
                panel = Box(_C[kind], paint, centre=(x, y, rng.uniform(2.0, back - 1.0)), half=(0.03, h, w),
                            depth_missing=True)
            else:
                panel = Box(_C[kind], paint, centre=(rng.uniform(left + w, right - w), y, back), half=(w, h, 0.03),
                            depth_missing=kind == "window")
            prims.append(panel)
    if rng.uniform() < 1 / 3:
        x, z, r = rng.uniform(left + 0.4, right - 0.4), rng.uniform(1.5, back - 0.5), rng.uniform(0.1, 0.3)
        paint = colour(rng, rng.uniform(), (0.3, 0.9), (0.3, 0.9))
        prims.append(Sphere(-1, paint, centre=(x, r, z), radius=r) if rng.uniform() < 0.5
                     else Box(-1, paint, centre=(x, r, z), half=(r, r, r), yaw=rng.uniform(-0.6, 0.6)))
    camera = Camera(spec.height, spec.width, fov_y=45.0, pitch=rng.uniform(0.1, 0.35),
                    position=(rng.uniform(left + 1.0, right - 1.0), rng.uniform(1.1, 1.6), 0.0))
    light = (camera.position[0] + rng.uniform(-1, 1), top - 0.2, rng.uniform(0.5, 2.0))
    return camera, prims, light


def render_room(rng: np.random.Generator, spec: NyuSpec) -> tuple[np.ndarray, ...]:
    """(image H x W x 3, label H x W, depth H x W x 1, normal H x W x 3), float32, of one random room."""
    camera, prims, light = scene(rng, spec)
    hits = cast(camera, prims)
    image = shade(hits, camera, prims, light, np.zeros((spec.height, spec.width, 3)), ambient=0.3, falloff=0.03)
    image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
    # A trailing entry for rays that met nothing (index -1): ignored, no depth.
    labels = np.array([p.label for p in prims] + [-1])[hits.index]
    missing = np.array([p.depth_missing for p in prims] + [True])[hits.index]
    rays = camera.directions()
    grazing = np.abs(np.sum(rays * hits.normal, axis=-1)) < _GRAZING
    missing |= grazing
    depth = np.where(missing, 0.0, hits.depth)
    normal = np.where(missing[..., None], 0.0, hits.normal)
    return (image.astype(np.float32), labels.astype(np.float32), depth[..., None].astype(np.float32),
            normal.astype(np.float32))


def write_nyuv2(out: Path, spec: NyuSpec) -> dict:
    """Render the stand-in into ``out`` in the real layout; returns what the manifest records."""
    write_indexed_arrays(out, LAYOUT.folders, (spec.train, spec.val), spec.seed, lambda rng: render_room(rng, spec))
    return {"classes": list(CLASSES)}


def ensure_nyuv2(cache_dir: str | Path | None = None, spec: NyuSpec = NyuSpec()) -> Path:
    """The stand-in's root folder in the cache, rendered on first use."""
    return ensure_embedded("nyuv2", FORMAT_VERSION, spec, write_nyuv2, cache_dir)
