"""Atomic file writes: readers see the old file or the whole new one, never a torn write.

A job killed mid-write (SLURM pre-emption, Ctrl-C) must not leave a truncated checkpoint,
image or results file that later counts as complete. We write to a temporary file in the
target's directory, fsync it, and ``os.replace`` it onto the target. The file gets the
permissions of an ordinary ``open`` under the process umask (``mkstemp`` alone would give
0600). A temporary file left by a killed writer is named ``.<target name>.<random>.tmp``;
:func:`remove_stale_tmp` deletes those at start-up.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    """The process umask, read without changing it where ``/proc`` allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no read-only query elsewhere: set and put back
    os.umask(mask)
    return mask


def remove_stale_tmp(directory: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted :func:`atomic_open` writes in ``directory``.

    Call only while no writer can be active in ``directory`` (start-up of its one owner).

    Returns:
        The paths removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """Binary file handle whose content replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
