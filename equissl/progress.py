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


def usable_cpus() -> int:
    """CPUs this process may use: its affinity (a cgroup or SLURM's task binding), and at
    most ``SLURM_CPUS_PER_TASK`` inside a SLURM job (where binding is off, the allocation is
    still the budget)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cpus = min(cpus, int(slurm))
    return max(1, cpus)


def usable_workers(requested: int) -> int:
    """Loader worker processes: ``requested``, at most the CPUs this process may use
    (:func:`usable_cpus`; more workers than CPUs only contend, and torch warns about it).
    Items do not depend on the worker count."""
    return max(0, min(int(requested), usable_cpus()))
