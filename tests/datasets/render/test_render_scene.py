"""The Mitsuba scene applies exactly scipy's rotation and the documented camera geometry."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from equissl.datasets.render.meshes import mesh_arrays, normalize_mesh
from equissl.datasets.render.scene import (
    CAMERA_DISTANCE,
    ViewRenderer,
    camera_position,
    linear_to_srgb8,
    object_pose,
    project_points,
    select_variant,
)
from equissl.datasets.render.shapes import build_shape


def elementary(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = (axis + 1) % 3, (axis + 2) % 3  # cyclic order keeps the right-hand rule
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


@pytest.fixture(scope="module")
def chair_renderer() -> ViewRenderer:
    mesh = normalize_mesh(build_shape("chair", np.random.default_rng(0)))
    vertices, faces = mesh_arrays(mesh)
    return ViewRenderer(vertices, faces, resolution=32, spp=4, translation=True)


def test_pose_is_scipy_extrinsic_xyz():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lat = np.concatenate(
            [rng.uniform(-np.pi, np.pi, 3), rng.random(4), rng.uniform(-0.5, 0.5, 3)]
        )
        rot, t = object_pose(lat)
        assert np.allclose(rot, Rotation.from_euler("xyz", lat[:3]).as_matrix())
        # extrinsic X, then Y, then Z (Blender's "XYZ" Euler): R = Rz · Ry · Rx
        by_hand = elementary(2, lat[2]) @ elementary(1, lat[1]) @ elementary(0, lat[0])
        # the published 3DIEBench-T generator's matrix_basis = R · T(t): the centre lands at R t
        assert np.allclose(rot, by_hand) and np.allclose(t, rot @ lat[7:])
    assert np.array_equal(object_pose(np.zeros(7))[1], np.zeros(3))


def test_mitsuba_vertices_are_scipy_rotation_plus_translation(chair_renderer):
    r = chair_renderer
    rng = np.random.default_rng(1)
    for _ in range(5):
        lat = np.concatenate(
            [rng.uniform(-np.pi / 2, np.pi / 2, 3), rng.random(4), rng.uniform(-0.5, 0.5, 3)]
        )
        r.set_view(lat)
        rot = Rotation.from_euler("xyz", lat[:3])
        expected = rot.apply(r._v0 + lat[7:])  # R (v + t), as Blender's matrix_basis = R · T(t)
        np.testing.assert_allclose(r.object_vertices(), expected, atol=2e-6)


@pytest.fixture(scope="module")
def box_renderer() -> ViewRenderer:
    vertices, faces = mesh_arrays(normalize_mesh(trimesh.creation.box((1.0, 0.6, 0.5))))
    return ViewRenderer(vertices, faces, resolution=32, spp=4, translation=True)


def test_camera_geometry_matches_the_projection(box_renderer):
    import mitsuba as mi

    r = box_renderer
    assert np.isclose(np.linalg.norm(camera_position()), CAMERA_DISTANCE)
    assert np.isclose(camera_position()[2], CAMERA_DISTANCE * np.cos(np.pi / 4))
    sensor = r.scene.sensors()[0]

    def shape_hit(col: float, row: float) -> str | None:
        ray, _ = sensor.sample_ray(0.0, 0.5, mi.Point2f(col / 32, row / 32), mi.Point2f(0.5))
        si = r.scene.ray_intersect(ray)
        return si.shape.id() if si.is_valid() else None

    for t in ([0.45, 0, 0], [-0.45, 0, 0], [0, 0.3, 0.3], [0.2, -0.4, -0.4]):
        r.set_view(np.array([0, 0, 0, 0.5, 0.1, 0.2, 0.3, *t]))
        col, row = project_points(np.array(t), 32, translation=True)[0]
        assert shape_hit(col, row) == "object"  # the box centre's pixel sees the box
        assert shape_hit(32 - col, row) != "object" or abs(col - 16) < 3  # not mirrored
        assert shape_hit(0.5, 0.5) == "floor"  # a corner sees the floor
    col, _ = project_points(np.array([0.45, 0, 0]), 32, translation=True)[0]
    assert col < 16  # the camera sits on +y looking towards -y: +x is on the image's left


def test_rotation_changes_the_image_and_the_frame_is_lit(chair_renderer):
    r = chair_renderer
    base = np.array([0, 0, 0, 0.3, 0.2, 1.0, 0.6, 0, 0, 0])
    turned = base.copy()
    turned[2] = np.pi / 2
    a, b = r.render(base, seed=1).astype(float), r.render(turned, seed=1).astype(float)
    assert a.shape == (32, 32, 3) and 40 < a.mean() < 220
    changed = np.abs(a - b).max(axis=-1) > 20
    assert changed.mean() > 0.05  # a quarter turn moves a good part of the silhouette
    same = r.render(base, seed=1).astype(float)
    assert np.abs(a - same).max() == 0  # same seed, same pixels


def test_floor_hue_sets_the_floor_colour(chair_renderer):
    r = chair_renderer
    red = r.render(np.array([0, 0, 0, 0.0, 0.2, 1.0, 0.6, 0, 0, 0]), seed=0).astype(float)
    green = r.render(np.array([0, 0, 0, 1 / 3, 0.2, 1.0, 0.6, 0, 0, 0]), seed=0).astype(float)
    corner = (slice(0, 4), slice(0, 4))
    assert red[corner][..., 0].mean() > red[corner][..., 1].mean() + 20
    assert green[corner][..., 1].mean() > green[corner][..., 0].mean() + 20


def test_srgb_encoding_and_variant():
    x = np.array([[[0.0, 0.0031308, 1.0], [0.5, 2.0, -1.0]]])
    out = linear_to_srgb8(x)
    assert out.dtype == np.uint8 and out.tolist() == [[[0, 10, 255], [188, 255, 0]]]
    assert select_variant() in ("scalar_rgb", "cuda_ad_rgb", "llvm_ad_rgb")
    with pytest.raises(ValueError, match="not available"):
        select_variant("no_such_variant")


def test_seven_value_latents_render_without_translation():
    v, f = mesh_arrays(normalize_mesh(trimesh.creation.box((1, 0.5, 0.2))))
    img = ViewRenderer(v, f, resolution=16, spp=2).render(np.zeros(7))
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
