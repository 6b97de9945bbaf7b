"""``equissl-generate format=packed``: the renderer writes ``equissl-pack``'s shards directly,
byte for byte what rendering loose and packing gives (same seed), chunk by chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from equissl.apps.generate import main as generate_main
from equissl.apps.generate import parse
from equissl.apps.validate import main as validate_main
from equissl.datasets.base import build_dataset
from equissl.datasets.iebench import IEBenchDataset
from equissl.datasets.packed import SHARDS_DIR, PackSettings, pack_chunk
from equissl.datasets.render import generate_iebench
from equissl.datasets.validate_tree import validate_iebench
from tests.datasets.render.conftest import TINY


def shard_files(root: Path) -> dict[str, bytes]:
    """Every shard file and the index, by name (records hold no path or time)."""
    files = {p.name: p.read_bytes() for p in sorted((root / SHARDS_DIR).iterdir())}
    return {**files, "packed.json": (root / "packed.json").read_bytes()}


def assert_same_items(a: IEBenchDataset, b: IEBenchDataset) -> None:
    assert len(a) == len(b) and (a.labels == b.labels).all() and a.spec() == b.spec()
    for i in range(len(a)):
        x, y = a[(i, 100 + i)], b[(i, 100 + i)]
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), (i, key)


@pytest.fixture(scope="module")
def direct(tiny_dataset, tmp_path_factory) -> Path:
    """The tiny render written packed (same settings and seed as ``tiny_dataset``)."""
    out = tmp_path_factory.mktemp("direct") / "packed"
    summary = generate_iebench(out, **TINY, format="packed")
    assert summary["index"] == str(out / "packed.json") and summary["format"] == "packed"
    assert summary["rendered"] == summary["objects"] == 4
    assert summary["views_rendered"] == 8
    return out


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_same_shards_as_a_loose_render_packed(tiny_dataset, tiny, tmp_path, encoding):
    """Tolerance 0: the shard files are byte-identical, so are the items."""
    loose, _ = tiny_dataset
    packed = tmp_path / "packed"
    pack_chunk(loose, packed, PackSettings(encoding=encoding))
    direct = tmp_path / "direct"
    generate_iebench(direct, **tiny, format="packed", encoding=encoding)
    assert shard_files(direct) == shard_files(packed)
    for name in ("train_images.npy", "val_labels.npy", "render_config.json"):
        assert (direct / "data" / name).read_bytes() == (loose / "data" / name).read_bytes()
    for split in ("train", "val"):
        assert_same_items(IEBenchDataset(direct, split), IEBenchDataset(loose, split))


def test_chunks_make_the_same_shards_as_packing_in_chunks(tiny_dataset, direct, tiny, tmp_path):
    """Array-job chunks: one shard per split and chunk (the ranges of equissl-pack
    chunk=k num_chunks=n, byte for byte); the last chunk writes the index; a rerun skips."""
    loose, _ = tiny_dataset
    out = tmp_path / "chunks"
    summaries = [generate_iebench(out, **tiny, format="packed", chunk=k, num_chunks=3)
                 for k in (2, 0, 1)]  # fmt: skip
    assert [s["index"] is None for s in summaries] == [True, True, False]
    assert sum(s["rendered"] for s in summaries) == 4  # every object once
    again = generate_iebench(out, **tiny, format="packed", chunk=0, num_chunks=3)
    assert again["rendered"] == 0 and again["skipped"] == again["chunk_objects"]
    packed = tmp_path / "packed"
    for k in range(3):
        pack_chunk(loose, packed, PackSettings(chunk=k, num_chunks=3))
    assert shard_files(out) == shard_files(packed)
    ds = IEBenchDataset(out, "train")
    assert len(ds.store.names) == 3
    assert_same_items(ds, IEBenchDataset(direct, "train"))


def test_validator_accepts_it_and_names_a_damaged_shard(direct, tiny, tmp_path):
    report = validate_iebench(direct, progress=False)
    assert report.ok, report.summary()
    assert report.objects == 4 and report.files == 8
    assert validate_main([str(direct)]) == 0
    broken = tmp_path / "broken"
    generate_iebench(broken, **tiny, format="packed")
    binf = broken / SHARDS_DIR / "train-00000-of-00001.bin"
    offsets = np.load(broken / SHARDS_DIR / "train-00000-of-00001.offsets.npy")
    data = bytearray(binf.read_bytes())
    a, b = int(offsets[1]), int(offsets[2])
    data[a + 2 : b] = b"\0" * (b - a - 2)  # view 1 of object 0 damaged, size unchanged
    binf.write_bytes(bytes(data))
    report = validate_iebench(broken, progress=False)
    assert len(report.problems) == 1 and str(binf) in report.problems[0]
    assert "view 1" in report.problems[0]
    latents = broken / SHARDS_DIR / "val-00000-of-00001.latents.npy"
    np.save(latents, np.load(latents)[:, :1])
    assert any(str(latents) in p for p in validate_iebench(broken, progress=False).problems)


def test_bad_settings_and_the_command_line(tmp_path, tiny):
    with pytest.raises(ValueError, match="format='tar'"):
        generate_iebench(tmp_path / "a", **tiny, format="tar")
    with pytest.raises(ValueError, match="encoding='png'"):
        generate_iebench(tmp_path / "b", **tiny, format="packed", encoding="png")
    _, settings = parse([f"out={tmp_path / 'c'}", "format=packed", "encoding=raw"])
    assert settings["format"] == "packed" and settings["encoding"] == "raw"


def test_equissl_generate_writes_a_packed_root_the_trainer_reads(tmp_path, direct):
    out = tmp_path / "cli"
    args = [f"{k}={v}" for k, v in TINY.items() if k != "progress"]
    assert generate_main([f"out={out}", *args, "format=packed"]) == 0
    assert shard_files(out) == shard_files(direct)
    data, _ = parse([f"out={out}"])
    ds = build_dataset({**data, "format": "auto"}, "train", 2)
    assert type(ds.store).__name__ == "PackedStore"


@pytest.mark.slow  # spawns two render processes (~20 s on the shared 2-core machine)
def test_process_pool_writes_the_same_shards(direct, tiny, tmp_path):
    """Results of parallel workers go into the shard in split order."""
    out = tmp_path / "pooled"
    summary = generate_iebench(out, **{**tiny, "workers": 2}, format="packed")
    assert summary["workers"] == 2
    assert shard_files(out) == shard_files(direct)
