"""What memory reading packed shards costs (docs/packed_shards.md, "Memory"): the shard pages a
process reads are mapped into it (file-backed, counted in its RSS as ``RssFile``), at most
``MAPPED_BUDGET`` bytes of them at a time; anonymous memory does not grow with the data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from equissl.datasets import packed
from equissl.datasets.iebench_format import load_split
from equissl.datasets.packed import PackedStore, ShardObject, write_index, write_shard

OBJECTS, VIEWS = 1000, 16  # 16,000 raw 16 px views: a 12 MB blob


def status() -> dict[str, int]:
    """``RssAnon`` and ``RssFile`` of this process, kB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("RssAnon", "RssFile"):
            out[key] = int(line.split()[1])
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed_memory")
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(8):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
        pool.append(buf.getvalue())
    (out / "data").mkdir()
    entries = np.array([f"/s/{i:06d}/" for i in range(OBJECTS)])
    np.save(out / "data" / "train_images.npy", entries)
    np.save(out / "data" / "train_labels.npy", np.zeros(OBJECTS, np.int64))
    split = load_split(out, "train")
    lat = np.zeros((VIEWS, 7))
    objects = (ShardObject(e, [pool[(i + v) % 8] for v in range(VIEWS)], lat)
               for i, e in enumerate(split.entries))  # fmt: skip
    write_shard(out, split, "train-00000-of-00001", 0, OBJECTS, objects, encoding="raw")
    write_index(out, ["train"], 1)
    return out


def growth_reading_everything(root: Path) -> dict[str, int]:
    store = PackedStore(root, "train")
    store.image(0, 0)
    store.latents(0, [0])  # torch imported, maps opened
    before = status()
    for i in range(OBJECTS):
        store.latents(i, range(VIEWS))
        for v in range(VIEWS):
            store.image(i, v)
    after = status()
    return {k: after[k] - before[k] for k in after}


def test_read_pages_are_mapped_up_to_the_budget(shards, monkeypatch):
    """Without a budget every page read stays mapped (the whole blob after an epoch); with
    one, at most the budget (each read charged its bytes and the 64 KiB fault-around)."""
    blob_kb = (shards / "packed" / "train-00000-of-00001.bin").stat().st_size // 1024
    monkeypatch.setattr(packed, "MAPPED_BUDGET", 2**62)
    whole = growth_reading_everything(shards)
    assert whole["RssFile"] > 0.8 * blob_kb, whole
    monkeypatch.setattr(packed, "MAPPED_BUDGET", 2 * 2**20)
    bounded = growth_reading_everything(shards)
    assert bounded["RssFile"] < 4 * 1024, bounded  # the budget and one fault-around
    for grown in (whole, bounded):
        assert grown["RssAnon"] < 8 * 1024, grown  # nothing of the data stays in the process
