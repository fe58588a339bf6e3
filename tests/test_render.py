"""The ray caster against analytic geometry, and the embedded sets' determinism."""

import filecmp
import math

import numpy as np
import pytest

from mtbench.data.cityscapes import CityscapesSpec, write_cityscapes
from mtbench.data.multidigits import DigitsSpec, write_multidigits
from mtbench.data.nyuv2 import NyuSpec, write_nyuv2
from mtbench.data.render import Box, Camera, Cylinder, Plane, Sphere, cast


def test_a_wall_facing_the_camera_has_its_distance_as_depth_and_faces_back():
    hits = cast(Camera(6, 8, fov_y=70.0), [Plane(3, (1, 1, 1), normal=(0, 0, -1), offset=-4.5)])
    assert (hits.index == 0).all()
    np.testing.assert_allclose(hits.depth, 4.5, atol=1e-12)  # z-depth, not the ray's length
    np.testing.assert_allclose(hits.normal, np.broadcast_to([0.0, 0.0, -1.0], (6, 8, 3)), atol=1e-12)


def test_a_pitched_camera_sees_the_floor_tilted_and_its_points_on_the_floor():
    pitch, height = 0.3, 1.5
    camera = Camera(8, 8, fov_y=40.0, pitch=pitch, position=(0.0, height, 0.0))
    hits = cast(camera, [Plane(4, (1, 1, 1), normal=(0, 1, 0), offset=0.0)])
    below = hits.index == 0
    assert below[-1].all() and not below[0].any()  # the horizon lies in the image
    np.testing.assert_allclose(hits.points[below][:, 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(hits.normal[below], np.broadcast_to([0, math.cos(pitch), -math.sin(pitch)],
                                                                   (below.sum(), 3)), atol=1e-12)
    # The optical axis meets the floor at distance height / sin(pitch): z-depth of a centred ray.
    centre = Camera(1, 1, fov_y=40.0, pitch=pitch, position=(0.0, height, 0.0))
    assert cast(centre, [Plane(4, (1, 1, 1), normal=(0, 1, 0), offset=0.0)]).depth[0, 0] == pytest.approx(
        height / math.sin(pitch))
    assert (hits.depth[~below] == 0).all() and (hits.normal[~below] == 0).all()


def test_a_sphere_normal_points_from_its_centre_through_the_hit_point():
    centre, radius = np.array([0.3, -0.2, 4.0]), 1.0
    camera = Camera(16, 16, fov_y=40.0)
    hits = cast(camera, [Sphere(6, (1, 1, 1), centre=tuple(centre), radius=radius)])
    on = hits.index == 0
    assert 20 < on.sum() < 256
    rays = camera.directions()
    points = rays * (hits.depth / rays[..., 2])[..., None]  # back from z-depth to the 3-D point
    np.testing.assert_allclose(np.linalg.norm(points[on] - centre, axis=-1), radius, atol=1e-9)
    np.testing.assert_allclose(hits.normal[on], (points[on] - centre) / radius, atol=1e-9)
    assert (np.sum(hits.normal[on] * rays[on], axis=-1) < 0).all()  # facing the camera


def test_box_faces_and_cylinder_cap():
    box = Box(1, (1, 1, 1), centre=(0.0, 0.0, 5.0), half=(1.0, 1.0, 0.5))
    hits = cast(Camera(3, 3, fov_y=10.0), [box])
    assert hits.depth[1, 1] == pytest.approx(4.5)
    np.testing.assert_allclose(hits.normal[1, 1], [0, 0, -1], atol=1e-12)
    turned = Box(1, (1, 1, 1), centre=(0.0, 0.0, 5.0), half=(1.0, 1.0, 1.0), yaw=math.pi / 4)
    normal = cast(Camera(5, 5, fov_y=30.0), [turned]).normal[2, 3]  # right of centre: the face turned right
    np.testing.assert_allclose(normal, [math.sqrt(0.5), 0, -math.sqrt(0.5)], atol=1e-9)
    # Looking straight down at a cylinder's top from above.
    down = Camera(3, 3, fov_y=10.0, pitch=math.pi / 2, position=(0.0, 3.0, 0.0))
    cap = cast(down, [Cylinder(2, (1, 1, 1), base=(0.0, 0.0), radius=0.5, bottom=0.0, top=1.0)])
    assert cap.index[1, 1] == 0 and cap.depth[1, 1] == pytest.approx(2.0)
    np.testing.assert_allclose(cap.normal[1, 1], [0, 0, -1], atol=1e-9)  # world up = towards this camera


def test_nearest_surface_wins():
    wall = Plane(11, (1, 1, 1), normal=(0, 0, -1), offset=-6.0)
    ball = Sphere(6, (1, 1, 1), centre=(0.0, 0.0, 3.0), radius=0.5)
    hits = cast(Camera(5, 5, fov_y=30.0), [wall, ball])
    assert hits.index[2, 2] == 1 and hits.index[0, 0] == 0
    assert hits.depth[2, 2] == pytest.approx(2.5)


@pytest.mark.parametrize("write, spec", [
    (write_nyuv2, NyuSpec(train=3, val=2, height=12, width=16)),
    (write_cityscapes, CityscapesSpec(train=3, val=2, height=10, width=20)),
    (write_multidigits, DigitsSpec(train=20, val=10)),
], ids=["nyuv2", "cityscapes", "multidigits"])
def test_embedded_sets_are_the_same_bytes_every_time(tmp_path, write, spec):
    write(tmp_path / "a", spec)
    write(tmp_path / "b", spec)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.npy"))
    assert files and files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.npy"))
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
    other = type(spec)(**{**spec.__dict__, "seed": 1})
    write(tmp_path / "c", other)
    assert any(not filecmp.cmp(tmp_path / "a" / f, tmp_path / "c" / f, shallow=False) for f in files)
