"""Packed shards (``equissl-pack``): the same items as the loose tree, the same sampler, named
errors (equissl.datasets.packed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from equissl.apps.pack import main as pack_main
from equissl.datasets.iebench import IEBenchDataset
from equissl.datasets.iebench_format import DatasetFormatError, read_image
from equissl.datasets.packed import PackSettings, pack_chunk, write_index
from equissl.training.sampler import ResumableSampler, build_train_loader


def pack(root: Path, out: Path, **settings) -> dict:
    return pack_chunk(root, out, PackSettings(**settings))


def assert_same_item(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture
def packed(iebench_tree: Path, tmp_path: Path) -> Path:
    out = tmp_path / "packed"
    assert pack(iebench_tree, out)["index"] == str(out / "packed.json")
    return out


def test_shared_decoder_matches_pil(iebench_tree):
    """The one decoder of both readers gives PIL's pixels on these JPEGs (tolerance 0)."""
    for path in sorted(iebench_tree.glob("*/*/image_*.jpg"))[:10]:
        with Image.open(path) as img:
            ref = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)
        assert torch.equal(read_image(path), ref), path


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_same_items_as_loose_tree(iebench_tree, tmp_path, encoding):
    out = tmp_path / encoding
    pack(iebench_tree, out, encoding=encoding)
    for split in ("train", "val"):
        loose = IEBenchDataset(iebench_tree, split, num_views=3, image_size=24)
        packed = IEBenchDataset(out, split, num_views=3, image_size=24)  # auto-detected
        assert type(packed.store).__name__ == "PackedStore"
        assert type(loose.store).__name__ == "LooseStore"
        assert len(packed) == len(loose) and (packed.labels == loose.labels).all()
        assert packed.spec() == loose.spec()
        assert packed.views_per_object == loose.views_per_object == 5
        for i in range(len(loose)):
            key = (i, 1000 + i)
            assert_same_item(packed[key], loose[key])
        ev_l, ev_p = loose.evaluation_views(8, 0), packed.evaluation_views(8, 0)
        assert len(ev_l) == len(ev_p)
        assert_same_item(ev_p[len(ev_p) - 1], ev_l[len(ev_l) - 1])


def test_two_rank_sampler_yields_the_same_batches(iebench_tree, packed):
    loose = IEBenchDataset(iebench_tree, "train", num_views=2)
    pds = IEBenchDataset(packed, "train", num_views=2)
    for rank in (0, 1):
        keys = list(ResumableSampler(len(loose), 2, seed=7, rank=rank, world_size=2))
        a = [loose[k] for k in keys]
        b = [pds[k] for k in keys]
        for x, y in zip(a, b, strict=True):
            assert_same_item(x, y)
    # through the training loader, with a worker process mapping the shards itself
    la = build_train_loader(loose, 2, num_workers=0, seed=7, rank=1, world_size=2)
    lb = build_train_loader(pds, 2, num_workers=1, seed=7, rank=1, world_size=2)
    for x, y in zip(la, lb, strict=True):
        assert_same_item(x, y)


def test_chunked_packing_is_resumable_and_equal(iebench_tree, packed, tmp_path, capsys):
    out = tmp_path / "chunks"
    first = pack(iebench_tree, out, chunk=2, num_chunks=3)
    assert first["index"] is None and not (out / "packed.json").exists()
    with pytest.raises(DatasetFormatError, match="chunk 0 of 3 of split 'train'"):
        write_index(out, ("train", "val"), 3)
    assert pack(iebench_tree, out, chunk=0, num_chunks=3)["index"] is None
    again = pack(iebench_tree, out, chunk=2, num_chunks=3)  # a requeued task: nothing to do
    assert again["packed"] == [] and len(again["skipped"]) == 2
    assert pack(iebench_tree, out, chunk=1, num_chunks=3)["index"] == str(out / "packed.json")
    assert pack_main([str(iebench_tree), str(out), "index_only=true", "num_chunks=3"]) == 0
    whole = IEBenchDataset(packed, "train", num_views=2)
    chunked = IEBenchDataset(out, "train", num_views=2)
    assert len(chunked.store.names) == 3
    for i in range(len(whole)):
        assert_same_item(chunked[(i, i)], whole[(i, i)])


@pytest.mark.slow  # two short training runs (~60 s on the shared 2-core machine)
def test_training_run_is_identical_on_packed_data(iebench_tree, packed, tmp_path):
    from equissl.training.pretrain import pretrain
    from tests.reliability.ft_helpers import assert_same_state, compose_pretrain, fast_args

    ckpts = [
        pretrain(compose_pretrain(fast_args(root, 3, f"data.format={fmt}")), tmp_path / fmt)
        for root, fmt in ((iebench_tree, "loose"), (packed, "packed"))
    ]
    assert_same_state(*ckpts)


def test_missing_and_corrupt_shards_are_named(iebench_tree, packed):
    shards = packed / "packed"
    binf = shards / "train-00000-of-00001.bin"
    data = bytearray(binf.read_bytes())
    offsets = np.load(shards / "train-00000-of-00001.offsets.npy")
    a, b = int(offsets[6]), int(offsets[7])  # object 1, view 1
    data[a + 2 : b] = b"\x00" * (b - a - 2)  # damaged payload, size unchanged
    binf.write_bytes(bytes(data))
    ds = IEBenchDataset(packed, "train")
    with pytest.raises(DatasetFormatError, match=f"view 1 in shard file {binf}"):
        ds.load(1, [1])
    ds.load(0, [0, 4])  # the other views still read
    binf.write_bytes(bytes(data[:-10]))
    with pytest.raises(DatasetFormatError, match=f"shard file {binf} has"):
        IEBenchDataset(packed, "train")
    binf.unlink()
    with pytest.raises(DatasetFormatError, match=f"shard file {binf} not found"):
        IEBenchDataset(packed, "train")
    IEBenchDataset(packed, "val")  # the other split is intact
    (packed / "packed.json").unlink()
    with pytest.raises(DatasetFormatError, match="packed.json not found"):
        IEBenchDataset(packed, "val", data_format="packed")
    with pytest.raises(ValueError, match="data.format='tar'"):
        IEBenchDataset(iebench_tree, "val", data_format="tar")


def test_split_file_changed_after_packing(packed):
    images = packed / "data" / "train_images.npy"
    np.save(images, np.load(images)[::-1])
    with pytest.raises(DatasetFormatError, match=f"split file {images}"):
        IEBenchDataset(packed, "train")


def test_bad_source_is_named_and_command_line(iebench_tree, tmp_path, capsys):
    ds = IEBenchDataset(iebench_tree, "val")
    bad = iebench_tree / ds.split.entries[1] / "image_3.jpg"
    bad.write_bytes(b"not a jpeg")
    assert pack_main([str(iebench_tree), str(tmp_path / "o"), "splits=val"]) == 1
    assert str(bad) in capsys.readouterr().out
    assert pack_main([str(iebench_tree)]) == 2
    assert pack_main([str(iebench_tree), str(tmp_path / "o"), "chunks=3"]) == 2
    assert pack_main([str(iebench_tree), str(tmp_path / "o"), "chunk=3", "num_chunks=3"]) == 1


def test_index_records_the_format(packed):
    index = json.loads((packed / "packed.json").read_text())
    assert index["views"] == 5 and index["latent_dim"] == 7 and index["encoding"] == "jpeg"
    assert index["image_shape"] == [3, 32, 32]
    assert index["splits"]["train"]["objects"] == 9
    with Image.open(io.BytesIO((packed / "packed" / "val-00000-of-00001.bin").read_bytes())):
        pass  # the blob starts with the first view's JPEG file, byte for byte


def test_a_nan_latent_is_named_with_its_object_view_and_shard(packed):
    from equissl.datasets.packed import PackedStore, check_packed

    shard = next((packed / "packed").glob("train-*.latents.npy"))
    lat = np.load(shard)
    lat[1, 2, 0] = np.nan
    np.save(shard, lat)
    store = PackedStore(packed, "train")
    store.latents(0, [0, 1])  # a good object still reads
    with pytest.raises(DatasetFormatError) as err:
        store.latents(1, [0, 2])
    message = str(err.value)
    assert store.split.entries[1] in message and "[2]" in message and shard.name in message
    problems = check_packed(packed, "train")[2]
    assert any(store.split.entries[1] in p and "view 2" in p for p in problems)


@pytest.mark.parametrize("name", ["../../outside", "/etc/passwd", "..", ""])
def test_an_index_may_only_name_its_own_shards(packed, name):
    import json

    from equissl.datasets.packed import PackedStore

    index = json.loads((packed / "packed.json").read_text())
    index["splits"]["train"]["shards"][0]["shard"] = name
    (packed / "packed.json").write_text(json.dumps(index))
    with pytest.raises(DatasetFormatError, match="not plain file names"):
        PackedStore(packed, "train")
