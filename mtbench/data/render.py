"""A small ray caster for the embedded dense-prediction sets: boxes, spheres, cylinders and planes
seen by a pinhole camera, with each pixel's class, depth and surface normal taken from the geometry.

Every pixel casts one ray through its centre; the nearest surface it meets gives the pixel's
primitive, its depth and its normal, so the three dense targets agree with each other exactly and
with the image, which is shaded from the same normals (Lambert under a point light that fades with
distance, plus ambient light). Depth is z-depth, the distance along the optical axis, as a depth
camera measures it (not the length of the ray); normals are unit vectors in the camera frame
(x right, y up, z forward) and face the camera. Only numpy: the same inputs give the same bytes.

NOTE [world frame]: y is up, the camera sits at ``Camera.position`` looking along +z, pitched down
by ``Camera.pitch`` radians; a primitive's ``normal`` is computed in the world frame and turned
into the camera frame once per image.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Box", "Camera", "Cylinder", "Hits", "Plane", "Primitive", "Sphere", "cast", "colour", "shade"]

_EPS = 1e-9


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: image size in pixels, vertical field of view in degrees, pitch (down) in radians."""

    height: int
    width: int
    fov_y: float = 60.0
    pitch: float = 0.0
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def rotation(self) -> np.ndarray:
        """Camera frame -> world frame: a turn about the x axis that tilts the view down by ``pitch``."""
        c, s = np.cos(self.pitch), np.sin(self.pitch)
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])

    def directions(self) -> np.ndarray:
        """Unit ray directions in the camera frame, [H, W, 3], through the pixel centres."""
        focal = (self.height / 2) / np.tan(np.radians(self.fov_y) / 2)
        u = (np.arange(self.width) + 0.5 - self.width / 2) / focal
        v = -(np.arange(self.height) + 0.5 - self.height / 2) / focal
        rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), axis=-1)
        return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


@dataclass(frozen=True)
class Primitive:
    """What every primitive carries: its class, its colour (RGB albedo in 0..1) and whether a depth
    camera would see it (``depth_missing``: glass, a screen, the sky)."""

    label: int
    colour: tuple[float, float, float]
    depth_missing: bool = field(default=False, kw_only=True)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance along each ray, [N] with inf for a miss; unit outward normal, [N, 3]) in the world frame."""
        raise NotImplementedError

    def bound(self) -> tuple[np.ndarray, float] | None:
        """(centre, radius) of a sphere that holds the primitive, or None when it is unbounded."""
        return None


def _ahead(t: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(t) & (t > _EPS), t, np.inf)


@dataclass(frozen=True)
class Plane(Primitive):
    """The infinite plane ``normal . p = offset``; ``normal`` (unit) points to the side it is seen from."""

    normal: tuple[float, float, float] = (0.0, 1.0, 0.0)
    offset: float = 0.0

    def intersect(self, origin, dirs):
        n = np.asarray(self.normal, dtype=float)
        facing = dirs @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.offset - origin @ n) / facing
        return _ahead(np.where(facing < -_EPS, t, np.inf)), np.broadcast_to(n, dirs.shape)


@dataclass(frozen=True)
class Sphere(Primitive):
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 1.0

    def intersect(self, origin, dirs):
        c = np.asarray(self.centre, dtype=float)
        oc = origin - c
        b = dirs @ oc
        disc = b * b - (oc @ oc - self.radius**2)
        with np.errstate(invalid="ignore"):
            t = _ahead(np.where(disc >= 0, -b - np.sqrt(disc), np.inf))
        points = origin + np.where(np.isfinite(t), t, 0.0)[:, None] * dirs
        return t, (points - c) / self.radius

    def bound(self):
        return np.asarray(self.centre, dtype=float), self.radius


def _yaw(angle: float) -> np.ndarray:
    """Box frame -> world frame: a turn about the vertical axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass(frozen=True)
class Box(Primitive):
    """A box with half sizes ``half`` along its own axes, turned by ``yaw`` radians about the vertical."""

    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    half: tuple[float, float, float] = (0.5, 0.5, 0.5)
    yaw: float = 0.0

    def intersect(self, origin, dirs):
        turn = _yaw(self.yaw)
        o = (origin - np.asarray(self.centre, dtype=float)) @ turn  # into the box frame (turn is orthogonal)
        d = dirs @ turn
        d = np.where(np.abs(d) < _EPS, _EPS, d)
        h = np.asarray(self.half, dtype=float)
        t1, t2 = ((-h - o) / d).T, ((h - o) / d).T  # [3, N]: per axis, the two slab crossings
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        # Column-wise max / min: much faster than reducing over a length-3 axis.
        entry = np.maximum(np.maximum(near[0], near[1]), near[2])
        leave = np.minimum(np.minimum(far[0], far[1]), far[2])
        t = _ahead(np.where(entry <= leave, entry, np.inf))
        axis = np.where(entry == near[0], 0, np.where(entry == near[1], 1, 2))
        local = np.zeros_like(d)
        rows = np.arange(len(d))
        local[rows, axis] = -np.sign(d[rows, axis])
        return t, local @ turn.T

    def bound(self):
        return np.asarray(self.centre, dtype=float), float(np.linalg.norm(self.half))


@dataclass(frozen=True)
class Cylinder(Primitive):
    """An upright cylinder around the vertical line through (x, z) = ``base``, from height ``bottom`` to ``top``."""

    base: tuple[float, float] = (0.0, 0.0)
    radius: float = 0.5
    bottom: float = 0.0
    top: float = 1.0

    def intersect(self, origin, dirs):
        cx, cz = self.base
        ox, oy, oz = origin[0] - cx, origin[1], origin[2] - cz
        dx, dy, dz = dirs[:, 0], dirs[:, 1], dirs[:, 2]
        a = np.maximum(dx * dx + dz * dz, _EPS)
        b = ox * dx + oz * dz
        disc = b * b - a * (ox * ox + oz * oz - self.radius**2)
        with np.errstate(invalid="ignore"):
            side = np.where(disc >= 0, (-b - np.sqrt(disc)) / a, np.inf)
        y = oy + np.where(np.isfinite(side), side, 0.0) * dy
        side = _ahead(np.where((y >= self.bottom) & (y <= self.top), side, np.inf))
        caps = []
        for height, up in ((self.top, 1.0), (self.bottom, -1.0)):
            with np.errstate(divide="ignore", invalid="ignore"):
                tc = (height - oy) / np.where(np.abs(dy) < _EPS, _EPS, dy)
            px, pz = ox + tc * dx, oz + tc * dz
            seen = (dy * up < 0) & (px * px + pz * pz <= self.radius**2)
            caps.append(_ahead(np.where(seen, tc, np.inf)))
        t = np.minimum(side, np.minimum(*caps))
        normal = np.zeros_like(dirs)
        hit_side = (t == side) & np.isfinite(t)
        normal[hit_side, 0] = (ox + side[hit_side] * dx[hit_side]) / self.radius
        normal[hit_side, 2] = (oz + side[hit_side] * dz[hit_side]) / self.radius
        normal[~hit_side, 1] = np.where(t[~hit_side] == caps[0][~hit_side], 1.0, -1.0)
        return t, normal

    def bound(self):
        half = (self.top - self.bottom) / 2
        return np.array([self.base[0], self.bottom + half, self.base[1]]), float(np.hypot(self.radius, half))


@dataclass
class Hits:
    """What each pixel's ray met: ``index`` of the nearest primitive (-1: none), its z-depth (0 for a
    miss), its unit normal in the camera frame (0 for a miss) and its world point."""

    index: np.ndarray  # [H, W] int
    depth: np.ndarray  # [H, W] float64
    normal: np.ndarray  # [H, W, 3] float64, camera frame
    points: np.ndarray  # [H, W, 3] float64, world frame


def _candidates(primitive: Primitive, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Indices of the rays that may meet ``primitive``: those inside the cone around its bounding sphere
    (the rest cannot meet it, so casting only these changes no result and saves most of the work)."""
    bound = primitive.bound()
    if bound is None:
        return np.arange(len(dirs))
    centre, radius = bound
    offset = centre - origin
    distance = float(np.linalg.norm(offset))
    if distance <= radius:
        return np.arange(len(dirs))
    cos_cone = np.sqrt(1 - (radius / distance) ** 2)
    return np.flatnonzero(dirs @ (offset / distance) >= cos_cone - 1e-9)


def cast(camera: Camera, primitives: list[Primitive]) -> Hits:
    """Cast one ray per pixel; the nearest surface wins (ties go to the earlier primitive)."""
    h, w = camera.height, camera.width
    turn = camera.rotation
    cam_dirs = camera.directions().reshape(-1, 3)
    dirs = cam_dirs @ turn.T
    origin = np.asarray(camera.position, dtype=float)
    best = np.full(h * w, np.inf)
    index = np.full(h * w, -1)
    normal = np.zeros((h * w, 3))
    for k, primitive in enumerate(primitives):
        rays = _candidates(primitive, origin, dirs)
        t, n = primitive.intersect(origin, dirs[rays])
        closer = t < best[rays]
        chosen = rays[closer]
        best[chosen], index[chosen], normal[chosen] = t[closer], k, n[closer]
    hit = index >= 0
    length = np.where(hit, best, 0.0)
    points = origin + length[:, None] * dirs
    cam_normal = normal @ turn  # world -> camera frame
    return Hits(
        index=index.reshape(h, w),
        depth=(length * cam_dirs[:, 2]).reshape(h, w),
        normal=cam_normal.reshape(h, w, 3),
        points=points.reshape(h, w, 3),
    )


def shade(hits: Hits, camera: Camera, primitives: list[Primitive], light: tuple[float, float, float],
          background: np.ndarray, ambient: float = 0.25, falloff: float = 0.02) -> np.ndarray:
    """RGB in 0..1, [H, W, 3]: albedo x (ambient + Lambert under a point light at ``light`` that fades
    as 1 / (1 + falloff * distance^2)); pixels that met nothing take ``background`` ([H, W, 3])."""
    colours = np.array([p.colour for p in primitives] + [(0.0, 0.0, 0.0)], dtype=float)
    albedo = colours[hits.index]  # index -1 picks the trailing black row
    world_normal = hits.normal @ camera.rotation.T
    to_light = np.asarray(light, dtype=float) - hits.points
    distance = np.linalg.norm(to_light, axis=-1, keepdims=True)
    lambert = np.clip(np.sum(world_normal * to_light / np.maximum(distance, _EPS), axis=-1, keepdims=True), 0, 1)
    light_level = ambient + (1 - ambient) * lambert / (1 + falloff * distance**2)
    return np.where((hits.index >= 0)[..., None], albedo * light_level, background)


def colour(rng: np.random.Generator, hue: float, sat: tuple[float, float], val: tuple[float, float]
           ) -> tuple[float, float, float]:
    """An RGB albedo near ``hue`` (jittered a little) with saturation and value drawn from the ranges."""
    h = (hue + rng.normal(0, 0.02)) % 1.0
    return tuple(float(v) for v in colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val)))
