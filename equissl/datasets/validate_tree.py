"""``equissl-validate``'s full pass over a 3DIEBench tree, loose or packed: every split,
every object, every file, with problems collected rather than raised so that one pass names
every offending file. The per-split and per-object checks it runs are those of
:mod:`equissl.datasets.validate` (the loader's start-up checks) and, for packed trees,
:func:`equissl.datasets.packed.check_packed`."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from equissl.datasets.iebench_format import (
    DatasetFormatError,
    Split,
    default_splits_dir,
    load_split,
)
from equissl.datasets.packed import check_packed, is_packed
from equissl.datasets.validate import (
    bounded_map,
    check_entries,
    check_object,
    check_overlap,
    check_split_arrays,
    check_synset_labels,
    minority_problems,
    split_files,
    unseen_labels_warning,
)
from equissl.progress import usable_workers


@dataclass
class ValidationReport:
    """What a validation pass checked and what it found wrong (or only suspicious)."""

    root: str
    objects: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        status = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        if self.warnings:
            status += f", {len(self.warnings)} warning(s)"
        head = f"{self.root}: checked {self.objects} objects, {self.files} files: {status}"
        shown = self.problems[:50]
        more = len(self.problems) - len(shown)
        lines = [head, *(f"  - {p}" for p in shown)]
        if more > 0:
            lines.append(f"  ... and {more} more")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def compact_lengths(per_len: dict[int, list[int]], views: int) -> dict[int, Sequence[int]]:
    """``{latent length: view ids}`` of one object, its usual case (every view's latent of
    one length) kept as a ``range``: the pass keeps one per object until the end."""
    if len(per_len) == 1:
        ((length, ids),) = per_len.items()
        if ids == list(range(views)):
            return {length: range(views)}
    return per_len


def _load_splits(
    root: Path, sdir: Path, required: Sequence[str], report: ValidationReport
) -> dict[str, Split]:
    """Every split named by a file in ``sdir`` or in ``required``, loaded and checked."""
    found = {p.name.rsplit("_", 1)[0] for p in sdir.glob("*_images.npy")}
    found |= {p.name.rsplit("_", 1)[0] for p in sdir.glob("*_labels.npy")}
    splits: dict[str, Split] = {}
    for name in sorted(found | set(required)):
        images, labels = split_files(sdir, name)
        absent = [f for f in (images, labels) if not f.is_file()]
        if absent:
            report.problems += [
                f"split file {f} {'is a directory' if f.is_dir() else 'not found'}"
                + (f" (its pair {g.name} exists)" if g.is_file() else "")
                for f, g in ((images, labels), (labels, images))
                if f in absent
            ]
            continue
        try:
            splits[name] = load_split(root, name, sdir)
        except DatasetFormatError as err:
            report.problems.append(str(err))
            continue
        report.problems += check_split_arrays(splits[name], name, root)
    return splits


def validate_iebench(
    root: str | Path,
    splits_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    splits: Sequence[str] = ("train", "val"),
) -> ValidationReport:
    """Check a 3DIEBench(-T) tree, or its packed shards (``equissl-pack``, or
    ``equissl-generate format=packed``: :func:`~equissl.datasets.packed.check_packed`);
    returns a report listing every problem found.

    Args:
        root: dataset root.
        splits_dir: folder of the split files (default ``<root>/data``).
        workers: threads reading and decoding files (default: the CPUs this process may
            use, at most 8: a SLURM allocation or cgroup may grant fewer than the machine has).
        progress: show a progress bar.
        splits: splits that must exist (every other split found in ``splits_dir`` is
            checked too); the first is the training split unseen val labels are compared to.
    """
    root = Path(root)
    workers = usable_workers(8) if workers is None else workers
    report = ValidationReport(root=str(root))
    sdir = Path(splits_dir) if splits_dir else default_splits_dir(root)
    if not root.is_dir():
        report.problems.append(f"dataset root {root} is not a directory")
        return report
    if not sdir.is_dir():
        report.problems.append(
            f"splits folder {sdir} not found (set splits_dir= to the folder holding "
            "{train,val}_{images,labels}.npy)"
        )
        return report
    loaded = _load_splits(root, sdir, splits, report)
    report.problems += check_overlap(loaded) + check_synset_labels(loaded)
    train = loaded.get(splits[0]) if splits else None
    for s in loaded.values():
        if train is not None and s is not train and len(s):
            warning = unseen_labels_warning(
                train.labels, s.labels, (str(train.labels_file), str(s.labels_file))
            )
            report.warnings += [warning] if warning else []
    if is_packed(root):
        for name in loaded:
            objects, files, problems = check_packed(root, name, sdir, workers)
            report.objects += objects
            report.files += files
            report.problems += problems
        return report
    # Every object once, whichever splits list it; unusable entries were reported above.
    entries = list(dict.fromkeys(e for s in loaded.values() for e in s.entries))
    entries = [e for e in entries if not check_entries([e], "")]
    views: dict[str, int] = {}
    lengths: dict[str, dict[int, Sequence[int]]] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = bounded_map(
            pool, lambda e: (e, check_object(root, e, None)), entries, 4 * max(1, workers)
        )
        for entry, (found, checked, per_len, problems) in tqdm(
            jobs, total=len(entries), desc=f"validate {root.name}", unit="obj",
            disable=not progress,
        ):  # fmt: skip
            report.objects += 1
            report.files += checked
            report.problems += problems
            views[entry], lengths[entry] = found, compact_lengths(per_len, found)
    report.problems += minority_problems(views, lengths, root)[2]
    return report
