"""What a command's start put into its output folder, and taking it back when the command
is refused.

Before a job runs, Hydra creates the output folder (and any missing parents), writes
``.hydra/{config,hydra,overrides}.yaml`` and opens ``<job>.log``. A command refused at start
(a setting out of range, a changed recipe on resume, a run folder in use, a missing data
root) must leave the disk as it found it: otherwise each refused try leaves a run folder
behind, and in a folder that already held a run, ``.hydra/config.yaml`` would then describe
the refused command rather than the run in the folder.

:func:`note` records a folder's state when the Hydra run starts (a Hydra callback, before
Hydra writes anything); :func:`taken_back_if_refused` wraps the job and, when the job is
refused, returns the folder to that state:

* a folder this command created, holding nothing but Hydra's files, is removed with the
  parents the command created for it (anything else written there is kept);
* in a folder that existed, ``.hydra`` gets its earlier files back (or is removed when it
  was not there) and a log file the command started is removed; an earlier log keeps the
  lines appended to it.

Jobs of a sweep run on a cluster (submitit) start in other processes; only the folder
creation there is undone (a job folder inside a sweep folder this command created).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from equissl.atomic import atomic_write_bytes


@dataclass(frozen=True)
class FolderBefore:
    """An output folder as it was before the command's Hydra start."""

    existed: bool
    #: ``{file name: bytes}`` of its ``.hydra`` record, ``None`` when it had none
    record: dict[str, bytes] | None
    #: names of the log files it held
    logs: frozenset[str]
    #: the topmost folder the command creates for it (itself or a missing parent)
    created_from: Path | None


_BEFORE: dict[Path, FolderBefore] = {}


def note(folder: str | Path | None, output_subdir: str | None) -> None:
    """Record ``folder``'s state (once per process; the first state is the one to restore)."""
    if not folder:
        return
    path = Path(folder).resolve()
    if path in _BEFORE:
        return
    top, probe = None, path
    while not probe.exists():
        top, probe = probe, probe.parent
    record = path / (output_subdir or ".hydra")
    _BEFORE[path] = FolderBefore(
        existed=top is None,
        record={p.name: p.read_bytes() for p in record.glob("*.yaml")} if record.is_dir() else None,
        logs=frozenset(p.name for p in path.glob("*.log")) if path.is_dir() else frozenset(),
        created_from=top,
    )


def note_sweep(sweep_dir: str | Path | None, output_subdir: str | None) -> None:
    """Record a sweep folder and every job folder already in it."""
    note(sweep_dir, output_subdir)
    if sweep_dir and Path(sweep_dir).is_dir():
        for job_dir in Path(sweep_dir).iterdir():
            if job_dir.is_dir():
                note(job_dir, output_subdir)


def made_by_this_command(folder: str | Path) -> bool:
    """Whether ``folder`` (or a folder above it) did not exist when the command started."""
    path = Path(folder).resolve()
    return any(
        not before.existed and (path == noted or noted in path.parents)
        for noted, before in _BEFORE.items()
    )


def _before(folder: Path) -> FolderBefore | None:
    path = folder.resolve()
    if path in _BEFORE:
        return _BEFORE[path]
    if made_by_this_command(path):  # a job folder inside a sweep folder made now
        return FolderBefore(existed=False, record=None, logs=frozenset(), created_from=path)
    return None


def take_back(folder: str | Path, output_subdir: str | None) -> None:
    """Return ``folder`` to its state before the command's start (see the module doc)."""
    folder = Path(folder).resolve()
    before = _before(folder)
    if before is None or not folder.is_dir():
        return
    record = folder / (output_subdir or ".hydra")
    if not before.existed:
        hydra_files = {record.name} | {p.name for p in folder.glob("*.log") if p.is_file()}
        if all(p.name in hydra_files for p in folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
            _remove_empty_parents(folder.parent, before.created_from)
        return
    if before.record is None:
        shutil.rmtree(record, ignore_errors=True)
    else:
        for name, data in before.record.items():
            atomic_write_bytes(record / name, data)
    for log in folder.glob("*.log"):
        if log.name not in before.logs and log.is_file():
            log.unlink()


def _remove_empty_parents(path: Path, top: Path | None) -> None:
    while top is not None and (path == top or top in path.parents):
        try:
            path.rmdir()  # only an empty folder
        except OSError:
            return
        path = path.parent


@contextmanager
def taken_back_if_refused(
    output_dir: Callable[[], tuple[str, str | None]], refused: Callable[[BaseException], bool]
) -> Iterator[None]:
    """Run the job; when it raises an error ``refused`` accepts, :func:`take_back` the
    folder ``output_dir()`` names (``(folder, output_subdir)``) and re-raise.

    A job stopped by a signal, or failing in a library mid-run, keeps its folder: its log
    and record describe what ran."""
    try:
        yield
    except BaseException as err:
        if refused(err):
            take_back(*output_dir())
        raise
