"""Cityscapes (7 classes + depth) in LibMTL's preprocessed layout, and its embedded stand-in.

The real set: ``ROOT/{train,val}/{image,label_7,depth}/<i>.npy`` at 128 x 256 (see ``dense.py``),
2975 training and 500 validation images; the classes are Cityscapes' 7 categories without void.

The stand-in (``ensure_cityscapes``): streets rendered by ``render.py`` at 64 x 128 (half of each side
of the real images), 400 training and 100 validation images by default. A road runs ahead between
two kerbs (flat), lined with buildings (construction) of many colours; poles with a sign (object),
trees (nature: a trunk and a crown), people (human: a body and a head) and cars (vehicle) stand on
it; what no ray meets is sky, in a blue gradient. The sun shades every surface from its normal.
As in the real set, the sky and anything beyond 100 m have no depth (0), and the ego vehicle's
bonnet across the bottom rows is void: label -1 and no depth.

NOTE [Cityscapes depth is scaled disparity]: the "depth" of MTAN's and LibMTL's preprocessed
Cityscapes is not metres. It is Cityscapes' own stereo disparity, an inverse depth (0 = no match:
sky, the bonnet, occlusions), stored as the 16-bit disparity PNG's value / 65536: its largest value,
0.4922, is the PNGs' largest, 32257, / 65536. The PNG holds 256 x the disparity in pixels (+1) of
the 2048-pixel-wide camera (focal length about 2262 px, baseline about 0.209 m), so a stored value
is disparity / 256 = 2262 x 0.209 / 256 / Z = 1.85 / Z for a z-depth of Z metres: 0.018 at 100 m,
0.09 at 20 m, 0.37 at 5 m. The stand-in stores that same value, ``DISPARITY_SCALE / Z``, so its
depth L1 starts near the real set's (tenths: the stored values average about 0.17, under the
segmentation loss, about ln 7 = 1.9 at the start; in metres it was about 16 and dwarfed
segmentation in the weighted sum), and ``depth_abs`` is in the unit
MTAN's and LibMTL's Cityscapes tables report (disparity pixels / 256), ``depth_rel`` a ratio of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dense import DenseLayout
from .embedded import ensure_embedded, write_indexed_arrays
from .render import Box, Camera, Cylinder, Plane, Primitive, Sphere, cast, colour, shade

__all__ = ["CLASSES", "DISPARITY_SCALE", "LAYOUT", "CityscapesSpec", "ensure_cityscapes", "write_cityscapes"]

CLASSES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
LAYOUT = DenseLayout(name="Cityscapes", label_folder="label_7", classes=len(CLASSES),
                     normals=False)
FORMAT_VERSION = 2  # part of the cache folder name: bump it when the rendering changes (2: depth as disparity)
DISPARITY_SCALE = 2262.0 * 0.209 / 256  # metres: stored depth = DISPARITY_SCALE / Z (NOTE above)
_C = {name: k for k, name in enumerate(CLASSES)}
_FAR = 100.0  # metres: the stereo depth of the real set stops about there
_BONNET = 0.08  # fraction of the rows at the bottom that show the ego vehicle


@dataclass(frozen=True)
class CityscapesSpec:
    """What to render; every field changes the cache folder name."""

    train: int = 400
    val: int = 100
    height: int = 64
    width: int = 128
    seed: int = 0

    def __post_init__(self):
        if min(self.train, self.val) < 1 or min(self.height, self.width) < 8:
            raise ValueError(f"CityscapesSpec needs at least one image per split and 8 x 8 pixels, got {self}")


def _street_side(rng: np.random.Generator, side: float, kerb: float) -> list[Primitive]:
    """Buildings, poles and trees along one side of the road (side = -1 left, +1 right)."""
    prims: list[Primitive] = []
    z = rng.uniform(2.0, 8.0)
    while z < 90.0:
        length, depth = rng.uniform(8.0, 20.0), rng.uniform(6.0, 12.0)
        setback = kerb + rng.uniform(2.0, 4.0)
        paint = colour(rng, rng.uniform(0.0, 0.15), (0.05, 0.5), (0.35, 0.85))
        height = rng.uniform(6.0, 20.0)
        prims.append(Box(_C["construction"], paint, centre=(side * (setback + depth / 2), height / 2, z + length / 2),
                         half=(depth / 2, height / 2, length / 2)))
        z += length + rng.uniform(0.0, 3.0)
    for _ in range(int(rng.integers(1, 4))):
        x, zp = side * (kerb + rng.uniform(0.3, 1.2)), rng.uniform(5.0, 50.0)
        if rng.uniform() < 0.5:
            top = rng.uniform(3.0, 5.0)
            prims.append(Cylinder(_C["object"], colour(rng, 0.6, (0.0, 0.1), (0.3, 0.5)), base=(x, zp),
                                  radius=0.08, top=top))
            prims.append(Box(_C["object"], colour(rng, 0.13, (0.8, 1.0), (0.8, 1.0)), centre=(x, top, zp),
                             half=(0.35, 0.35, 0.05)))
        else:
            crown = rng.uniform(1.2, 2.5)
            trunk = rng.uniform(2.0, 3.5)
            prims.append(Cylinder(_C["nature"], colour(rng, 0.08, (0.4, 0.6), (0.25, 0.4)), base=(x, zp),
                                  radius=0.15, top=trunk))
            prims.append(Sphere(_C["nature"], colour(rng, 0.3, (0.5, 0.8), (0.3, 0.6)),
                                centre=(x, trunk + crown * 0.8, zp), radius=crown))
    return prims


def scene(rng: np.random.Generator, spec: CityscapesSpec) -> tuple[Camera, list[Primitive], tuple[float, float, float]]:
    """(camera, primitives, sun position) of one street."""
    half_road = rng.uniform(3.0, 6.0)
    kerb = half_road + rng.uniform(1.5, 3.0)
    road = colour(rng, 0.6, (0.0, 0.1), (0.3, 0.45))
    prims: list[Primitive] = [Plane(_C["flat"], road, normal=(0, 1, 0), offset=0.0)]
    for side in (-1.0, 1.0):
        walk = (kerb - half_road) / 2
        prims.append(Box(_C["flat"], colour(rng, 0.08, (0.05, 0.2), (0.55, 0.75)),
                         centre=(side * (half_road + walk), 0.075, 50.0), half=(walk, 0.075, 60.0)))
        prims += _street_side(rng, side, kerb)
    for _ in range(int(rng.integers(0, 6))):
        length, width = rng.uniform(1.9, 2.3), rng.uniform(0.8, 1.0)
        x, z = rng.uniform(-half_road + width, half_road - width), rng.uniform(6.0, 45.0)
        height = rng.uniform(0.7, 0.8)
        paint = colour(rng, rng.uniform(), (0.0, 0.8), (0.2, 0.9))
        prims.append(Box(_C["vehicle"], paint, centre=(x, height, z), half=(width, height, length),
                         yaw=rng.uniform(-0.1, 0.1)))
    for _ in range(int(rng.integers(0, 5))):
        x = rng.choice([-1.0, 1.0]) * rng.uniform(half_road + 0.3, kerb - 0.3)
        z, body = rng.uniform(4.0, 35.0), rng.uniform(1.1, 1.45)
        clothes = colour(rng, rng.uniform(), (0.3, 0.9), (0.2, 0.8))
        prims.append(Cylinder(_C["human"], clothes, base=(x, z), radius=0.22, top=body))
        prims.append(Sphere(_C["human"], colour(rng, 0.07, (0.3, 0.5), (0.5, 0.8)), centre=(x, body + 0.15, z),
                            radius=0.14))
    camera = Camera(spec.height, spec.width, fov_y=35.0, pitch=rng.uniform(0.0, 0.08),
                    position=(rng.uniform(-half_road / 2, half_road / 2), rng.uniform(1.2, 1.5), 0.0))
    sun = (rng.uniform(-1e4, 1e4), 1e4, rng.uniform(-1e4, 1e4))
    return camera, prims, sun


def render_street(rng: np.random.Generator, spec: CityscapesSpec) -> tuple[np.ndarray, ...]:
    """(image H x W x 3, label H x W, depth H x W x 1 as scaled disparity), float32, of one random street."""
    camera, prims, sun = scene(rng, spec)
    hits = cast(camera, prims)
    rows = np.linspace(0, 1, spec.height)[:, None, None]
    sky = np.broadcast_to(np.array([0.35, 0.55, 0.9]) * (1 - rows) + np.array([0.75, 0.85, 0.95]) * rows,
                          (spec.height, spec.width, 3))
    image = shade(hits, camera, prims, sun, sky, ambient=0.35, falloff=0.0)
    labels = np.array([p.label for p in prims] + [_C["sky"]])[hits.index]
    seen = (hits.index >= 0) & (hits.depth <= _FAR)
    depth = np.where(seen, DISPARITY_SCALE / np.where(seen, hits.depth, 1.0), 0.0)
    bonnet = np.arange(spec.height) >= round(spec.height * (1 - _BONNET))
    image[bonnet] = np.array([0.12, 0.12, 0.14])
    labels[bonnet], depth[bonnet] = -1, 0.0
    image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
    return image.astype(np.float32), labels.astype(np.float32), depth[..., None].astype(np.float32)


def write_cityscapes(out: Path, spec: CityscapesSpec) -> dict:
    """Render the stand-in into ``out`` in the real layout; returns what the manifest records."""
    write_indexed_arrays(out, LAYOUT.folders, (spec.train, spec.val), spec.seed, lambda rng: render_street(rng, spec))
    return {"classes": list(CLASSES)}


def ensure_cityscapes(cache_dir: str | Path | None = None, spec: CityscapesSpec = CityscapesSpec()) -> Path:
    """The stand-in's root folder in the cache, rendered on first use."""
    return ensure_embedded("cityscapes", FORMAT_VERSION, spec, write_cityscapes, cache_dir)
