"""equissl.training.signals.requeue_after_training in a child process, with a fake
``scontrol`` on PATH that prints the job as slurm-wlm 22.05 does and records its arguments:
the time limit's SIGTERM requeues, then the process dies of it; ``scancel``'s does not
requeue; SIGUSR1 requeues and the work goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import os, signal, time
from equissl.training.signals import requeue_after_training
with requeue_after_training():
    os.kill(os.getpid(), signal.{sig})
    time.sleep(1)
print("work went on")
"""


def run_child(tmp_path: Path, sig: str, state: str, reason: str) -> tuple[int, list[str], str]:
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    show = f"JobId=1234 JobState={state} Reason={reason} Requeue=1 Restarts=0"
    fake = bin_dir / "scontrol"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\necho '{show}'\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "1234"}
    env.pop("SLURM_ARRAY_JOB_ID", None)
    res = subprocess.run(
        [sys.executable, "-c", CHILD.format(sig=sig)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    asked = calls.read_text().splitlines() if calls.exists() else []
    return res.returncode, asked, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("state", "reason", "asked"),
    [
        ("COMPLETING", "TimeLimit", ["show job -o 1234", "requeue 1234"]),
        ("COMPLETING", "None", ["show job -o 1234"]),  # scancel
        ("RUNNING", "None", ["show job -o 1234"]),  # kill, pre-emption notice
    ],
)
def test_sigterm_after_training(tmp_path, state, reason, asked):
    code, calls, out = run_child(tmp_path, "SIGTERM", state, reason)
    assert code == -signal.SIGTERM, out  # dies of it, as without the handler
    assert calls == asked
    assert "work went on" not in out
    assert ("time limit reached after training: requeueing" in out) == ("requeue 1234" in asked)


def test_usr1_after_training_requeues_and_the_work_goes_on(tmp_path):
    code, calls, out = run_child(tmp_path, "SIGUSR1", "RUNNING", "None")
    assert code == 0 and "work went on" in out, out
    assert calls == ["requeue 1234"]
