"""Up-front checks of a 3DIEBench tree (``equissl-validate ROOT``).

Every split entry must exist with the same number of views, every image must decode,
every latent must have the dataset's length and be finite. Problems are collected (not
raised one at a time) so one pass names every offending file.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from equissl.datasets.iebench_format import (
    DatasetFormatError,
    count_views,
    default_splits_dir,
    image_path,
    latent_path,
    load_split,
    read_image,
    read_latent,
)


@dataclass
class ValidationReport:
    """What a validation pass checked and what it found wrong."""

    root: str
    objects: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = (f"{self.root}: checked {self.objects} objects, {self.files} files: "
                f"{'OK' if self.ok else f'{len(self.problems)} problem(s)'}")
        shown = self.problems[:50]
        more = len(self.problems) - len(shown)
        lines = [head, *(f"  - {p}" for p in shown)]
        if more > 0:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)


def _check_object(root: Path, entry: str, views: int, latent_dim: int) -> tuple[int, list[str]]:
    problems: list[str] = []
    try:
        found = count_views(root / entry)
    except DatasetFormatError as err:
        return 0, [str(err)]
    if found != views:
        problems.append(f"{root / entry} has {found} views, the dataset has {views}")
    checked = 0
    for v in range(found):
        for path, read in ((image_path(root, entry, v), read_image),
                           (latent_path(root, entry, v), lambda p: read_latent(p, latent_dim))):
            checked += 1
            try:
                read(path)
            except DatasetFormatError as err:
                problems.append(str(err))
    return checked, problems


def validate_iebench(
    root: str | Path,
    splits_dir: str | Path | None = None,
    workers: int = 8,
    progress: bool = True,
) -> ValidationReport:
    """Check a 3DIEBench(-T) tree; returns a report listing every problem found."""
    root = Path(root)
    report = ValidationReport(root=str(root))
    sdir = Path(splits_dir) if splits_dir else default_splits_dir(root)
    if not root.is_dir():
        report.problems.append(f"dataset root {root} is not a directory")
        return report
    split_names = sorted(p.name[: -len("_images.npy")] for p in sdir.glob("*_images.npy"))
    if not split_names:
        report.problems.append(f"no split files *_images.npy in {sdir}")
        return report
    entries: list[str] = []
    for name in split_names:
        try:
            entries += load_split(root, name, sdir).entries
        except DatasetFormatError as err:
            report.problems.append(str(err))
    if not entries:
        return report
    try:
        views = count_views(root / entries[0])
        latent_dim = len(read_latent(latent_path(root, entries[0], 0)))
    except DatasetFormatError as err:
        report.problems.append(f"first object unreadable, cannot infer the format: {err}")
        return report
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda e: _check_object(root, e, views, latent_dim), entries)
        for checked, problems in tqdm(jobs, total=len(entries), desc=f"validate {root.name}",
                                      unit="obj", disable=not progress):
            report.objects += 1
            report.files += checked
            report.problems += problems
    return report
