"""Atomic file writes: readers see the old file or the whole new one, never a torn write.

A job killed mid-write (SLURM pre-emption, Ctrl-C) must not leave a truncated checkpoint,
image or results file that later counts as complete. We write to a temporary file in the
target's directory, fsync it, and ``os.replace`` it onto the target. The file gets the
permissions of an ordinary ``open`` under the process umask (``mkstemp`` alone would give
0600). A temporary file left by a killed writer is named
``.<target name>.<host>-<pid>.<random>.tmp``; :func:`remove_stale_tmp` deletes those at
start-up (all of them, or only those whose writer is dead where other writers may be
active).
"""

from __future__ import annotations

import os
import re
import socket
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


def owner_tag() -> str:
    """``<host>-<pid>``: written into temporary names so that a later process can tell
    whether their writer is still alive."""
    return f"{socket.gethostname()}-{os.getpid()}"


def written_by_dead_process(name: str) -> bool:
    """Whether a temporary file or folder name carries the :func:`owner_tag` of a process of
    this host that no longer runs (a writer on another host cannot be checked: False)."""
    match = re.search(re.escape(socket.gethostname()) + r"-(\d+)\.", name)
    if not match:
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def remove_stale_tmp(directory: str | Path, only_dead_writers: bool = False) -> list[Path]:
    """Delete the temporary files of interrupted :func:`atomic_open` writes in ``directory``.

    Args:
        directory: where to look (not recursively).
        only_dead_writers: remove only temporaries whose writer, on this host, has died
            (:func:`written_by_dead_process`); for folders that several processes write into
            at once (packed shards of an array job). Without it, every temporary goes: call
            that only while no other writer can be active (start-up of the one owner).

    Returns:
        The paths removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [
        p
        for p in directory.glob(".*.tmp")
        if p.is_file() and (not only_dead_writers or written_by_dead_process(p.name))
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@contextmanager
def atomic_open(path: str | Path, exclusive: bool = False) -> Iterator[BinaryIO]:
    """Binary file handle whose content replaces ``path`` only if the block succeeds.

    Args:
        path: the target.
        exclusive: create ``path`` only if it does not exist yet: the finished file is
            hard-linked into place, so of several processes creating it at once exactly one
            succeeds and the others get ``FileExistsError``, and no reader ever sees it half
            written (unlike ``O_EXCL``, which creates the name before the content).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            yield f
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)
            Path(tmp).unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_create_text(path: str | Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists (:func:`atomic_open` with
    ``exclusive``); returns whether this call created it."""
    try:
        with atomic_open(path, exclusive=True) as f:
            f.write(text.encode())
    except FileExistsError:
        return False
    return True
