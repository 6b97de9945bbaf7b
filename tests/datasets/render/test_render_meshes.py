"""A user's ShapeNet-layout mesh tree as the object source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from equissl.datasets.render import generate_iebench
from equissl.datasets.render.catalog import mesh_tree_catalog
from equissl.datasets.render.meshes import (
    OBJECT_RADIUS,
    load_mesh_file,
    normalize_mesh,
    scan_mesh_tree,
)
from equissl.datasets.render.worker import object_mesh


def write_tree(root: Path) -> Path:
    """Two synsets: OBJ files (one rod along y, ShapeNet's up axis) and a GLB file."""
    rod = trimesh.creation.box((0.2, 1.0, 0.3))  # long along y
    for k, obj_id in enumerate(("1a2b", "0f9e")):
        d = root / "03001627" / obj_id / "models"
        d.mkdir(parents=True)
        rod.copy().apply_translation((k, 5, -2)).export(d / "model_normalized.obj")
    glb_dir = root / "02691156" / "c0ffee" / "models"
    glb_dir.mkdir(parents=True)
    trimesh.creation.capsule(0.8, 0.2).export(glb_dir / "plane.glb")
    (root / "02691156" / "no_models_here").mkdir()
    return root


def test_scan_and_catalog(tmp_path):
    root = write_tree(tmp_path / "shapenet")
    tree = scan_mesh_tree(root)
    assert sorted(tree) == ["02691156", "03001627"]
    assert [obj for obj, _ in tree["03001627"]] == ["0f9e", "1a2b"]
    specs = mesh_tree_catalog(root, 0, 0)
    assert [(s.class_index, s.synset, s.obj_id) for s in specs] == [
        (0, "02691156", "c0ffee"),
        (1, "03001627", "0f9e"),
        (1, "03001627", "1a2b"),
    ]
    assert len(mesh_tree_catalog(root, 1, 1)) == 1
    with pytest.raises(ValueError, match="holds only 2 synsets"):
        mesh_tree_catalog(root, 3, 1)


def test_y_up_files_stand_up_and_are_normalised(tmp_path):
    root = write_tree(tmp_path / "shapenet")
    spec = mesh_tree_catalog(root, 0, 0)[1]
    mesh = object_mesh(spec, seed=0, mesh_up="y")
    assert np.argmax(mesh.extents) == 2  # the file's +y is our +z
    assert np.isclose(np.linalg.norm(mesh.vertices, axis=1).max(), OBJECT_RADIUS)
    assert np.allclose(mesh.bounds.mean(axis=0), 0, atol=1e-9)
    raw = load_mesh_file(spec.mesh_file, up="z")
    assert np.argmax(raw.extents) == 1
    with pytest.raises(ValueError, match="up axis"):
        load_mesh_file(spec.mesh_file, up="x")


def test_render_a_mesh_tree(tmp_path):
    root = write_tree(tmp_path / "shapenet")
    out = tmp_path / "out"
    summary = generate_iebench(
        out,
        num_classes=2,
        objects_per_class=5,
        views=1,
        resolution=16,
        spp=2,
        mesh_root=root,
        workers=1,
        progress=False,
    )
    assert summary["objects"] == 3 and summary["rendered"] == 3
    assert (out / "03001627" / "1a2b" / "image_0.jpg").is_file()
    assert (out / "02691156" / "c0ffee" / "latent_0.npy").is_file()
    images = np.concatenate([np.load(out / "data" / f"{s}_images.npy") for s in ("train", "val")])
    labels = np.concatenate([np.load(out / "data" / f"{s}_labels.npy") for s in ("train", "val")])
    assert dict(zip(images.tolist(), labels.tolist(), strict=True)) == {
        "/02691156/c0ffee/": 0,
        "/03001627/0f9e/": 1,
        "/03001627/1a2b/": 1,
    }


def test_bad_mesh_files_are_named(tmp_path):
    bad = tmp_path / "broken.obj"
    bad.write_text("this is not a mesh\n")
    with pytest.raises(ValueError, match="broken.obj"):
        load_mesh_file(bad)
    with pytest.raises(ValueError, match="degenerate"):
        normalize_mesh(trimesh.Trimesh(np.zeros((3, 3)), [[0, 1, 2]], process=False))
