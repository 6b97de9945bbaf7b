"""``write_shard`` streams its index: the files are byte for byte what ``np.save`` of the
whole arrays writes (the format every reader knows), and memory does not grow with the
number of objects in a chunk."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from equissl.datasets.iebench_format import DatasetFormatError, Split, load_split
from equissl.datasets.packed import (
    SHARDS_DIR,
    PackSettings,
    ShardObject,
    chunk_range,
    pack_chunk,
    shard_name,
    write_shard,
)


def saved(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize("num_chunks", [1, 5, 13])  # 13 chunks of 9 objects: empty chunks
def test_the_index_is_what_np_save_of_the_whole_arrays_writes(iebench_tree, tmp_path, num_chunks):
    out = tmp_path / "packed"
    for k in range(num_chunks):
        pack_chunk(iebench_tree, out, PackSettings(chunk=k, num_chunks=num_chunks, verify=False))
    for split_name in ("train", "val"):
        split = load_split(iebench_tree, split_name)
        for k in range(num_chunks):
            start, stop = chunk_range(len(split), k, num_chunks)
            base = out / SHARDS_DIR / shard_name(split_name, k, num_chunks)
            images, rows = [], []
            for entry in split.entries[start:stop]:
                for v in range(5):
                    images.append((iebench_tree / entry / f"image_{v}.jpg").read_bytes())
                    rows.append(np.load(iebench_tree / entry / f"latent_{v}.npy"))
            sizes = [len(b) for b in images]
            offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            latents = np.stack(rows).reshape(stop - start, 5, 7) if rows else np.zeros((0, 0, 0))
            assert Path(f"{base}.bin").read_bytes() == b"".join(images)
            assert Path(f"{base}.offsets.npy").read_bytes() == saved(offsets)
            assert Path(f"{base}.latents.npy").read_bytes() == saved(latents)


def objects(n: int, views: int = 50, dim: int = 7):
    """``n`` objects of tiny payloads (no decoding: ``verify=False``)."""
    lat = np.arange(views * dim, dtype=np.float64).reshape(views, dim)
    for i in range(n):
        yield ShardObject(f"object {i}", [b"x" * (1 + (i + v) % 7) for v in range(views)], lat)


def split_of(n: int) -> Split:
    return Split([f"s/{i:06d}" for i in range(n)], np.zeros(n, np.int64), Path("train_images.npy"))


def peak_bytes(tmp_path: Path, n: int) -> int:
    split = split_of(n)  # the split's entries are the caller's (and grow with it)
    tracemalloc.start()
    try:
        write_shard(tmp_path / f"n{n}", split, "train-00000-of-00001", 0, n, objects(n),
                    verify=False)  # fmt: skip
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_chunk(tmp_path):
    """4,000 objects x 50 views: their offsets and latents (11 MB as arrays, more as Python
    lists) are never held at once; the traced peak is that of 200 objects."""
    small, large = peak_bytes(tmp_path, 200), peak_bytes(tmp_path, 4000)
    assert large < small + 256 * 1024, (small, large)
    lat = np.load(tmp_path / "n4000" / SHARDS_DIR / "train-00000-of-00001.latents.npy")
    assert lat.shape == (4000, 50, 7) and (lat[-1] == lat[0]).all()


def test_another_number_of_objects_than_the_chunk_is_refused(tmp_path):
    with pytest.raises(DatasetFormatError, match="received 3 objects"):
        write_shard(tmp_path, split_of(4), "train-x", 0, 4, objects(3), verify=False)
    with pytest.raises(DatasetFormatError, match="more objects than the 2"):
        write_shard(tmp_path, split_of(4), "train-x", 0, 2, objects(3), verify=False)
    with pytest.raises(DatasetFormatError, match="latent lengths \\[7, 10\\] differ"):
        mixed = [*objects(1), *objects(1, dim=10)]
        write_shard(tmp_path, split_of(2), "train-x", 0, 2, mixed, verify=False)
    assert not list((tmp_path / SHARDS_DIR).iterdir())  # nothing left behind
