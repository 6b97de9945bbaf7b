"""Feature cache of the evaluation stage (docs/evaluation.md, "The feature cache").

The frozen model runs once, in ``eval()`` mode (BatchNorm uses its running statistics;
the reference probes leave it in train mode, letting probe data shift them), over the
evaluation views of every object of a split (the dataset's protocol:
:meth:`ViewDataset.evaluation_views`). Every named part of the representation is stored,
with latents, labels, coefficients and object ids. Probes then train on the cache.

The cache is a directory named by a content key: the checkpoint's bytes, the dataset's
manifest (split files' content, every data file's path, size and mtime), and the settings
that change features (views, seed, sequence lengths, storage dtype), so replacing data
under the same root or retraining re-extracts. It holds one ``.npy`` per array,
preallocated and filled batch by batch with file writes as extraction proceeds (a split never
has to fit in RAM, nor stays mapped in the process), and ``manifest.json`` (shapes,
dtypes, the key), written last and atomically. Extraction fills a private sibling
directory that is renamed onto the key only once complete; a directory without a valid
manifest, or with a file that does not match it, is never trusted: it is re-extracted.
Reads are memory-mapped copy-on-write, so probes page in only the rows they index and may
modify their tensors without touching the files.

``eval.cache_dtype: float16`` stores the named parts and sequence parts in half precision
(half the disk and page cache); latents, labels, coefficients and ids stay exact. Probes
receive float32: :func:`equissl.eval.probes.base.fit` and ``predict`` cast each batch, and
neighbour searches cast their inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mmap
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from equissl.atomic import atomic_write_text, owner_tag, written_by_dead_process
from equissl.datasets.base import ViewDataset
from equissl.progress import progress_bar, usable_workers
from equissl.ssl.base import SSLMethod

log = logging.getLogger(__name__)

#: version of the on-disk layout; part of every key, so another layout never matches
CACHE_FORMAT = 2
MANIFEST = "manifest.json"
#: storage dtypes of ``eval.cache_dtype`` (named parts and sequence parts only)
CACHE_DTYPES: dict[str, type[np.floating]] = {"float32": np.float32, "float16": np.float16}
_NAME = re.compile(r"[A-Za-z0-9_@.+-]+")
HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


class CacheError(ValueError):
    """A cache directory that cannot be trusted (the message names the file)."""


@dataclass
class FeatureSet:
    """Cached representations of one split's evaluation views.

    Attributes:
        parts: ``{part: [N, V, D_part]}`` representation of every view (float32, or
            float16 with ``eval.cache_dtype: float16``).
        latents: ``[N, V, P]`` float32 latents of every view.
        labels: ``[N]`` int64 class labels (-1 unknown).
        coeffs: ``[N, K]`` float32 invariant targets (``K = 0`` for images).
        index: ``[N]`` int64 object ids.
        sequences: ``{"<part>@M<m>": [N, 1, D_part]}`` sequence representations of the first
            ``m`` evaluation views of each object (methods with a sequence representation),
            stored like ``parts``.
    """

    parts: dict[str, Tensor]
    latents: Tensor
    labels: Tensor
    coeffs: Tensor
    index: Tensor
    sequences: dict[str, Tensor] = field(default_factory=dict)
    #: the file maps behind the tensors of a cache directory (none in RAM)
    maps: list[mmap.mmap] = field(default_factory=list, repr=False, compare=False)

    def release(self) -> None:
        """Unmap the cache pages read so far (``MADV_DONTNEED``): the tensors stay valid and
        later reads fault the pages in again from the page cache, where they stay. Called
        after each probe on each part, so the file-backed memory of an evaluation is what
        one probe reads, not every part it has read (docs/evaluation.md, "Memory at full
        size"). A probe's in-place change to its tensors (copy-on-write) is dropped with the
        pages: the next probe reads the cache as written."""
        for m in self.maps:
            if not m.closed:
                m.madvise(mmap.MADV_DONTNEED)

    def part(self, name: str) -> Tensor:
        """``[N, V, D]`` features of a part, or ``[N, 1, D]`` of a sequence part."""
        return self.parts[name] if name in self.parts else self.sequences[name]

    @property
    def num_objects(self) -> int:
        return int(self.latents.shape[0])

    @property
    def views_per_object(self) -> int:
        return int(self.latents.shape[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "parts": self.parts,
            "latents": self.latents,
            "labels": self.labels,
            "coeffs": self.coeffs,
            "index": self.index,
            "sequences": self.sequences,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FeatureSet:
        """From the store's arrays (``"part/<name>"``, ``"seq/<name>"``, ``latents``, ...)."""
        t = {name: torch.from_numpy(a) for name, a in arrays.items()}
        maps = [a._mmap for a in arrays.values() if getattr(a, "_mmap", None) is not None]
        return cls(
            maps=maps,
            parts={k[5:]: v for k, v in t.items() if k.startswith("part/")},
            latents=t["latents"],
            labels=t["labels"],
            coeffs=t["coeffs"],
            index=t["index"],
            sequences={k[4:]: v for k, v in t.items() if k.startswith("seq/")},
        )


class ArrayStore:
    """The arrays extraction writes into, preallocated: in RAM (``directory=None``) or as
    ``.npy`` files in ``directory``, written batch by batch with plain file writes at their
    offsets. The writes go through the page cache (the kernel's, reclaimable once on disk),
    never through a mapping of the process, so neither its anonymous nor its file-backed
    memory grows with the cache (docs/evaluation.md, "Memory")."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.arrays: dict[str, np.ndarray] = {}  # in RAM
        self.files: dict[str, BinaryIO] = {}  # open for writing
        self.offsets: dict[str, int] = {}  # byte offset of each file's data
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, shape: tuple[int, ...], start: int, values: np.ndarray) -> None:
        """Write ``values [k, *rest]`` (already of the array's dtype) as the rows
        ``start .. start + k`` of the array ``name [..., *rest]`` of ``shape`` viewed as
        ``[-1, *rest]``; the array is allocated on first write."""
        values = np.ascontiguousarray(values)
        first = start * math.prod(values.shape[1:])  # in elements
        if self.directory is None:
            if name not in self.arrays:
                self.arrays[name] = np.empty(shape, values.dtype)
            self.arrays[name].reshape(-1)[first : first + values.size] = values.reshape(-1)
            return
        if name not in self.files:
            path = self.directory / array_file(name)
            header = np.lib.format.open_memmap(path, "w+", values.dtype, shape)  # sized, sparse
            self.offsets[name] = int(header.offset)
            del header
            # written with os.pwrite: each batch reaches the file (the page cache) at once
            self.files[name] = open(path, "r+b", buffering=0)  # noqa: SIM115 (close())
        data = memoryview(values.reshape(-1)).cast("B") if values.size else memoryview(b"")
        fd, at = self.files[name].fileno(), self.offsets[name] + first * values.itemsize
        while data:  # a write may take fewer bytes than offered
            done = os.pwrite(fd, data, at)
            data, at = data[done:], at + done

    def array(self, name: str) -> np.ndarray:
        """The array ``name`` as written so far (a copy-on-write map of its file)."""
        if self.directory is None:
            return self.arrays[name]
        if not self.files[name].closed:
            self.files[name].flush()
        return np.load(self.directory / array_file(name), mmap_mode="c")

    def close(self, info: dict[str, Any]) -> dict[str, np.ndarray]:
        """Write the files to disk and the manifest (last, atomically); the arrays."""
        if self.directory is None:
            return self.arrays
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        arrays = {name: self.array(name) for name in self.files}
        manifest = {
            **info,
            "format": CACHE_FORMAT,
            "arrays": {
                name: {"file": array_file(name), "shape": list(a.shape), "dtype": a.dtype.str}
                for name, a in arrays.items()
            },
        }
        atomic_write_text(self.directory / MANIFEST, json.dumps(manifest, indent=1))
        return arrays


def array_file(name: str) -> str:
    """``"part/inv" -> "part.inv.npy"``; part names must be plain file-name characters."""
    flat = name.replace("/", ".", 1)
    if not _NAME.fullmatch(flat):
        raise ValueError(f"feature {name!r}: a part name must match {_NAME.pattern}")
    return f"{flat}.npy"


def cache_key(checkpoint_digest: str, manifest: Iterable[str], settings: dict[str, Any]) -> str:
    """Key of one split's features: checkpoint content, data manifest, settings (and the
    cache layout's version)."""
    h = hashlib.sha1(f"{checkpoint_digest}:{CACHE_FORMAT}".encode())
    for line in manifest:
        h.update(line.encode())
        h.update(b"\n")
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def storage_dtype(name: str) -> type[np.floating]:
    if name not in CACHE_DTYPES:
        raise ValueError(f"eval.cache_dtype is {name!r}; choose from {sorted(CACHE_DTYPES)}")
    return CACHE_DTYPES[name]


def write_rows(
    store: ArrayStore,
    name: str,
    rows: slice,
    values: Tensor,
    lead: tuple[int, ...],
    dtype: Any,
) -> None:
    """Write ``values [b, *rest]`` into the flat rows ``rows`` of the ``[*lead, *rest]``
    array ``name`` (allocated on first write), stored as ``dtype``."""
    src = values.detach().float().cpu().numpy() if values.is_floating_point() else values.numpy()
    with np.errstate(over="ignore"):  # checked below, with the feature's name
        out = src.astype(dtype, copy=False)
    if out.dtype == np.float16 and not np.isfinite(out).all() and np.isfinite(src).all():
        raise ValueError(
            f"feature {name!r} exceeds the float16 range (|x| > 65504): "
            "use eval.cache_dtype=float32"
        )
    store.write(name, (*lead, *src.shape[1:]), rows.start, out)


@torch.inference_mode()
def extract_features(
    method: SSLMethod,
    dataset: ViewDataset,
    views_per_object: int,
    seed: int = 0,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    sequence_views: Iterable[int] = (),
    dtype: str = "float32",
    directory: Path | None = None,
    key: str = "",
) -> FeatureSet:
    """Represent every evaluation view of every object of ``dataset`` with the frozen model
    (and, for methods with a sequence representation, sequences of ``sequence_views``
    views), each batch written into preallocated arrays: ``.npy`` files in ``directory``
    (with the manifest, recording ``key``, written last), or RAM without one. Parts are
    stored as ``dtype``."""
    method.eval().to(device)
    single = dataset.evaluation_views(views_per_object, seed)
    n = len(dataset)
    v = int(getattr(single, "views_per_object", 0) or (len(single) // max(n, 1)))
    if v < 1 or len(single) != n * v:
        raise ValueError(
            f"{type(dataset).__name__}.evaluation_views() returned {len(single)} items for "
            f"{n} objects; it must return views_per_object one-view items per object, "
            "object-major (docs/extending.md, 'Evaluation views')"
        )
    part_dtype = storage_dtype(dtype)
    store = ArrayStore(directory)
    loader = DataLoader(
        single, batch_size=batch_size, shuffle=False, num_workers=usable_workers(num_workers)
    )
    start = 0
    for batch in progress_bar(
        loader, desc=f"features {dataset.split_name}", unit="batch", disable=not progress
    ):
        x = batch["views"][:, 0]
        rows = slice(start, start + len(x))
        for name, rep in method.represent(x.to(device, non_blocking=True)).items():
            write_rows(store, f"part/{name}", rows, rep, (n, v), part_dtype)
        write_rows(store, "latents", rows, batch["latents"][:, 0], (n, v), np.float32)
        # per-object arrays: the object's first view (flat row o * v) carries them
        first = torch.arange(rows.start, rows.stop) % v == 0
        objs = slice(-(-rows.start // v), -(-rows.stop // v))
        write_rows(store, "labels", objs, batch["label"][first].long(), (n,), np.int64)
        write_rows(store, "coeffs", objs, batch["coeffs"][first], (n,), np.float32)
        write_rows(store, "index", objs, batch["index"][first].long(), (n,), np.int64)
        start = rows.stop
    if start != n * v:
        raise RuntimeError(f"{dataset.split_name}: {start} evaluation views, expected {n * v}")
    if getattr(method, "sequence_representation", False) and sequence_views:
        extract_sequences(
            method, single, n, v, sequence_views, batch_size, device, progress, store, dtype
        )
    info = {"key": key, "split": dataset.split_name, "dtype": dtype}
    return FeatureSet.from_arrays(store.close(info))


@torch.inference_mode()
def extract_sequences(
    method: SSLMethod,
    single: Any,
    n: int,
    v: int,
    lengths: Iterable[int],
    batch_size: int,
    device: str | torch.device,
    progress: bool,
    store: ArrayStore | None = None,
    dtype: str = "float32",
) -> dict[str, Tensor]:
    """``method.represent_sequence`` of the first ``m`` evaluation views of every object,
    for every ``m`` in ``lengths`` (capped at the views available), written object chunk by
    chunk into ``store`` (a fresh in-RAM one without it) as ``"seq/<part>@M<m>"``:
    returns ``{"<part>@M<m>": [N, 1, D]}``."""
    store = store if store is not None else ArrayStore()
    part_dtype = storage_dtype(dtype)
    lengths = sorted({min(int(m), v) for m in lengths if int(m) > 0})
    per_batch = max(1, batch_size // max(lengths, default=1))
    names: set[str] = set()
    for start in progress_bar(
        range(0, n, per_batch),
        desc="sequence features",
        unit="batch",
        disable=not progress or not lengths,
    ):
        objs = range(start, min(n, start + per_batch))
        items = [[single[o * v + j] for j in range(max(lengths))] for o in objs]
        views = torch.stack([torch.cat([it["views"] for it in row]) for row in items])
        lats = torch.stack([torch.cat([it["latents"] for it in row]) for row in items])
        for m in lengths:
            reps = method.represent_sequence(views[:, :m].to(device), lats[:, :m].to(device))
            for name, rep in reps.items():
                key = f"seq/{name}@M{m}"
                names.add(key)
                write_rows(store, key, slice(objs.start, objs.stop), rep[:, None], (n,), part_dtype)
    return {k[4:]: torch.from_numpy(store.array(k)) for k in sorted(names)}


def read_array(directory: Path, spec: dict[str, Any]) -> np.ndarray:
    """One array of a cache directory, memory-mapped copy-on-write, after checking that
    its header and size match the manifest's ``spec`` (raises :class:`CacheError`)."""
    path = directory / spec["file"]
    if not path.is_file():
        raise CacheError(f"{path} is missing")
    try:
        with open(path, "rb") as f:
            read_header = HEADER_READERS[np.lib.format.read_magic(f)]
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (KeyError, ValueError, OSError) as err:
        raise CacheError(f"{path} has no valid .npy header ({err})") from err
    if list(shape) != list(spec["shape"]) or dtype.str != spec["dtype"]:
        raise CacheError(
            f"{path} holds {dtype.str}{list(shape)}, the manifest says "
            f"{spec['dtype']}{list(spec['shape'])}"
        )
    want = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = path.stat().st_size
    if have != want:
        raise CacheError(f"{path} has {have} bytes, expected {want} (truncated or damaged)")
    # copy-on-write: writable tensors (torch.from_numpy warns on read-only arrays), while
    # the file stays as written whatever a probe does to its tensor
    return np.load(path, mmap_mode="c")


def load_features(directory: str | Path) -> FeatureSet:
    """The features in a complete cache directory (raises :class:`CacheError` naming the
    file when it is not one)."""
    directory = Path(directory)
    manifest_file = directory / MANIFEST
    try:
        manifest = json.loads(manifest_file.read_text())
    except FileNotFoundError as err:
        raise CacheError(f"{manifest_file} is missing (extraction never finished)") from err
    except (ValueError, OSError) as err:
        raise CacheError(f"{manifest_file} is unreadable ({err})") from err
    if manifest.get("format") != CACHE_FORMAT:
        raise CacheError(f"{manifest_file} has format {manifest.get('format')}, not {CACHE_FORMAT}")
    if manifest.get("key") != directory.name:
        raise CacheError(f"{manifest_file} is for key {manifest.get('key')}, not {directory.name}")
    arrays = {name: read_array(directory, spec) for name, spec in manifest["arrays"].items()}
    return FeatureSet.from_arrays(arrays)


def remove_dead_partials(cache_dir: Path) -> list[Path]:
    """Delete the partial extraction folders in ``cache_dir`` whose extracting process, on
    this host, was killed (``kill -9``, a node's OOM killer): at 3DIEBench scale each holds
    gigabytes. Folders of live extractions, or of other hosts, are left alone."""
    removed = []
    for entry in cache_dir.glob(".*"):
        if entry.is_dir() and written_by_dead_process(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
            log.warning("removed %s, left by a killed feature extraction", entry)
            removed.append(entry)
    return removed


def cached_features(
    method: SSLMethod, dataset: ViewDataset, directory: Path, **kwargs: Any
) -> FeatureSet:
    """The features in ``directory`` (its name is the content key) if it is a complete
    cache, else extract them (``kwargs`` of :func:`extract_features`) into a private
    sibling directory and rename it onto ``directory`` once its manifest is written."""
    directory = Path(directory)
    if directory.exists():
        try:
            return load_features(directory)
        except CacheError as err:  # a damaged or unfinished cache is re-extracted
            log.warning("feature cache not used, re-extracting: %s", err)
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(directory.parent)
    partial = Path(
        tempfile.mkdtemp(prefix=f".{directory.name}.{owner_tag()}.", dir=directory.parent)
    )
    try:
        fs = extract_features(method, dataset, directory=partial, key=directory.name, **kwargs)
        del fs  # release the write mappings before the rename
        if directory.exists():  # damaged (warned above), or a concurrent run finished first
            try:
                return load_features(directory)
            except CacheError:
                shutil.rmtree(directory)
        os.replace(partial, directory)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return load_features(directory)
