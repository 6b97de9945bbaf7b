"""generate_iebench writes the exact 3DIEBench format, deterministically, in chunks, resumably."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from equissl.datasets.render import catalog_for, generate_iebench
from equissl.datasets.render.catalog import chunk_of, split_catalog
from equissl.datasets.render.latents import (
    LATENT_DIM,
    LATENT_DIM_TRANSLATION,
    SPOT_THETA_RANGE,
)
from equissl.datasets.render.shapes import FAMILIES
from equissl.datasets.render.worker import object_latents
from equissl.datasets.validate_tree import validate_iebench

_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def object_dirs(root: Path) -> list[str]:
    return sorted(p.parent.relative_to(root).as_posix() for p in root.glob("*/*/latent_0.npy"))


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=float)


def all_latents(root: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(root).as_posix(): np.load(p) for p in sorted(root.rglob("latent_*.npy"))}


def test_tree_files_and_dtypes(tiny_dataset):
    out, summary = tiny_dataset
    assert summary["objects"] == 4 and summary["rendered"] == 4 and summary["skipped"] == 0
    assert summary["views_rendered"] == 8 and summary["variant"].endswith("_rgb")
    synsets = sorted(p.name for p in out.iterdir() if p.name != "data")
    assert synsets == [FAMILIES[0].synset, FAMILIES[1].synset]
    assert all(re.fullmatch(r"\d{8}", s) for s in synsets)
    for obj in object_dirs(out):
        d = out / obj
        assert _HEX32.match(d.name)
        names = sorted(p.name for p in d.iterdir())
        assert names == ["image_0.jpg", "image_1.jpg", "latent_0.npy", "latent_1.npy"]
        with Image.open(d / "image_1.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (32, 32)
            assert np.asarray(im).std() > 5  # not a blank frame
        lat = np.load(d / "latent_0.npy", allow_pickle=False)
        assert lat.dtype == np.float64 and lat.shape == (LATENT_DIM,)


def test_latent_ranges(tiny_dataset):
    out, _ = tiny_dataset
    lat = np.stack(list(all_latents(out).values()))
    assert np.all(np.abs(lat[:, :3]) <= np.pi / 2)
    assert np.all((lat[:, 3] >= 0) & (lat[:, 3] < 1)) and np.all((lat[:, 6] >= 0) & (lat[:, 6] < 1))
    assert np.all((lat[:, 4] >= 0) & (lat[:, 4] <= SPOT_THETA_RANGE[1]))
    assert np.all((lat[:, 5] >= 0) & (lat[:, 5] <= 2 * np.pi))


def test_split_files(tiny_dataset, tiny):
    out, _ = tiny_dataset
    data = out / "data"
    train, val = np.load(data / "train_images.npy"), np.load(data / "val_images.npy")
    ytrain, yval = np.load(data / "train_labels.npy"), np.load(data / "val_labels.npy")
    for images, labels in ((train, ytrain), (val, yval)):
        assert images.dtype.kind == "U" and images.ndim == 1
        assert labels.dtype == np.int64 and labels.shape == images.shape
        for entry, label in zip(images, labels, strict=True):
            assert entry.startswith("/") and entry.endswith("/") and entry.count("/") == 3
            synset = entry.strip("/").split("/")[0]
            assert label == [f.synset for f in FAMILIES].index(synset)
    assert sorted(e.strip("/") for e in np.concatenate([train, val])) == object_dirs(out)
    assert not set(train) & set(val)
    assert sorted(yval.tolist()) == [0, 1]  # ≥ 1 val object per class of 2
    config = json.loads((data / "render_config.json").read_text())
    assert config["seed"] == tiny["seed"] and config["views"] == 2


def test_the_project_reader_accepts_it(tiny_dataset):
    out, _ = tiny_dataset
    report = validate_iebench(out, progress=False, workers=2)
    assert report.ok, report.summary()
    assert report.objects == 4


def test_same_seed_same_data_other_seed_other_data(tiny_dataset, tmp_path, tiny):
    out, _ = tiny_dataset
    again = tmp_path / "again"
    generate_iebench(again, **tiny)
    first, second = all_latents(out), all_latents(again)
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    for name in ("train_images.npy", "val_images.npy", "train_labels.npy"):
        assert np.array_equal(np.load(out / "data" / name), np.load(again / "data" / name))
    other = catalog_for(2, 2, seed=tiny["seed"] + 1)
    assert {s.obj_id for s in other}.isdisjoint({Path(k).parent.name for k in first})
    spec = catalog_for(2, 2, seed=tiny["seed"])[0]
    expected = object_latents(spec, tiny["seed"], 2, translation=False, ood=False)
    assert np.array_equal(np.load(out / spec.synset / spec.obj_id / "latent_1.npy"), expected[1])


def test_chunks_are_disjoint_and_cover_everything(tiny_dataset, tmp_path, tiny):
    out, _ = tiny_dataset
    shards = tmp_path / "shards"
    rendered = []
    for k in range(3):
        summary = generate_iebench(shards, **tiny, chunk=k, num_chunks=3)
        rendered.append(summary["rendered"])
    assert rendered == [2, 1, 1]
    assert object_dirs(shards) == object_dirs(out)
    assert all_latents(shards).keys() == all_latents(out).keys()
    assert np.array_equal(
        np.load(shards / "data" / "val_images.npy"), np.load(out / "data" / "val_images.npy")
    )
    specs = catalog_for(5, 7, seed=0)
    parts = [chunk_of(specs, k, 4) for k in range(4)]
    ids = [s.entry for part in parts for s in part]
    assert len(ids) == len(set(ids)) == len(specs)
    with pytest.raises(ValueError, match="chunk"):
        chunk_of(specs, 4, 4)


def test_resume_skips_complete_objects_and_repairs_broken_ones(tmp_path, tiny):
    out = tmp_path / "resume"
    generate_iebench(out, **tiny)
    again = generate_iebench(out, **tiny)
    assert again["skipped"] == 4 and again["rendered"] == 0 and again["views_rendered"] == 0
    obj = out / object_dirs(out)[1]
    reference = np.load(obj / "latent_1.npy")
    (obj / "image_1.jpg").unlink()  # a view lost
    (obj / "latent_1.npy").write_bytes(b"")  # a zero-length file (crash before the flush)
    (obj / ".image_1.jpg.123.tmp").write_bytes(b"\xff\xd8 truncated")  # a killed writer's temp
    fixed = generate_iebench(out, **tiny)
    assert fixed["rendered"] == 1 and fixed["views_rendered"] == 1 and fixed["skipped"] == 3
    assert np.array_equal(np.load(obj / "latent_1.npy"), reference)
    assert sorted(p.name for p in obj.iterdir()) == [
        "image_0.jpg",
        "image_1.jpg",
        "latent_0.npy",
        "latent_1.npy",
    ]


def test_other_settings_in_the_same_folder_are_refused(tiny_dataset, tiny):
    out, _ = tiny_dataset
    with pytest.raises(ValueError, match="resolution: 32 -> 64"):
        generate_iebench(out, **{**tiny, "resolution": 64})


def test_translation_and_ood(tmp_path, tiny):
    out = tmp_path / "t"
    generate_iebench(out, **{**tiny, "num_classes": 1, "translation": True, "ood": True})
    lat = np.stack(list(all_latents(out).values()))
    assert lat.shape == (4, LATENT_DIM_TRANSLATION) and lat.dtype == np.float64
    assert np.all((np.abs(lat[:, :3]) >= np.pi / 2) & (np.abs(lat[:, :3]) <= np.pi))
    assert np.all(np.abs(lat[:, 7:]) <= 0.5)


def test_clear_errors(tmp_path, tiny):
    with pytest.raises(ValueError, match=f"at most {len(FAMILIES)}"):
        generate_iebench(tmp_path / "x", **{**tiny, "num_classes": len(FAMILIES) + 1})
    missing = tmp_path / "no_such_meshes"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        generate_iebench(tmp_path / "y", **tiny, mesh_root=missing)
    empty = tmp_path / "empty_meshes"
    (empty / "02691156" / "abc").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no meshes"):
        generate_iebench(tmp_path / "z", **tiny, mesh_root=empty)
    with pytest.raises(ValueError, match="views"):
        generate_iebench(tmp_path / "w", **{**tiny, "views": 0})


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 40])
def test_split_fractions(n):
    specs = catalog_for(2, n, seed=0)
    split = split_catalog(specs, seed=0, val_fraction=0.2)
    for c in (0, 1):
        n_val = sum(s.class_index == c for s in split["val"])
        assert n_val == (0 if n == 1 else max(1, round(0.2 * n)))
    assert split == split_catalog(specs, seed=0, val_fraction=0.2)
    assert len(split["train"]) + len(split["val"]) == len(specs)


@pytest.mark.e2e  # several seconds (processes): the e2e tier, which CI runs
def test_process_pool_matches_in_process(tiny_dataset, tmp_path, tiny):
    out, _ = tiny_dataset
    pooled = tmp_path / "pooled"
    summary = generate_iebench(pooled, **{**tiny, "workers": 2})
    assert summary["workers"] == 2 and summary["rendered"] == 4
    a, b = all_latents(out), all_latents(pooled)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for obj in object_dirs(out):  # same sampler seeds: same pixels up to JPEG noise
        diff = np.abs(read_rgb(out / obj / "image_0.jpg") - read_rgb(pooled / obj / "image_0.jpg"))
        assert diff.mean() < 2.0
    shutil.rmtree(pooled)
