"""Progress bars that suit both a terminal and a log file.

In a terminal a tqdm bar redraws in place. Written to a file (a SLURM ``.out``, ``tee``),
every redraw is kept, and one evaluation left hundreds of bar lines. When stderr is not a
terminal, bars redraw at most once a minute (and at the end), so a log keeps a few lines
per bar and still shows progress.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

#: seconds between redraws when stderr is a file
FILE_REFRESH_S = 60.0


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, redrawn at most every :data:`FILE_REFRESH_S` seconds
    when stderr is not a terminal."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", FILE_REFRESH_S)
    return tqdm(iterable, **kwargs)


def usable_workers(requested: int) -> int:
    """Loader worker processes: ``requested``, at most the CPUs this process may use (a
    SLURM allocation or cgroup may grant fewer than the machine has; more workers than
    CPUs only contend, and torch warns about it). Items do not depend on the worker count."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(int(requested), cpus))
