"""Checks of a 3DIEBench tree, shared by the loader and ``equissl-validate ROOT``.

One set of check functions serves both, so the start-up checks and the validator agree:

* :func:`check_split` — the cheap checks run when :class:`~equissl.datasets.iebench.
  IEBenchDataset` is built (start-up of training and evaluation): both split files present
  and readable, labels integer, known and in ``0..54``, entries unique and inside the root,
  no object shared with another split, and — on a sample of objects — view numbering, the
  latent files beside the images, latent length and one decoding image. Raises
  :class:`DatasetFormatError` listing every problem found.
* :func:`equissl.datasets.validate_tree.validate_iebench` — the same checks on every split
  and every object, plus every image decoded and every latent read; problems are collected,
  not raised, so one pass names every offending file.
* :func:`check_split_labels` / :func:`check_dataset_labels` — the labels of the train and
  val splits of the evaluation stage (unknown or out-of-range labels raise; val classes
  absent from train are a logged warning with a count).

The number of views per object and the latent length are the *majority* over the objects
checked, so a minority of odd objects is named rather than the good ones.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from equissl.datasets.iebench_format import (
    DatasetFormatError,
    Split,
    default_splits_dir,
    image_path,
    latent_path,
    load_split,
    read_image,
    read_latent,
)

log = logging.getLogger(__name__)

# Labels of 3DIEBench are the index of the synset among the 55 ShapeNetCore synsets.
IEBENCH_NUM_CLASSES = 55
# Objects sampled by the start-up check (spread evenly over the split, first and last kept).
DEFAULT_SAMPLE = 16
_SHOWN = 5  # entries listed per problem before "… and N more"


def _listing(items: Sequence[Any], limit: int = _SHOWN) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" … and {len(items) - limit} more" if len(items) > limit else "")


def split_files(splits_dir: Path, split: str) -> tuple[Path, Path]:
    """``({split}_images.npy, {split}_labels.npy)`` in ``splits_dir``."""
    return splits_dir / f"{split}_images.npy", splits_dir / f"{split}_labels.npy"


def bounded_map(
    pool: Executor, fn: Callable[[Any], Any], items: Iterable[Any], window: int
) -> Iterator[Any]:
    """``pool.map(fn, items)``, results in order, with at most ``window`` calls submitted
    ahead of the one consumed: ``Executor.map`` submits every call at once, which holds a
    future (and, until it is consumed, a result) per object of a 52 k-object split."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# ----------------------------------------------------------------------------- labels
def check_labels(
    labels: np.ndarray,
    source: str | Path,
    entries: Sequence[str] | None = None,
    num_classes: int | None = IEBENCH_NUM_CLASSES,
    allow_unknown: bool = False,
) -> list[str]:
    """Problems of one split's labels ``[N]`` (each message names ``source`` and the entries).

    Args:
        labels: ``[N]`` integer class indices; ``-1`` means unknown.
        source: the file (or split) the labels came from, named in every message.
        entries: object paths of the split, named next to bad labels when given.
        num_classes: labels must be ``< num_classes``; ``None`` sets no upper bound.
        allow_unknown: accept ``-1``.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        return [f"{source}: labels must be integers (int64), got {labels.dtype}"]
    labels = labels.astype(np.int64)

    def where(mask: np.ndarray) -> str:
        idx = np.flatnonzero(mask).tolist()
        named = [f"#{i} {entries[i]!r}" if entries is not None else f"#{i}" for i in idx]
        return _listing([f"{n}={labels[i]}" for n, i in zip(named, idx, strict=True)])

    problems = []
    low = -1 if allow_unknown else 0
    below = labels < low
    if below.any():
        what = "below -1" if allow_unknown else "negative (unknown labels are not allowed here)"
        problems.append(f"{source}: {int(below.sum())} label(s) {what}: {where(below)}")
    if num_classes is not None:
        above = labels >= num_classes
        if above.any():
            problems.append(
                f"{source}: {int(above.sum())} label(s) ≥ {num_classes} (labels are the index "
                f"of the class among {num_classes}, 0..{num_classes - 1}): {where(above)}"
            )
    return problems


def unseen_labels_warning(
    train_labels: np.ndarray, val_labels: np.ndarray, names: tuple[str, str]
) -> str | None:
    """A warning when known val labels ``[M]`` contain classes absent from train ``[N]``."""
    train = set(np.asarray(train_labels).tolist())
    val = np.asarray(val_labels)
    unseen = ~np.isin(val, list(train)) & (val >= 0)
    if not unseen.any():
        return None
    classes = sorted(set(val[unseen].tolist()))
    return (
        f"{names[1]}: {int(unseen.sum())} object(s) of {len(classes)} class(es) absent from "
        f"{names[0]} ({_listing(classes, 10)}); a classifier trained on {names[0]} scores them "
        "as errors"
    )


def check_split_labels(
    train_labels: np.ndarray,
    val_labels: np.ndarray,
    names: tuple[str, str] = ("train labels", "val labels"),
    num_classes: int | None = None,
) -> list[str]:
    """Check the labels of an evaluation's train ``[N]`` and val ``[M]`` splits.

    All ``-1`` (an unlabelled dataset) is fine: no classification probe runs. Otherwise
    every label must be known and ``< num_classes`` (when given).

    Returns:
        warnings (also logged): val classes absent from train, with their count.
    Raises:
        DatasetFormatError: labels below -1, unknown labels in a labelled dataset, labels out
            of range; the message names the split source and the entries.
    """
    pairs = tuple(zip(names, (np.asarray(train_labels), np.asarray(val_labels)), strict=True))
    labelled = any((lab >= 0).any() for _, lab in pairs)
    problems = [
        p
        for name, lab in pairs
        for p in check_labels(lab, name, None, num_classes, allow_unknown=not labelled)
    ]
    if problems:
        raise DatasetFormatError("bad labels:\n  - " + "\n  - ".join(problems))
    warning = unseen_labels_warning(pairs[0][1], pairs[1][1], names) if labelled else None
    if warning:
        log.warning(warning)
    return [warning] if warning else []


def labels_source(dataset: Any) -> str:
    """The file a dataset's labels came from, else ``split <name> of <root>``."""
    split = getattr(dataset, "split", None)
    source = getattr(split, "labels_file", None)
    if source:
        return str(source)
    return f"split {getattr(dataset, 'split_name', '?')} of {getattr(dataset, 'root', '?')}"


def check_dataset_labels(train: Any, val: Any) -> list[str]:
    """:func:`check_split_labels` on two datasets exposing ``labels`` ``[N]`` int64."""
    return check_split_labels(train.labels, val.labels, (labels_source(train), labels_source(val)))


# ----------------------------------------------------------------------------- entries
def check_entries(entries: Sequence[str], source: str | Path) -> list[str]:
    """Problems of a split's object paths: empty, outside the root, listed twice."""
    problems = []
    bad = [e for e in entries if not e or any(p in ("..", ".", "") for p in e.split("/"))]
    if bad:
        problems.append(
            f"{source}: {len(bad)} entries not of the form /synset/obj_id/ inside the "
            f"root: {_listing([repr(e) for e in bad])}"
        )
    twice = sorted(e for e, n in Counter(entries).items() if n > 1)
    if twice:
        problems.append(
            f"{source}: {len(twice)} object(s) listed more than once: "
            f"{_listing([repr(e) for e in twice])}"
        )
    return problems


def check_overlap(splits: dict[str, Split]) -> list[str]:
    """Objects listed in two splits (train/val leakage), naming both split files."""
    problems = []
    names = sorted(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = sorted(set(splits[a].entries) & set(splits[b].entries))
            if shared:
                problems.append(
                    f"{splits[a].images_file} and {splits[b].images_file}: {len(shared)} "
                    f"object(s) in both {a} and {b}: {_listing([repr(e) for e in shared])}"
                )
    return problems


def check_synset_labels(splits: dict[str, Split]) -> list[str]:
    """Objects of one synset folder that carry different labels, within or across splits:
    in the 3DIEBench layout the label is the synset's index, so a mixed synset means the
    split files were edited or written against another tree."""
    seen: dict[str, dict[int, tuple[str, str]]] = {}  # synset -> label -> (split, entry)
    for name, split in splits.items():
        for entry, label in zip(split.entries, split.labels.tolist(), strict=False):
            parts = [p for p in str(entry).split("/") if p]
            if len(parts) < 2 or label < 0:
                continue
            seen.setdefault(parts[0], {}).setdefault(int(label), (name, entry))
    problems = []
    for synset, labels in sorted(seen.items()):
        if len(labels) > 1:
            examples = "; ".join(
                f"{entry} -> {label} ({split}_labels.npy)"
                for label, (split, entry) in sorted(labels.items())[:_SHOWN]
            )
            problems.append(
                f"objects of synset {synset} carry {len(labels)} different labels "
                f"{sorted(labels)[:_SHOWN]} (e.g. {examples}); one synset is one class"
            )
    return problems


def check_split_arrays(split: Split, name: str, root: Path) -> list[str]:
    """Label, entry and emptiness checks of one loaded split (names its files)."""
    if len(split) == 0:
        return [f"{split.images_file}: split {name!r} of {root} is empty"]
    return check_entries(split.entries, split.images_file) + check_labels(
        split.labels, split.labels_file, split.entries
    )


# ----------------------------------------------------------------------------- objects
@dataclass
class ObjectScan:
    """What one listing of an object directory shows."""

    views: int = 0  # number of image_{i}.jpg (0 when the directory is unusable)
    problems: list[str] = field(default_factory=list)


def scan_object(object_dir: Path) -> ObjectScan:
    """List ``object_dir`` once: views numbered ``0..V-1``, a latent beside every image."""
    if not object_dir.is_dir():
        kind = "is not a directory" if object_dir.exists() else "not found"
        return ObjectScan(0, [f"object directory {object_dir} {kind}"])
    images, latents = set(), set()
    for p in object_dir.iterdir():
        stem, _, ext = p.name.partition(".")
        prefix, _, number = stem.partition("_")
        if number.isdigit() and (prefix, ext) in (("image", "jpg"), ("latent", "npy")):
            (images if prefix == "image" else latents).add(int(number))
    if not images:
        return ObjectScan(0, [f"no image_*.jpg in {object_dir}"])
    scan = ObjectScan(len(images))
    gaps = sorted(set(range(max(images) + 1)) - images)
    if gaps:
        scan.problems.append(
            f"views in {object_dir} are not numbered 0..{len(images) - 1}: missing "
            f"{_listing([f'image_{g}.jpg' for g in gaps])}"
        )
    missing = sorted(images - latents)
    if missing:
        scan.problems.append(
            f"{len(missing)} latent(s) missing in {object_dir}: "
            f"{_listing([f'latent_{m}.npy' for m in missing])}"
        )
    return scan


def majority(counts: Counter) -> Any:
    """Most common value (ties: the smallest, so the choice is deterministic)."""
    top = max(counts.values())
    return min(v for v, n in counts.items() if n == top)


def minority_problems(
    views: dict[str, int], lengths: dict[str, dict[int, Sequence[int]]], root: Path
) -> tuple[int, int, list[str]]:
    """Majority view count and latent length, and a problem per object/file off them."""
    problems = []
    view_counts = Counter(v for v in views.values() if v)
    n_views = majority(view_counts) if view_counts else 0
    for entry, v in views.items():
        if v and v != n_views:
            problems.append(
                f"{root / entry} has {v} views; {view_counts[n_views]} of {len(views)} "
                f"objects have {n_views}"
            )
    length_counts: Counter = Counter()
    for per_len in lengths.values():
        for n, ids in per_len.items():
            length_counts[n] += len(ids)
    dim = majority(length_counts) if length_counts else 0
    for entry, per_len in lengths.items():
        for n, ids in sorted(per_len.items()):
            problems += [
                f"latent {latent_path(root, entry, i)} has {n} values where "
                f"{length_counts[dim]} of {sum(length_counts.values())} have {dim}"
                for i in (ids if n != dim else ())
            ]
    return n_views, dim, problems


def _latent_length(path: Path) -> int:
    return len(read_latent(path))


def check_object(
    root: Path,
    entry: str,
    views: Sequence[int] | None = None,
    decode: Sequence[int] | None = None,
) -> tuple[int, int, dict[int, list[int]], list[str]]:
    """Check one object: ``(views found, files read, {latent length: view ids}, problems)``.

    Args:
        views: view ids whose latent is read (negative ids count from the last view);
            ``None``: every view.
        decode: view ids whose image is decoded (same convention); ``None``: every view read.
    """
    scan = scan_object(root / entry)
    problems = list(scan.problems)
    lengths: dict[int, list[int]] = {}
    checked = 0
    if not scan.views:
        return 0, 0, lengths, problems

    def resolve(ids: Sequence[int]) -> list[int]:
        return sorted({v % scan.views for v in ids if -scan.views <= v < scan.views})

    read = range(scan.views) if views is None else resolve(views)
    shown = set(read) if decode is None else set(resolve(decode))
    for v in read:
        checked += 1
        try:
            lengths.setdefault(_latent_length(latent_path(root, entry, v)), []).append(v)
        except DatasetFormatError as err:
            problems.append(str(err))
    for v in sorted(shown):
        checked += 1
        try:
            read_image(image_path(root, entry, v))
        except DatasetFormatError as err:
            problems.append(str(err))
    return scan.views, checked, lengths, problems


# ----------------------------------------------------------------------------- start-up check
@dataclass(frozen=True)
class CheckedSplit:
    """A split that passed :func:`check_split`, with the format read from its sample."""

    split: Split
    views_per_object: int
    latent_dim: int


def _raise(problems: list[str], what: str) -> None:
    if problems:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DatasetFormatError(
            f"{what}: {len(problems)} problem(s) (equissl-validate lists all):\n  - "
            + "\n  - ".join(shown)
            + more
        )


def sample_indices(n: int, sample: int) -> list[int]:
    """``min(n, sample)`` indices spread evenly over ``0..n-1`` (first and last included)."""
    return sorted(set(np.linspace(0, n - 1, min(n, sample)).round().astype(int).tolist()))


def check_split(
    root: str | Path,
    split: str,
    splits_dir: str | Path | None = None,
    sample: int = DEFAULT_SAMPLE,
) -> CheckedSplit:
    """Cheap start-up checks of one split (see module docstring).

    Args:
        root: dataset root holding ``<synset>/<obj_id>/``.
        split: split name (``{split}_images.npy`` / ``{split}_labels.npy``).
        splits_dir: folder of the split files (default ``<root>/data``).
        sample: objects whose directory is listed, first and last latents read and first
            image decoded (evenly spread over the split).
    Raises:
        DatasetFormatError: listing every problem found, each naming its file.
    """
    root = Path(root)
    sdir = Path(splits_dir) if splits_dir else default_splits_dir(root)
    loaded = load_split(root, split, sdir)
    problems = check_split_arrays(loaded, split, root)
    _raise(problems, f"split {split!r} of {root}")
    others = {split: loaded}
    for other in sorted(p.name[: -len("_images.npy")] for p in sdir.glob("*_images.npy")):
        if other != split:
            try:
                others[other] = load_split(root, other, sdir)
            except DatasetFormatError:
                pass  # not the split being loaded: equissl-validate reports it
    problems += check_overlap(others) + check_synset_labels(others)
    views: dict[str, int] = {}
    lengths: dict[str, dict[int, list[int]]] = {}
    for i in sample_indices(len(loaded), sample):
        entry = loaded.entries[i]
        views[entry], _, lengths[entry], errs = check_object(root, entry, (0, -1), (0,))
        problems += errs
    n_views, dim, odd = minority_problems(views, lengths, root)
    problems += odd
    _raise(problems, f"split {split!r} of {root}")
    return CheckedSplit(loaded, n_views, dim)
