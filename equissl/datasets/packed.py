"""Packed 3DIEBench shards: a byte blob + offsets + latents per split chunk (docs/packed_shards.md).

A loose 3DIEBench tree is 2.6 M small files (a JPEG and a ``.npy`` per view); every training
pair opens four of them. ``equissl-pack ROOT OUT`` writes the same data as a few large files
that are memory-mapped and read by random access, so the resumable sampler's per-seed order
and per-rank strides (:mod:`equissl.training.sampler`) apply unchanged — sequential tar
shards (WebDataset) would have to replace that sampler with a shuffle buffer.

Layout of ``OUT`` (chunk ``k`` of ``n`` of a split covers objects ``[k·N/n, (k+1)·N/n)`` of
its split file, in order)::

    OUT/packed.json                               the index (written once every chunk is done)
    OUT/data/{split}_images.npy, _labels.npy      the split files, copied
    OUT/packed/{split}-{k:05d}-of-{n:05d}.bin     view payloads, object-major, concatenated
    OUT/packed/{split}-{k:05d}-of-{n:05d}.offsets.npy  int64 [M·V + 1] byte offsets into .bin
    OUT/packed/{split}-{k:05d}-of-{n:05d}.latents.npy  float64 [M, V, P], the files' values
    OUT/packed/{split}-{k:05d}-of-{n:05d}.json    the chunk's record (its completion marker)

Payload ``encoding``: ``jpeg`` (default) keeps each view's file bytes as they are — decoded
with the loose reader's decoder, the pixels are identical; ``raw`` stores decoded
``[3, H, W]`` uint8 pixels (no decode at all; 12 KB a view at 64 px, 196 KB at 256 px).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from equissl.atomic import atomic_open, atomic_write_bytes, atomic_write_text, remove_stale_tmp
from equissl.datasets.iebench_format import (
    DatasetFormatError,
    Split,
    count_views,
    decode_image,
    default_splits_dir,
    image_path,
    latent_path,
    load_split,
    read_image,
    read_latent,
)
from equissl.datasets.validate import bounded_map, check_split
from equissl.output_folder import claim_output

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
INDEX_FILE = "packed.json"
SHARDS_DIR = "packed"
#: settings record of the folder equissl-pack writes (in its split-file folder)
PACK_RECORD = "pack_config.json"
ENCODINGS = ("jpeg", "raw")
#: bytes a process reads through one store's shard maps before they are dropped and mapped
#: again (:meth:`PackedStore._charge`): the bound on the shard pages its RSS counts
MAPPED_BUDGET = 256 * 2**20
#: bytes the kernel may map around each faulted page of a file map (``fault_around_bytes``)
FAULT_AROUND = 64 * 1024


def is_packed(root: str | Path) -> bool:
    """Whether ``root`` is the output of ``equissl-pack`` (it holds ``packed.json``)."""
    return (Path(root) / INDEX_FILE).is_file()


def shard_name(split: str, chunk: int, num_chunks: int) -> str:
    return f"{split}-{chunk:05d}-of-{num_chunks:05d}"


def chunk_range(num_objects: int, chunk: int, num_chunks: int) -> tuple[int, int]:
    """Objects ``[start, stop)`` of chunk ``chunk`` of ``num_chunks`` (contiguous, balanced)."""
    if not 0 <= chunk < num_chunks:
        raise ValueError(f"chunk={chunk} is outside 0..{num_chunks - 1} (num_chunks={num_chunks})")
    return chunk * num_objects // num_chunks, (chunk + 1) * num_objects // num_chunks


def split_digest(split: Split) -> str:
    """SHA-1 of a split's entries and labels: the packed shards belong to exactly this split."""
    h = hashlib.sha1("\n".join(split.entries).encode())
    h.update(np.ascontiguousarray(split.labels, dtype=np.int64).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- writing
def check_encoding(encoding: str) -> None:
    """Raises ValueError unless ``encoding`` is one of :data:`ENCODINGS`."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding={encoding!r} is not one of {' | '.join(ENCODINGS)}")


@dataclass(frozen=True)
class PackSettings:
    """What ``equissl-pack`` does (see :func:`pack_chunk`)."""

    splits: tuple[str, ...] = ("train", "val")
    chunk: int = 0
    num_chunks: int = 1
    encoding: str = "jpeg"
    verify: bool = True  # decode every image while packing (jpeg); raw always decodes
    splits_dir: str | None = None


@dataclass(frozen=True)
class ShardObject:
    """One object on its way into a shard: its views' file bytes (JPEG or PNG, as the loose
    tree stores them) and ``[V, P]`` float64 latents; ``source`` names it in messages,
    ``view_sources`` (default ``"{source} view {v}"``) each view."""

    source: str
    images: Sequence[bytes]
    latents: np.ndarray
    view_sources: Sequence[str] | None = None

    def view_source(self, view: int) -> str:
        return self.view_sources[view] if self.view_sources else f"{self.source} view {view}"


def _encode(data: bytes, source: str, encoding: str, verify: bool) -> tuple[bytes, Any]:
    """One view's stored payload and, when decoded, its ``(3, H, W)`` shape."""
    if encoding == "jpeg" and not verify:
        return data, None
    pixels = decode_image(data, source)
    return (pixels.numpy().tobytes() if encoding == "raw" else data), tuple(pixels.shape)


def _npy_header(f: BinaryIO, shape: tuple[int, ...], dtype: Any) -> None:
    """The ``.npy`` header ``np.save`` writes for a C-ordered array of ``shape`` and
    ``dtype``; the data follows in C order."""
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(f, header)


def write_shard(
    out: Path,
    split: Split,
    name: str,
    start: int,
    stop: int,
    objects: Iterable[ShardObject],
    encoding: str = "jpeg",
    verify: bool = True,
) -> dict[str, Any]:
    """Write one chunk's ``.bin``, ``.offsets.npy``, ``.latents.npy`` and then its record from
    ``objects`` (those of ``split.entries[start:stop]``, in that order).

    The one writer of shards: ``equissl-pack`` feeds it the loose tree's files
    (:func:`pack_shard`), the renderer its freshly encoded views
    (``equissl-generate format=packed``). Every file goes through
    :func:`~equissl.atomic.atomic_open`, the record last, so a killed job leaves no record and
    a rerun writes the chunk again.

    Streams: each object's payloads, offsets and latents go to their files as it arrives
    (the ``.npy`` headers, whose shapes the first object fixes, are written first), so
    memory does not grow with the chunk. The files are byte for byte what ``np.save`` of
    the whole arrays writes; latents are stored as float64.

    Raises:
        DatasetFormatError: objects with different view counts, latent lengths or (``raw``)
            image sizes, an image that does not decode (with ``verify`` or ``raw``), or
            another number of objects than ``stop - start``.
    """
    shards = out / SHARDS_DIR
    count = stop - start
    views: int | None = None
    dim = 0
    first = ""
    shapes: set[tuple[int, ...]] = set()
    position = 0  # bytes written to .bin
    done = 0
    with ExitStack() as files:
        blob = files.enter_context(atomic_open(shards / f"{name}.bin"))
        offsets = files.enter_context(atomic_open(shards / f"{name}.offsets.npy"))
        latents = files.enter_context(atomic_open(shards / f"{name}.latents.npy"))
        for obj in objects:
            n = len(obj.images)
            lat = np.ascontiguousarray(obj.latents, dtype=np.float64)
            if views is None:
                views, first = n, obj.source
                dim = int(lat.shape[1]) if lat.ndim == 2 else 0
                _npy_header(offsets, (count * views + 1,), np.int64)
                _npy_header(latents, (count, views, dim), np.float64)
                offsets.write(np.zeros(1, np.int64).tobytes())
            if n != views:
                raise DatasetFormatError(
                    f"{obj.source} has {n} views but {first} has {views}; packed objects "
                    "must all have the same number of views"
                )
            if lat.shape != (views, dim):
                raise DatasetFormatError(
                    f"latent lengths {sorted({dim, lat.shape[-1]})} differ within {name} "
                    f"({obj.source}: latents {lat.shape}, {first}: {(views, dim)})"
                )
            if done == count:
                raise DatasetFormatError(
                    f"{obj.source}: more objects than the {count} of {name} "
                    f"({split.images_file} objects {start}..{stop - 1})"
                )
            ends = np.empty(n, np.int64)
            for v, image in enumerate(obj.images):
                data, shape = _encode(image, obj.view_source(v), encoding, verify)
                shapes |= {shape} if shape else set()
                blob.write(data)
                position += len(data)
                ends[v] = position
            offsets.write(ends.tobytes())
            latents.write(lat.tobytes())
            done += 1
        if done != count:
            raise DatasetFormatError(
                f"{name} received {done} objects; {split.images_file} objects "
                f"{start}..{stop - 1} are {count}"
            )
        if views is None:  # an empty chunk
            np.save(offsets, np.zeros(1, np.int64), allow_pickle=False)
            np.save(latents, np.zeros((0, 0, 0)), allow_pickle=False)
        if len(shapes) > 1 or (encoding == "raw" and not shapes and count > 0):
            raise DatasetFormatError(
                f"images of {split.images_file} objects {start}..{stop - 1} differ in size "
                f"({sorted(shapes)}); raw encoding needs one size"
            )
    record = {
        "version": FORMAT_VERSION,
        "shard": name,
        "start": start,
        "stop": stop,
        "views": views,
        "latent_dim": dim,
        "encoding": encoding,
        "image_shape": list(next(iter(shapes))) if shapes else None,
        "bin_bytes": position,
        "split_digest": split_digest(split),
    }
    atomic_write_text(shards / f"{name}.json", json.dumps(record, indent=1, sort_keys=True))
    return record


def loose_object(root: Path, entry: str) -> ShardObject:
    """The files of object ``entry`` of a loose tree, read for :func:`write_shard`."""
    images, rows, paths = [], [], []
    for v in range(count_views(root / entry)):
        path = image_path(root, entry, v)
        paths.append(str(path))
        try:
            images.append(path.read_bytes())
        except FileNotFoundError:
            raise DatasetFormatError(f"image {path} not found") from None
        except OSError as err:
            raise DatasetFormatError(f"image {path} cannot be read: {err}") from err
        rows.append(read_latent(latent_path(root, entry, v)))
    if len({len(r) for r in rows}) > 1:
        raise DatasetFormatError(f"latents of {root / entry} differ in length")
    lat = np.stack(rows) if rows else np.zeros((0, 0))
    return ShardObject(str(root / entry), images, lat, paths)


def pack_shard(
    root: Path,
    out: Path,
    split: Split,
    name: str,
    start: int,
    stop: int,
    settings: PackSettings,
) -> dict[str, Any]:
    """Write one chunk of the loose tree ``root`` as a shard (:func:`write_shard`)."""
    objects = (loose_object(root, entry) for entry in split.entries[start:stop])
    return write_shard(out, split, name, start, stop, objects, settings.encoding, settings.verify)


def shard_is_done(out: Path, split: Split, name: str, encoding: str) -> bool:
    """Whether shard ``name`` under ``out`` is complete and holds ``split`` in ``encoding``
    (a requeued or repeated task skips it)."""
    old = _read_record(out / SHARDS_DIR / f"{name}.json")
    if old is None or (old.get("split_digest"), old.get("encoding")) != (
        split_digest(split),
        encoding,
    ):
        return False
    return _shard_problems(out / SHARDS_DIR, old) == []


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _copy_split_files(sdir: Path, out: Path, split: str) -> None:
    dest = default_splits_dir(out)
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("images", "labels"):
        src = sdir / f"{split}_{suffix}.npy"
        target = dest / f"{split}_{suffix}.npy"
        if src.resolve() != target.resolve():
            atomic_write_bytes(target, src.read_bytes())


def pack_chunk(root: str | Path, out: str | Path, settings: PackSettings) -> dict[str, Any]:
    """Pack chunk ``settings.chunk`` of every split of ``root`` into ``out``.

    Idempotent: a chunk whose record matches (same split, range, encoding) is skipped, so a
    requeued or repeated array task does no work twice. When every chunk of every split is
    done, the index ``out/packed.json`` is written (by whichever task finishes last; the
    content does not depend on which).

    Returns:
        ``{"packed": [...], "skipped": [...], "index": path or None}``.

    Raises:
        DatasetFormatError: a missing or malformed source file (named).
        ValueError: bad settings.
    """
    root, out = Path(root), Path(out)
    check_encoding(settings.encoding)
    if out.resolve() == root.resolve():
        raise ValueError(f"OUT must differ from ROOT ({root})")
    sdir = Path(settings.splits_dir) if settings.splits_dir else default_splits_dir(root)
    # every source split read (a missing root or file named) before OUT is touched
    splits = {name: load_split(root, name, sdir) for name in settings.splits}
    claim_output(
        out,
        default_splits_dir(out) / PACK_RECORD,
        {
            "source": str(root.resolve()),
            "splits_dir": str(sdir.resolve()),
            "encoding": settings.encoding,
            "num_chunks": settings.num_chunks,
        },
        f"the packed shards of {root}",
        adopt=lambda folder: _earlier_pack_of(folder, root, sdir),
    )
    for stale in remove_stale_tmp(out / SHARDS_DIR, only_dead_writers=True):
        log.warning("removed %s, left by a killed packing task", stale)
    done: dict[str, list[str]] = {"packed": [], "skipped": []}
    for split_name in settings.splits:
        split = splits[split_name]
        _copy_split_files(sdir, out, split_name)
        name = shard_name(split_name, settings.chunk, settings.num_chunks)
        start, stop = chunk_range(len(split), settings.chunk, settings.num_chunks)
        if shard_is_done(out, split, name, settings.encoding):
            done["skipped"].append(name)
            continue
        pack_shard(root, out, split, name, start, stop, settings)
        done["packed"].append(name)
    config = root / "data" / "render_config.json"
    if config.is_file():
        atomic_write_bytes(default_splits_dir(out) / config.name, config.read_bytes())
    try:
        index = write_index(out, settings.splits, settings.num_chunks)
    except DatasetFormatError:
        index = None  # other chunks still to come
    return {**done, "index": str(index) if index else None}


def _earlier_pack_of(out: Path, root: Path, sdir: Path) -> bool:
    """Whether ``out`` holds only what an earlier ``equissl-pack`` of the split files in
    ``sdir`` wrote (before the settings record existed): ``packed/``, ``packed.json`` and
    split files byte-identical to ``sdir``'s, so writing them again changes nothing."""
    for entry in out.iterdir():
        if entry.name not in (SHARDS_DIR, INDEX_FILE, default_splits_dir(out).name):
            return False
    dest = default_splits_dir(out)
    if not dest.is_dir():
        return True
    for f in dest.iterdir():
        src = sdir / f.name if f.suffix == ".npy" else root / "data" / f.name
        if not (f.is_file() and src.is_file() and f.read_bytes() == src.read_bytes()):
            return False
    return True


def _plain_name(name: object) -> bool:
    """Whether an index's shard name is a file name inside the shard folder."""
    return (
        isinstance(name, str)
        and bool(name)
        and Path(name).name == name
        and name not in (".", "..")
        and "\\" not in name
    )


def _shard_problems(shards: Path, record: dict[str, Any]) -> list[str]:
    """Files of one shard that are missing or whose size disagrees with its record."""
    name = record["shard"]
    problems = []
    for suffix in (".bin", ".offsets.npy", ".latents.npy"):
        f = shards / f"{name}{suffix}"
        if not f.is_file():
            problems.append(f"shard file {f} not found")
    binf = shards / f"{name}.bin"
    if binf.is_file() and binf.stat().st_size != record["bin_bytes"]:
        problems.append(
            f"shard file {binf} has {binf.stat().st_size} bytes; its record says "
            f"{record['bin_bytes']} (truncated or overwritten: pack this chunk again)"
        )
    return problems


def write_index(out: str | Path, splits: Sequence[str], num_chunks: int) -> Path:
    """Check every chunk record of ``splits`` and write ``out/packed.json``.

    Raises:
        DatasetFormatError: naming every missing or unfinished chunk and inconsistent shards.
    """
    out = Path(out)
    shards = out / SHARDS_DIR
    problems: list[str] = []
    index: dict[str, Any] = {"version": FORMAT_VERSION, "splits": {}}
    common: dict[str, set] = {"views": set(), "latent_dim": set(), "encoding": set()}
    shapes: set[tuple[int, ...]] = set()
    for split in splits:
        records = []
        for k in range(num_chunks):
            name = shard_name(split, k, num_chunks)
            rec = _read_record(shards / f"{name}.json")
            if rec is None:
                problems.append(
                    f"chunk {k} of {num_chunks} of split {split!r} is not packed yet: "
                    f"{shards / name}.json not found"
                )
                continue
            problems += _shard_problems(shards, rec)
            records.append(rec)
            if rec["stop"] > rec["start"]:
                for key in common:
                    common[key].add(rec[key])
                shapes |= {tuple(rec["image_shape"])} if rec["image_shape"] else set()
        digests = {r["split_digest"] for r in records}
        if len(digests) > 1:
            problems.append(f"chunks of split {split!r} were packed from different split files")
        index["splits"][split] = {
            "objects": records[-1]["stop"] if records else 0,
            "split_digest": next(iter(digests), None),
            "shards": [{k: r[k] for k in ("shard", "start", "stop", "bin_bytes")} for r in records],
        }
    for key, values in common.items():
        if len(values) > 1:
            problems.append(f"shards under {shards} disagree on {key}: {sorted(values)}")
    if problems:
        raise DatasetFormatError(f"cannot index {out}:\n  - " + "\n  - ".join(problems))
    index.update({key: next(iter(v), None) for key, v in common.items()})
    index["image_shape"] = list(next(iter(shapes))) if shapes else None
    path = out / INDEX_FILE
    atomic_write_text(path, json.dumps(index, indent=1, sort_keys=True) + "\n")
    return path


# ----------------------------------------------------------------------------- reading
class LooseStore:
    """Views of one split read from the loose tree (``image_{v}.jpg`` + ``latent_{v}.npy``)."""

    def __init__(self, root: Path, split: str, splits_dir: str | Path | None = None) -> None:
        checked = check_split(root, split, splits_dir)  # DatasetFormatError naming files
        self.root = root
        self.split = checked.split
        self.views_per_object = checked.views_per_object
        self.latent_dim = checked.latent_dim

    def image(self, index: int, view: int) -> Tensor:
        """``[3, H, W]`` uint8 of view ``view`` of object ``index``."""
        return read_image(image_path(self.root, self.split.entries[index], view))

    def latents(self, index: int, views: Sequence[int]) -> np.ndarray:
        """``[len(views), P]`` float64 latents."""
        entry = self.split.entries[index]
        return np.stack(
            [read_latent(latent_path(self.root, entry, v), self.latent_dim) for v in views]
        )

    def manifest(self) -> Iterable[str]:
        """One line per object folder (:func:`folder_fingerprint`): a few system calls per
        object, not one per file (docs/evaluation.md, "The feature cache")."""
        for entry in self.split.entries:
            yield folder_fingerprint(self.root, entry)

    def full_manifest(self) -> Iterable[str]:
        """One line per file of every object folder: its name, size and mtime."""
        for entry in self.split.entries:
            with os.scandir(self.root / entry) as listing:
                files = sorted(listing, key=lambda e: e.name)
            for f in files:
                st = f.stat()
                yield f"{entry}/{f.name}|{st.st_size}|{st.st_mtime_ns}"


#: files of an object folder whose size and mtime enter its fingerprint: view 0's image and
#: latent, so a script rewriting every image (or every latent) in place is seen
SENTINELS = ("image_0.jpg", "latent_0.npy")


def folder_fingerprint(root: Path, entry: str) -> str:
    """``entry|folder mtime|sorted file names|size:mtime of each sentinel`` of the object
    folder ``root/entry``: one ``stat`` and one listing of the folder and a ``stat`` of each
    of :data:`SENTINELS`.

    It changes when a file is added, removed, renamed or replaced by a new file moved or
    renamed over it (``mv``, ``os.replace``, atomic writers), which changes the folder's
    listing or mtime, and when a sentinel file changes. It does not see a file other than a
    sentinel overwritten in place under the same name (``cp`` onto an existing file,
    ``np.save`` / ``PIL.Image.save`` onto an existing path): that leaves the folder
    untouched (``eval.data_check=files`` stats every file; docs/evaluation.md).
    """
    folder = root / entry
    names = sorted(os.listdir(folder))
    parts = [entry, str(os.stat(folder).st_mtime_ns), "/".join(names)]
    for name in SENTINELS:
        try:
            st = os.stat(folder / name)
        except FileNotFoundError:
            parts.append("-")
        else:
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


class PackedStore:
    """Views of one split read from ``equissl-pack`` shards (memory-mapped, random access).

    Same interface as :class:`LooseStore`. The shard files are checked (present, sizes as
    indexed, split file unchanged since packing) when the store is built and opened lazily
    in each process, so DataLoader workers map them themselves.
    """

    def __init__(self, root: Path, split: str, splits_dir: str | Path | None = None) -> None:
        self.root = root
        index_file = root / INDEX_FILE
        try:
            self.index = json.loads(index_file.read_text())
        except FileNotFoundError:
            raise DatasetFormatError(
                f"packed index {index_file} not found (data.format=packed needs the output of "
                "equissl-pack ROOT OUT; its last chunk writes the index)"
            ) from None
        except (OSError, json.JSONDecodeError) as err:
            raise DatasetFormatError(f"packed index {index_file} cannot be read: {err}") from err
        if split not in self.index.get("splits", {}):
            raise DatasetFormatError(
                f"split {split!r} is not packed in {index_file} (packed: "
                f"{', '.join(self.index.get('splits', {})) or 'none'})"
            )
        info = self.index["splits"][split]
        self.split = load_split(root, split, splits_dir)
        if split_digest(self.split) != info["split_digest"]:
            raise DatasetFormatError(
                f"split file {self.split.images_file} (or its labels) differs from the one "
                f"packed into {root / SHARDS_DIR}; pack again or point data.splits_dir at the "
                "packed split files"
            )
        self.shards = root / SHARDS_DIR
        outside = [s.get("shard") for s in info["shards"] if not _plain_name(s.get("shard"))]
        if outside:
            raise DatasetFormatError(
                f"packed index {index_file} names shard(s) {outside} that are not plain file "
                f"names inside {self.shards}; an index may only name its own shards"
            )
        problems = [p for s in info["shards"] for p in _shard_problems(self.shards, s)]
        if problems:
            listing = "\n  - ".join(problems)
            raise DatasetFormatError(f"packed split {split!r} of {root}:\n  - {listing}")
        self.names = [s["shard"] for s in info["shards"]]
        self._bins = [str(self.shards / f"{n}.bin") for n in self.names]  # for messages
        self.starts = np.asarray([s["start"] for s in info["shards"]], np.int64)
        self.views_per_object = int(self.index["views"])
        self.latent_dim = int(self.index["latent_dim"])
        self.encoding = str(self.index["encoding"])
        self.image_shape = tuple(self.index["image_shape"] or ())
        self._maps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._mapped = 0  # bytes charged to the current maps (:meth:`_charge`)

    def __getstate__(self) -> dict[str, Any]:
        # workers map the files themselves
        return {**self.__dict__, "_maps": None, "_mapped": 0}

    def _open(self, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        opened = self._maps  # one reference: another thread may drop self._maps meanwhile
        if opened is None:
            opened = self._maps = [None] * len(self.names)  # type: ignore[list-item]
        maps = opened[shard]
        if maps is None:
            base = self.shards / self.names[shard]
            try:
                # plain ndarray views of the maps: np.memmap slicing costs microseconds a call
                maps = (
                    np.asarray(np.memmap(f"{base}.bin", dtype=np.uint8, mode="r"))
                    if Path(f"{base}.bin").stat().st_size
                    else np.zeros(0, np.uint8),
                    np.asarray(np.load(f"{base}.offsets.npy", mmap_mode="r", allow_pickle=False)),
                    np.asarray(np.load(f"{base}.latents.npy", mmap_mode="r", allow_pickle=False)),
                )
            except (OSError, ValueError) as err:
                raise DatasetFormatError(f"shard {base} cannot be opened: {err}") from err
            opened[shard] = maps
        return maps

    def _charge(self, nbytes: int) -> None:
        """Count a read of ``nbytes`` through the maps (plus the kernel's fault-around, which
        maps up to :data:`FAULT_AROUND` bytes of cached neighbours with each page); past
        :data:`MAPPED_BUDGET` the maps are dropped (unmapped once the last view of them is
        gone) and the next read maps the files again. This bounds the shard pages mapped
        into the process, which its RSS counts (``RssFile``); the pages stay in the page
        cache, so reading them again costs minor faults, not disk reads."""
        self._mapped += nbytes + FAULT_AROUND
        if self._mapped > MAPPED_BUDGET:
            self._maps, self._mapped = None, 0

    def _locate(self, index: int) -> tuple[int, int]:
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        return shard, index - int(self.starts[shard])

    def image(self, index: int, view: int) -> Tensor:
        """``[3, H, W]`` uint8 of view ``view`` of object ``index``."""
        shard, local = self._locate(index)
        blob, offsets, _ = self._open(shard)
        j = local * self.views_per_object + view
        a, b = int(offsets[j]), int(offsets[j + 1])
        source = (
            f"{self.split.entries[index]} view {view} in shard file "
            f"{self._bins[shard]} (bytes {a}..{b})"
        )
        if b > len(blob) or a > b:
            raise DatasetFormatError(f"image {source} lies outside the file ({len(blob)} bytes)")
        payload = blob[a:b]  # keeps its map alive until decoded
        self._charge(b - a)
        if self.encoding == "raw":
            from torch import from_numpy  # imported once; packing and checks do without

            return from_numpy(np.array(payload).reshape(self.image_shape))
        return decode_image(payload, source)

    def latents(self, index: int, views: Sequence[int]) -> np.ndarray:
        """``[len(views), P]`` float64 latents, checked finite like loose latent files."""
        shard, local = self._locate(index)
        lat = np.array(self._open(shard)[2][local, list(views)])
        self._charge(lat.nbytes)
        if not np.isfinite(lat).all():
            bad = [v for v, row in zip(views, lat, strict=True) if not np.isfinite(row).all()]
            raise DatasetFormatError(
                f"latents of {self.split.entries[index]} view(s) {bad} in shard file "
                f"{self.shards / self.names[shard]}.latents.npy (object row {local}) contain "
                "non-finite values; repack that object or remove it from the split"
            )
        return lat

    def manifest(self) -> Iterable[str]:
        """The index's content hash and every shard file's size and mtime (three files per
        chunk: as cheap to confirm as it is complete)."""
        index_file = self.root / INDEX_FILE
        yield f"{index_file}|{hashlib.sha1(index_file.read_bytes()).hexdigest()}"
        for name in self.names:
            for suffix in (".bin", ".offsets.npy", ".latents.npy"):
                st = (self.shards / f"{name}{suffix}").stat()
                yield f"{SHARDS_DIR}/{name}{suffix}|{st.st_size}|{st.st_mtime_ns}"

    full_manifest = manifest


#: offsets (and latent rows x views) checked at once by :func:`check_packed`: its memory does
#: not grow with the shard
CHECK_BLOCK = 1 << 20


def _offsets_problem(
    offsets: np.ndarray, count: int, blob_bytes: int, raw_bytes: int | None, base: Path
) -> str | None:
    """What is wrong with a shard's ``offsets`` (``count + 1`` increasing from 0 up to
    ``blob_bytes``, steps of ``raw_bytes`` for raw payloads), checked block by block."""
    increasing = (
        f"{base}.offsets.npy: expected {count + 1} increasing offsets from 0, "
        f"got shape {offsets.shape}"
    )
    if offsets.shape != (count + 1,) or offsets[0] != 0:
        return increasing
    mismatch = offsets[-1] != blob_bytes
    for i in range(0, count, CHECK_BLOCK):
        steps = np.diff(offsets[i : i + CHECK_BLOCK + 1])
        if (steps < 0).any():
            return increasing
        mismatch = mismatch or bool(raw_bytes and (steps != raw_bytes).any())
    if mismatch:
        return f"{base}.offsets.npy does not match {base}.bin ({blob_bytes} bytes)"
    return None


def _latents_problem(lat: np.ndarray, store: PackedStore, start: int, base: Path) -> str | None:
    """The objects and views of a shard's ``latents [M, V, P]`` with non-finite values (the
    first five and a count), checked block by block."""
    rows_per_block = max(1, CHECK_BLOCK // max(1, lat.shape[1] * lat.shape[2]))
    bad: list[tuple[int, int]] = []
    total = 0
    for r in range(0, len(lat), rows_per_block):
        rows, cols = np.nonzero(~np.isfinite(lat[r : r + rows_per_block]).all(axis=2))
        total += len(rows)
        bad += [(r + i, c) for i, c in zip(rows[:5].tolist(), cols[:5].tolist(), strict=True)]
    if not total:
        return None
    named = ", ".join(f"{store.split.entries[start + r]} view {c}" for r, c in bad[:5])
    more = f" and {total - 5} more" if total > 5 else ""
    return f"{base}.latents.npy contains non-finite values: {named}{more}"


def check_packed(
    root: Path, split: str, splits_dir: str | Path | None = None, workers: int = 8
) -> tuple[int, int, list[str]]:
    """Every check of one packed split (``equissl-validate`` on a packed root): the index and
    shard files (:class:`PackedStore`), each shard's offsets and latents against its record,
    and every payload decoded. Memory does not grow with the shards: arrays are checked
    block by block, payloads decoded a few objects ahead of the results.

    Returns:
        ``(objects, payloads decoded, problems)``; each problem names its file.
    """
    try:
        store = PackedStore(root, split, splits_dir)
    except DatasetFormatError as err:
        return 0, 0, [str(err)]
    problems: list[str] = []
    n = len(store.split)
    views, dim = store.views_per_object, store.latent_dim
    raw_bytes = int(np.prod(store.image_shape)) if store.encoding == "raw" else None
    for k, info in enumerate(store.index["splits"][split]["shards"]):
        blob, offsets, lat = store._open(k)
        base = store.shards / info["shard"]
        m = info["stop"] - info["start"]
        found = [_offsets_problem(offsets, m * views, len(blob), raw_bytes, base)]
        if lat.shape != (m, views, dim) or lat.dtype.kind != "f":
            found.append(
                f"{base}.latents.npy is {lat.dtype} {lat.shape}; expected float {(m, views, dim)}"
            )
        else:
            found.append(_latents_problem(lat, store, info["start"], base))
        problems += [f for f in found if f]
        del blob, offsets, lat  # the maps: PackedStore bounds what stays mapped
    if problems:
        return n, 0, problems  # payload offsets cannot be trusted

    def decode(index: int) -> list[str]:
        errors = []
        for v in range(views):
            try:
                store.image(index, v)
            except DatasetFormatError as err:
                errors.append(str(err))
        return errors

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for errors in bounded_map(pool, decode, range(n), 4 * max(1, workers)):
            problems += errors
    return n, n * views, problems


STORES = {"loose": LooseStore, "packed": PackedStore}
FORMATS = ("auto", *STORES)


def open_store(
    root: str | Path, split: str, splits_dir: str | Path | None = None, data_format: str = "auto"
) -> LooseStore | PackedStore:
    """The store of ``split``: ``data_format`` ``loose`` | ``packed`` | ``auto`` (packed when
    ``root`` holds ``packed.json``)."""
    root = Path(root)
    if data_format not in FORMATS:
        raise ValueError(f"data.format={data_format!r} is not one of {' | '.join(FORMATS)}")
    if data_format == "auto":
        data_format = "packed" if is_packed(root) else "loose"
    return STORES[data_format](root, split, splits_dir)
