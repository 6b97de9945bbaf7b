"""The streamed feature cache: equal to in-memory extraction, written batch by batch, never
trusted when unfinished or damaged, float16 storage with float32 probes."""

from __future__ import annotations

import json
import logging
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from equissl.eval.features import (
    MANIFEST,
    FeatureSet,
    cache_key,
    cached_features,
    extract_features,
    load_features,
)
from equissl.eval.probes.pair_regression import pair_regression_probe

N, V, P = 11, 3, 4  # objects, views, latent size


class Views:
    """Object-major one-view items (``views [1, 2]``), as ``evaluation_views`` returns."""

    def __init__(self, n: int, v: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.views_per_object = v
        self.x = torch.randn(n * v, 1, 2, generator=gen)
        self.lat = torch.randn(n * v, 1, P, generator=gen)
        self.labels = torch.arange(n) % 3
        self.coeffs = torch.randn(n, 2, generator=gen)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        o = i // self.views_per_object
        return {
            "views": self.x[i],
            "latents": self.lat[i],
            "label": self.labels[o],
            "coeffs": self.coeffs[o],
            "index": torch.tensor(100 + o),
        }


class ToyData:
    """The part of a ViewDataset extraction uses."""

    split_name = "toy"

    def __init__(self, n: int = N, v: int = V, seed: int = 0) -> None:
        self.n, self.v, self.seed = n, v, seed

    def __len__(self) -> int:
        return self.n

    def evaluation_views(self, views_per_object: int, seed: int) -> Views:
        return Views(self.n, self.v, self.seed)


class ToyMethod(nn.Module):
    """Two parts of different widths from a random MLP, and a sequence part (the mean)."""

    sequence_representation = True

    def __init__(self, width: int = 5, scale: float = 1.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, width + 3))
        self.width, self.scale, self.calls = width, scale, 0

    def represent(self, x: Tensor) -> dict[str, Tensor]:
        self.calls += 1
        h = self.net(x.flatten(1)) * self.scale
        return {"inv": h[:, : self.width], "equi": h[:, self.width :]}

    def represent_sequence(self, views: Tensor, latents: Tensor) -> dict[str, Tensor]:
        return {
            "inv": self.represent(views.flatten(0, 1))["inv"].view(*views.shape[:2], -1).mean(1)
        }


def reference(method: ToyMethod, data: ToyData, batch_size: int) -> dict[str, Tensor]:
    """The former extraction: every batch kept in lists, concatenated at the end."""
    single = data.evaluation_views(V, 0)
    parts: dict[str, list[Tensor]] = {}
    with torch.inference_mode():
        for s in range(0, len(single), batch_size):
            items = [single[i] for i in range(s, min(len(single), s + batch_size))]
            x = torch.stack([it["views"] for it in items])[:, 0]
            for name, rep in method.represent(x).items():
                parts.setdefault(name, []).append(rep)
        seq = method.represent_sequence(single.x.view(N, V, 1, 2)[:, :2], single.lat[:2])
    return {
        **{k: torch.cat(p).view(N, V, -1) for k, p in parts.items()},
        "latents": single.lat.view(N, V, P),
        "inv@M2": seq["inv"][:, None],
    }


def extract(directory: Path, method: ToyMethod, **kwargs) -> FeatureSet:
    return cached_features(
        method,
        ToyData(),
        directory,
        views_per_object=V,
        batch_size=4,
        progress=False,
        sequence_views=[2],
        **kwargs,
    )


def test_streamed_equals_in_memory_extraction(tmp_path):
    method = ToyMethod().eval()
    want = reference(method, ToyData(), batch_size=4)  # batches of 4 straddle objects of 3
    for fs in (
        extract(tmp_path / "toy_key", method),
        extract_features(method, ToyData(), V, batch_size=4, progress=False, sequence_views=[2]),
    ):
        assert set(fs.parts) == {"inv", "equi"} and set(fs.sequences) == {"inv@M2"}
        assert fs.parts["inv"].shape == (N, V, 5) and fs.parts["equi"].shape == (N, V, 3)
        for name in ("inv", "equi"):
            assert fs.part(name).dtype == torch.float32
            assert torch.equal(fs.part(name), want[name])  # bit for bit
        torch.testing.assert_close(fs.part("inv@M2"), want["inv@M2"], rtol=0, atol=1e-6)
        assert torch.equal(fs.latents, want["latents"])
        assert fs.labels.tolist() == (torch.arange(N) % 3).tolist()
        assert fs.index.tolist() == list(range(100, 100 + N))
        assert torch.equal(fs.coeffs, ToyData().evaluation_views(V, 0).coeffs)
    manifest = json.loads((tmp_path / "toy_key" / MANIFEST).read_text())
    assert manifest["key"] == "toy_key" and manifest["dtype"] == "float32"
    assert manifest["arrays"]["part/inv"] == {
        "file": "part.inv.npy",
        "shape": [N, V, 5],
        "dtype": "<f4",
    }
    on_disk = np.load(tmp_path / "toy_key" / "part.inv.npy")  # self-describing .npy
    assert np.array_equal(on_disk, want["inv"].numpy())
    assert not [p for p in tmp_path.iterdir() if p.name != "toy_key"]  # no partial left


def test_float16_storage_and_float32_probes(tmp_path):
    method = ToyMethod().eval()
    want = reference(method, ToyData(), batch_size=4)
    fs = extract(tmp_path / "k16", method, dtype="float16")
    assert fs.parts["inv"].dtype == torch.float16 and fs.latents.dtype == torch.float32
    assert torch.equal(fs.parts["inv"], want["inv"].half())  # round to nearest, nothing else
    torch.testing.assert_close(fs.parts["inv"].float(), want["inv"], rtol=1e-3, atol=1e-4)
    assert fs.sequences["inv@M2"].dtype == torch.float16
    assert torch.equal(fs.latents, want["latents"])  # targets stay exact
    f32 = extract(tmp_path / "k32", method)
    f32_bytes = (tmp_path / "k32" / "part.inv.npy").stat().st_size
    assert (tmp_path / "k16" / "part.inv.npy").stat().st_size < 0.6 * f32_bytes
    cfg = {"seed": 0, "epochs": 3, "lr": 1e-3, "weight_decay": 0.0, "batch_size": 4}
    cfg |= {"hidden_dim": 8, "val_pairs_per_object": 2}

    def target(a: Tensor, b: Tensor) -> Tensor:
        return b - a

    res = {
        name: pair_regression_probe(
            f.parts["inv"], f.latents, f.parts["inv"], f.latents, target, cfg, "cpu", "", False
        )
        for name, f in (("16", fs), ("32", f32))
    }
    assert res["16"].pred.dtype == torch.float32  # the probe saw float32 batches
    assert res["16"].metrics["mse"] == pytest.approx(res["32"].metrics["mse"], rel=1e-2)


def test_float16_overflow_is_refused(tmp_path):
    with pytest.raises(ValueError, match="float16 range"):
        extract(tmp_path / "big", ToyMethod(scale=1e6).eval(), dtype="float16")
    assert not list(tmp_path.iterdir())  # the partial directory is removed


def test_reused_without_extraction_and_loaded_copy_on_write(tmp_path):
    method = ToyMethod().eval()
    first = extract(tmp_path / "k", method)
    calls = method.calls
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on non-writable numpy arrays
        again = extract(tmp_path / "k", method)
    assert method.calls == calls  # a cache hit runs nothing
    assert torch.equal(again.parts["inv"], first.parts["inv"])
    again.parts["inv"][0] = 123.0  # a probe may write into its tensors ...
    again.labels[:2] = -1
    third = load_features(tmp_path / "k")
    assert torch.equal(third.parts["inv"], first.parts["inv"])  # ... never into the cache
    assert third.labels[:2].tolist() == [0, 1]


@pytest.mark.parametrize("damage", ["no_manifest", "truncated", "missing_file", "bad_json"])
def test_damaged_cache_is_re_extracted(tmp_path, caplog, damage):
    method = ToyMethod().eval()
    directory = tmp_path / "k"
    first = {k: v.clone() for k, v in extract(directory, method).parts.items()}
    file = {
        "no_manifest": directory / MANIFEST,
        "truncated": directory / "part.equi.npy",
        "missing_file": directory / "latents.npy",
        "bad_json": directory / MANIFEST,
    }[damage]
    if damage == "truncated":
        file.write_bytes(file.read_bytes()[:-7])  # a write cut short
    elif damage == "bad_json":
        file.write_text('{"format": 2, "key": "k", "arr')
    else:
        file.unlink()
    calls = method.calls
    with caplog.at_level(logging.WARNING, logger="equissl.eval.features"):
        again = extract(directory, method)
    assert method.calls > calls  # re-extracted
    assert str(file) in caplog.text and "re-extracting" in caplog.text
    for name in ("inv", "equi"):
        assert torch.equal(again.parts[name], first[name])
    assert load_features(directory).latents.shape == (N, V, P)  # whole again


def test_writes_every_batch_as_it_goes(tmp_path):
    """While batch k is represented, batches < k are already in the file on disk."""
    seen: list[int] = []

    class Watching(ToyMethod):
        sequence_representation = False

        def represent(self, x: Tensor) -> dict[str, Tensor]:
            (partial,) = [p for p in tmp_path.iterdir() if p.name.startswith(".k.")]
            if self.calls:  # the file is allocated by the first batch
                on_disk = np.load(partial / "part.inv.npy", mmap_mode="r").reshape(N * V, -1)
                done = torch.cat(self.returned).numpy()
                assert np.array_equal(on_disk[: len(done)], done)
                assert not on_disk[len(done) :].any()  # the rest is still unwritten
                seen.append(len(done))
            out = super().represent(x)
            self.returned.append(out["inv"].clone())
            return out

    method = Watching().eval()
    method.returned = []
    extract(tmp_path / "k", method)
    assert seen[: N * V // 4] == list(range(4, N * V, 4))  # 8 batches checked


def test_extraction_does_not_hold_the_split_in_memory(tmp_path):
    """Peak traced memory stays far below the split's size (the former extraction kept
    every batch, so its peak was at least the whole part)."""
    width, n = 4096, 48

    class Wide(ToyMethod):
        def represent(self, x: Tensor) -> dict[str, Tensor]:
            self.calls += 1  # numpy-backed outputs, so tracemalloc sees them
            return {"inv": torch.from_numpy(np.full((len(x), width), self.calls, np.float32))}

    total = n * V * width * 4  # 2.4 MB
    tracemalloc.start()
    try:
        fs = cached_features(
            Wide().eval(),
            ToyData(n=n),
            tmp_path / "k",
            views_per_object=V,
            batch_size=8,
            progress=False,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < total / 5, (peak, total)
    assert fs.parts["inv"][-1, -1, 0] == n * V // 8  # every batch landed


class WideBatches(ToyMethod):
    """A ``width``-wide part whose every value is the batch's 1-based number; ``seen``
    gets this process's ``RssFile`` at each batch."""

    def __init__(self, width: int, seen: list[int] | None = None) -> None:
        super().__init__()
        self.wide, self.seen = width, seen

    def represent(self, x: Tensor) -> dict[str, Tensor]:
        self.calls += 1
        if self.seen is not None:
            self.seen.append(rss_file_kib())
        return {"inv": torch.full((len(x), self.wide), float(self.calls))}


def wide_cache(directory: Path, n: int, width: int, seen: list[int] | None = None) -> FeatureSet:
    """The cache of :class:`WideBatches` over ``n`` toy objects, batches of 64 views."""
    return cached_features(WideBatches(width, seen).eval(), ToyData(n=n), directory,
                           views_per_object=V, batch_size=64, progress=False)  # fmt: skip


def rss_file_kib() -> int:
    """This process's file-backed resident memory (``RssFile``, KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_extraction_keeps_no_written_page_mapped(tmp_path):
    """The cache's files are written with file writes, not through maps of the process:
    its file-backed RSS stays flat while 48 MiB are written (writing through open_memmap
    kept every written page mapped, so RssFile grew by the cache's size)."""
    width, n = 4096, 1024
    peaks: list[int] = []
    total_kib = n * V * width * 4 // 1024  # 48 MiB
    fs = wide_cache(tmp_path / "k", n, width, peaks)
    growth = max(peaks) - peaks[1]  # after the first batch allocated the files
    assert growth < total_kib / 8, (growth, total_kib)
    assert fs.parts["inv"][-1, -1, 0] == n * V // 64  # every batch landed


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_release_unmaps_the_pages_read_and_keeps_the_values(tmp_path):
    """Reading a 48 MiB cached part maps its pages (RssFile grows by about its size);
    ``release`` unmaps them, the tensor reads the same values after, and an in-place change
    a probe made is dropped (the next probe reads the cache as written)."""
    width, n = 4096, 1024
    wide_cache(tmp_path / "k", n, width)
    fs = load_features(tmp_path / "k")
    part, size_kib = fs.parts["inv"], n * V * width * 4 // 1024
    before = rss_file_kib()
    total = float(part.double().sum())
    read = rss_file_kib() - before
    part[0, 0, 0] = -1.0  # a probe writing into its tensor (copy-on-write)
    fs.release()
    released = rss_file_kib() - before
    assert read > size_kib * 0.9, (read, size_kib)
    assert released < size_kib / 8, (released, size_kib)
    assert float(part.double().sum()) == total  # the file's values, the change dropped
    assert part[0, 0, 0] == 1.0


def test_settings_change_the_key():
    base = {"views": 5, "seed": 0, "split": "val", "sequences": [], "dtype": "float32"}
    key = cache_key("digest", ["a 1"], base)
    for change in ({"dtype": "float16"}, {"views": 4}, {"seed": 1}, {"sequences": [2]}):
        assert cache_key("digest", ["a 1"], {**base, **change}) != key
    assert cache_key("other", ["a 1"], base) != key
    assert cache_key("digest", ["a 2"], base) != key
