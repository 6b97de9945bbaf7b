"""The feature cache's key confirms a loose tree cheaply (``eval.data_check=folders``: a few
system calls per object folder, not one per file) and still changes with the data: a
replaced image, a new or removed view, a changed split file, view 0's files rewritten in
place. What it trusts is tested too: another file overwritten in place under its own name is
seen by ``eval.data_check=files`` only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from equissl.datasets.iebench import IEBenchDataset
from equissl.eval.evaluate import data_check
from equissl.eval.features import cache_key

YEAR_AGO_NS = 1_700_000_000 * 10**9


def age(root: Path) -> None:
    """Set every file's and folder's times a year back (a tree written long before it is
    evaluated; a change made within the same clock tick as the tree's writing keeps the
    folder's mtime on file systems with coarse timestamps)."""
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):  # files before folders
        os.utime(path, ns=(YEAR_AGO_NS, YEAR_AGO_NS))


def key(ds: IEBenchDataset, check: str = "folders") -> str:
    """The cache key of ``ds``'s data as they are on disk now (the manifest reads the tree
    on each call; a dataset built after some of these changes would refuse the tree)."""
    return cache_key("ckpt", ds.full_manifest() if check == "files" else ds.manifest(), {})


def first_object(root: Path) -> Path:
    return root / str(np.load(root / "data" / "train_images.npy")[0]).strip("/")


def replace_image(root: Path) -> None:
    """A new file moved over ``image_3.jpg`` (how mv, rsync and atomic writers replace)."""
    obj = first_object(root)
    new = root.parent / "new.jpg"
    shutil.copyfile(obj / "image_1.jpg", new)
    os.replace(new, obj / "image_3.jpg")


def add_view(root: Path) -> None:
    obj = first_object(root)
    shutil.copyfile(obj / "image_0.jpg", obj / "image_5.jpg")
    shutil.copyfile(obj / "latent_0.npy", obj / "latent_5.npy")


def remove_view(root: Path) -> None:
    obj = first_object(root)
    (obj / "image_4.jpg").unlink()
    (obj / "latent_4.npy").unlink()


def change_split_file(root: Path) -> None:
    """The same objects in another order: another split, same files."""
    for suffix in ("images", "labels"):
        f = root / "data" / f"train_{suffix}.npy"
        np.save(f, np.load(f)[::-1])


def rewrite_view0_in_place(root: Path) -> None:
    """``np.save`` onto view 0's latent: same file, same size, new content and mtime."""
    f = first_object(root) / "latent_0.npy"
    np.save(f, np.load(f) + 0.5)


def rewrite_image0_in_place(root: Path) -> None:
    f = first_object(root) / "image_0.jpg"
    with open(f, "r+b") as out:  # truncate-free overwrite of a few bytes
        out.seek(200)
        out.write(b"\x00" * 8)


CHANGES = [
    replace_image,
    add_view,
    remove_view,
    change_split_file,
    rewrite_view0_in_place,
    rewrite_image0_in_place,
]


@pytest.mark.parametrize("check", ["folders", "files"])
@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__)
def test_a_data_change_changes_the_key(iebench_tree, change, check):
    age(iebench_tree)
    ds = IEBenchDataset(iebench_tree, "train")
    before = key(ds, check)
    assert key(IEBenchDataset(iebench_tree, "train"), check) == before  # unchanged: same key
    change(iebench_tree)
    assert key(ds, check) != before


def test_what_folders_trusts_and_files_sees(iebench_tree):
    """Another view's file overwritten in place under its own name leaves its folder as it
    was: ``folders`` keeps the key, ``files`` changes it."""
    age(iebench_tree)
    ds = IEBenchDataset(iebench_tree, "train")
    before = {c: key(ds, c) for c in ("folders", "files")}
    f = first_object(iebench_tree) / "latent_3.npy"
    np.save(f, np.load(f) + 0.5)
    assert key(ds, "folders") == before["folders"]
    assert key(ds, "files") != before["files"]


def test_folders_costs_three_stats_per_object_not_one_per_file(iebench_tree, monkeypatch):
    ds = IEBenchDataset(iebench_tree, "train")
    calls = []
    real_stat = os.stat

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    lines = list(ds.manifest())
    files = sum(len(os.listdir(iebench_tree / e)) for e in ds.split.entries)
    assert len(calls) == 3 * len(ds) < files  # the folder and view 0's image and latent
    assert len(lines) == len(ds) + 3  # split files, settings, one line per object


def test_data_check_is_checked():
    assert data_check({}) == "folders" and data_check({"data_check": "files"}) == "files"
    with pytest.raises(ValueError, match="eval.data_check='file'"):
        data_check({"data_check": "file"})
