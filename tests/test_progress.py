"""Progress bars suit a log file; loader workers never outnumber the CPUs granted."""

import io
import os
import sys

from equissl.progress import FILE_REFRESH_S, progress_bar, usable_workers


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_bars_redraw_once_a_minute_into_a_file(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    bar = progress_bar(range(3))
    assert bar.mininterval == FILE_REFRESH_S
    bar.close()
    monkeypatch.setattr(sys, "stderr", _Stream(tty=True))
    bar = progress_bar(range(3))
    assert bar.mininterval < 1
    bar.close()


def test_workers_are_capped_at_the_cpus_granted():
    cpus = len(os.sched_getaffinity(0))
    assert usable_workers(cpus + 7) == cpus
    assert usable_workers(0) == 0 and usable_workers(1) == 1


def test_usable_cpus_follow_the_slurm_allocation(monkeypatch):
    from equissl.progress import usable_cpus, usable_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert usable_cpus() == 16 and usable_workers(8) == 8
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")  # a job on a node without CPU binding
    assert usable_cpus() == 3 and usable_workers(8) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1})  # binding narrower still
    assert usable_cpus() == 2
