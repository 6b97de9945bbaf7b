"""equissl.slurm_job against a fake ``scontrol`` on PATH: the job id requeue takes, and
whether a SIGTERM is SLURM's time limit (``scontrol show job`` as slurm-wlm 22.05 prints it
at that moment, measured on a real SLURM: ``JobState=COMPLETING ... Reason=TimeLimit``)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from equissl import slurm_job

# one line of `scontrol show job -o` (shortened), as printed while a job is being stopped
SHOW = (
    "JobId=1234 JobName=equissl-pretrain UserId=root(0) Priority=4294901759 "
    "JobState={state} Reason={reason} Dependency=(null) Requeue=1 Restarts=0 "
    "RunTime=00:01:27 TimeLimit=00:01:00 EndTime=2026-12-05T16:38:35"
)


@pytest.fixture
def scontrol(tmp_path, monkeypatch):
    """Install a fake ``scontrol`` that prints ``out`` with exit status ``rc`` and records
    its arguments; returns the installer and the recorded-arguments file."""
    calls = tmp_path / "calls"

    def install(out: str, rc: int = 0) -> Path:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        fake = bin_dir / "scontrol"
        fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\necho '{out}'\nexit {rc}\n")
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
        return calls

    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    return install


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        ("COMPLETING", "TimeLimit", True),  # the time limit's SIGTERM
        ("TIMEOUT", "TimeLimit", True),
        ("TIMEOUT", "None", True),
        ("COMPLETING", "None", False),  # scancel
        ("CANCELLED", "None", False),
        ("RUNNING", "None", False),  # a SIGTERM from elsewhere (kill, a user's scontrol)
        ("PREEMPTED", "None", False),
    ],
)
def test_time_limit_reached_reads_scontrol(scontrol, state, reason, expected):
    calls = scontrol(SHOW.format(state=state, reason=reason))
    assert slurm_job.time_limit_reached() is expected
    assert calls.read_text().split() == ["show", "job", "-o", "1234"]


def test_time_limit_of_an_array_task_asks_for_the_task(scontrol, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    calls = scontrol(SHOW.format(state="COMPLETING", reason="TimeLimit"))
    assert slurm_job.time_limit_reached()
    assert calls.read_text().split() == ["show", "job", "-o", "77_3"]


def test_no_time_limit_without_slurm_or_an_answer(scontrol, monkeypatch):
    calls = scontrol(SHOW.format(state="COMPLETING", reason="TimeLimit"), rc=1)
    assert not slurm_job.time_limit_reached()  # scontrol failed: not assumed
    monkeypatch.delenv("SLURM_JOB_ID")
    calls.unlink()
    assert not slurm_job.time_limit_reached() and not calls.exists()  # not asked at all
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not slurm_job.time_limit_reached()  # no scontrol


def test_request_requeue_says_what_happened(scontrol):
    calls = scontrol("")
    assert slurm_job.request_requeue() == (True, "requeued SLURM job 1234")
    assert calls.read_text().split() == ["requeue", "1234"]
    scontrol("slurm_requeue error: Job is no longer pending execution", rc=1)
    accepted, message = slurm_job.request_requeue()
    assert not accepted and "scontrol requeue 1234 failed (1)" in message


@pytest.mark.parametrize(
    ("ask", "expected"),
    [
        (slurm_job.time_limit_reached, True),
        (slurm_job.request_requeue, (True, "requeued SLURM job 1234")),
    ],
)
def test_scontrol_outlives_the_jobs_next_sigterm(tmp_path, monkeypatch, ask, expected):
    """SLURM signals every process of a step, and the time limit's SIGTERM comes twice within
    milliseconds: the second must not kill the ``scontrol`` the first one started. (The fake
    is a bash script: bash keeps the blocked signals it starts with, as scontrol does; dash,
    ``/bin/sh`` here, clears them.)"""
    bin_dir, pid_file = tmp_path / "bin", tmp_path / "pid"
    bin_dir.mkdir()
    fake = bin_dir / "scontrol"
    show = SHOW.format(state="COMPLETING", reason="TimeLimit")
    fake.write_text(
        f"#!/bin/bash\necho $$ > {pid_file}.tmp\nmv {pid_file}.tmp {pid_file}\n"
        f"sleep 1\necho '{show}'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)

    def second_sigterm() -> None:
        while not pid_file.exists():
            time.sleep(0.01)
        os.kill(int(pid_file.read_text()), signal.SIGTERM)

    killer = threading.Thread(target=second_sigterm)
    killer.start()
    try:
        assert ask() == expected
    finally:
        killer.join(timeout=10)


def test_scontrol_leaves_this_process_signal_mask_as_it_was(monkeypatch):
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(slurm_job.ScontrolFailed, match="No such file"):
        slurm_job.scontrol("show", "config", timeout=5)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before
