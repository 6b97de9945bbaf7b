import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from equissl.datasets.iebench import IEBenchDataset
from equissl.datasets.renderer import generate_iebench
from equissl.datasets.renderer.generate import plan_objects, split_objects
from equissl.datasets.renderer.scene import object_to_world
from equissl.datasets.renderer.shapes import SHAPES, make_shape
from equissl.datasets.validate import validate_iebench
from equissl.geometry import euler_xyz_to_matrix

TINY = dict(num_classes=2, objects_per_class=3, views=2, resolution=24, spp=2, workers=1,
            progress=False)


def latents_of(root):
    return {p.relative_to(root).as_posix(): np.load(p) for p in sorted(root.rglob("latent_*.npy"))}


def test_real_format(tmp_path):
    out = tmp_path / "gen"
    summary = generate_iebench(out, **TINY)
    assert summary["views"] == 12 and summary["rendered"] == 6
    images = np.load(out / "data" / "train_images.npy")
    labels = np.load(out / "data" / "train_labels.npy")
    assert images.dtype.kind == "U" and labels.dtype == np.int64
    assert all(e.startswith("/") and e.endswith("/") and e.count("/") == 3 for e in images)
    val = np.load(out / "data" / "val_images.npy")
    assert len(images) == 4 and len(val) == 2 and not set(images) & set(val)
    lat = np.load(out / images[0].strip("/") / "latent_1.npy")
    assert lat.dtype == np.float64 and lat.shape == (7,)
    assert np.all(np.abs(lat[:3]) <= np.pi / 2) and 0 <= lat[3] < 1 and 0 <= lat[4] <= np.pi / 4
    assert validate_iebench(out, progress=False).ok
    ds = IEBenchDataset(out, "train")
    assert ds[0]["views"].shape == (2, 3, 24, 24) and set(ds.labels.tolist()) == {0, 1}


def test_deterministic_chunked_and_resumable(tmp_path):
    full, parts = tmp_path / "full", tmp_path / "parts"
    generate_iebench(full, **TINY)
    a = generate_iebench(parts, chunk=0, num_chunks=2, **TINY)
    b = generate_iebench(parts, chunk=1, num_chunks=2, **TINY)
    assert a["objects"] + b["objects"] == 6
    la, lb = latents_of(full), latents_of(parts)
    assert la.keys() == lb.keys()
    assert all(np.array_equal(la[k], lb[k]) for k in la)
    again = generate_iebench(parts, **TINY)
    assert again["skipped"] == 6 and again["views"] == 0
    other = generate_iebench(tmp_path / "other", **{**TINY, "seed": 1})
    assert other["views"] == 12
    assert latents_of(tmp_path / "other").keys() != la.keys()


def test_translation_and_ood(tmp_path):
    generate_iebench(tmp_path / "t", translation=True, ood=True, **TINY)
    lats = np.stack(list(latents_of(tmp_path / "t").values()))
    assert lats.shape[1] == 10
    assert np.all(np.abs(lats[:, :3]) >= np.pi / 2) and np.all(np.abs(lats[:, :3]) <= np.pi)
    assert np.all(np.abs(lats[:, 7:]) <= 0.5)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="shape families"):
        generate_iebench(tmp_path / "x", **{**TINY, "num_classes": 99})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        generate_iebench(tmp_path / "x", mesh_root=tmp_path / "nowhere", **TINY)


def test_shapenet_mesh_tree(tmp_path):
    tree = tmp_path / "ShapeNet"
    for s, synset in enumerate(("02691156", "03001627")):
        for k in range(2):
            models = tree / synset / f"obj{k}" / "models"
            models.mkdir(parents=True)
            mesh = trimesh.creation.box(extents=(1 + s, 0.5, 0.2 + 0.1 * k))
            mesh.export(models / "model_normalized.obj")
    out = tmp_path / "fromtree"
    generate_iebench(out, mesh_root=tree, **{**TINY, "objects_per_class": 2})
    assert (out / "02691156" / "obj0" / "image_1.jpg").is_file()
    assert validate_iebench(out, progress=False).ok


def test_rotation_convention_matches_scipy():
    import mitsuba as mi

    from equissl.datasets.renderer.scene import select_variant

    select_variant()
    rng = np.random.default_rng(0)
    for _ in range(20):
        latent = np.concatenate([rng.uniform(-np.pi / 2, np.pi / 2, 3), rng.uniform(0, 1, 4),
                                 rng.uniform(-0.5, 0.5, 3)])
        m = object_to_world(latent)
        r = Rotation.from_euler("xyz", latent[:3]).as_matrix()
        np.testing.assert_allclose(m[:3, :3], r, atol=1e-12)
        import torch

        np.testing.assert_allclose(euler_xyz_to_matrix(torch.from_numpy(latent[:3])).numpy(), r,
                                   atol=1e-12)
        v = rng.normal(size=3)
        moved = mi.ScalarTransform4f(m.tolist()) @ mi.ScalarPoint3f(*v)
        np.testing.assert_allclose(np.array(moved), r @ v + latent[7:], atol=1e-5)


@pytest.mark.parametrize("family", SHAPES.names())
def test_shapes_have_no_rotational_symmetry(family):
    mesh = make_shape(family, np.random.default_rng(3))
    pts = mesh.sample(3000, seed=0) if hasattr(mesh, "sample") else mesh.vertices
    tree = cKDTree(pts)
    for axis in np.eye(3):
        for angle in (np.pi / 2, np.pi):
            moved = Rotation.from_rotvec(axis * angle).apply(pts)
            gap = np.mean(tree.query(moved)[0])
            assert gap > 0.02, f"{family} looks symmetric under {angle:.2f} rad about {axis}"
    assert np.linalg.norm(mesh.vertices, axis=1).max() == pytest.approx(0.85)


def test_intra_class_variation_and_splits():
    a = make_shape("chair", np.random.default_rng(1))
    b = make_shape("chair", np.random.default_rng(2))
    assert not np.allclose(a.bounds, b.bounds)
    specs = plan_objects(3, 5, seed=0)
    splits = split_objects(specs, 0.2, seed=0)
    assert len(splits["val"]) == 3 and len(splits["train"]) == 12
