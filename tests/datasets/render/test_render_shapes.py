"""Procedural shapes are closed, non-degenerate, varied, and have no rotational symmetry."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from equissl.datasets.render.meshes import OBJECT_RADIUS, normalize_mesh
from equissl.datasets.render.shapes import FAMILIES, build_shape

NAMES = [f.name for f in FAMILIES]


def shape(name: str, seed: int) -> trimesh.Trimesh:
    return normalize_mesh(build_shape(name, np.random.default_rng(seed)))


def symmetry_gap(mesh: trimesh.Trimesh, rotation: np.ndarray, n: int = 6000) -> float:
    """99th percentile distance from the rotated surface to the original (normalised units).

    Near the sampling spacing (~0.015) when ``rotation`` maps the shape onto itself.
    """
    pts = trimesh.sample.sample_surface(mesh, n, seed=0)[0]
    ref = trimesh.sample.sample_surface(mesh, 4 * n, seed=1)[0]
    centre = mesh.center_mass if mesh.is_volume else pts.mean(axis=0)
    moved = (pts - centre) @ rotation.T + centre
    return float(np.quantile(cKDTree(ref).query(moved)[0], 0.99))


def candidate_symmetries(mesh: trimesh.Trimesh) -> list[np.ndarray]:
    """180° turns about the principal axes and 90°/180° turns about the coordinate axes."""
    axes = trimesh.inertia.principal_axis(mesh.moment_inertia)[1]
    turns = [Rotation.from_rotvec(np.pi * a / np.linalg.norm(a)).as_matrix() for a in axes]
    for axis in np.eye(3):
        for angle in (np.pi / 2, np.pi):
            turns.append(Rotation.from_rotvec(angle * axis).as_matrix())
    return turns


@pytest.mark.parametrize("name", NAMES)
def test_closed_and_normalised(name):
    for seed in range(3):
        mesh = shape(name, seed)
        assert mesh.is_watertight and mesh.is_winding_consistent
        assert mesh.volume > 0.01
        assert np.all(np.isfinite(mesh.vertices))
        assert mesh.area_faces.min() > 1e-9  # no degenerate triangles
        assert np.allclose(mesh.bounds.mean(axis=0), 0, atol=1e-9)
        assert np.isclose(np.linalg.norm(mesh.vertices, axis=1).max(), OBJECT_RADIUS)
        assert len(mesh.faces) < 5000  # per-view vertex updates stay cheap


@pytest.mark.parametrize("name", NAMES)
def test_objects_of_a_class_differ(name):
    a, b = shape(name, 0), shape(name, 1)
    assert a.vertices.shape != b.vertices.shape or not np.allclose(a.vertices, b.vertices)
    assert np.array_equal(shape(name, 0).vertices, a.vertices)  # same rng, same mesh


@pytest.mark.parametrize("name", NAMES)
def test_no_rotational_symmetry(name):
    mesh = shape(name, 0)
    gaps = [symmetry_gap(mesh, r) for r in candidate_symmetries(mesh)]
    assert min(gaps) > 0.05, f"{name}: a rotation nearly maps it onto itself ({min(gaps):.3f})"


def test_the_symmetry_check_catches_symmetric_shapes():
    box = normalize_mesh(trimesh.creation.box((1.0, 0.6, 0.3)))
    cyl = normalize_mesh(trimesh.creation.cylinder(0.3, 1.0, sections=64))
    for mesh in (box, cyl):
        assert min(symmetry_gap(mesh, r) for r in candidate_symmetries(mesh)) < 0.025


def test_families_are_distinct():
    assert len(FAMILIES) >= 10 and len(set(NAMES)) == len(NAMES)
    synsets = [f.synset for f in FAMILIES]
    assert synsets == sorted(synsets) and all(len(s) == 8 and s.isdigit() for s in synsets)
    with pytest.raises(KeyError, match="unknown shape family"):
        build_shape("spaceship", np.random.default_rng(0))
