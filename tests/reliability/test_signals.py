"""SIGTERM / SIGUSR1: a checkpoint at the next step boundary, then a documented exit code;
equissl (not Lightning) requeues on SLURM's SIGUSR1."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from ft_helpers import fast_args, run, run_dir, start, wait_for_steps

from equissl.checkpointing import load_checkpoint
from equissl.training.signals import EXIT_OK, EXIT_RESUMABLE

# No periodic or epoch checkpoints: only the signal can have written last.ckpt.
QUIET = ("checkpoint.every_n_steps=0", "checkpoint.every_n_epochs=0")


@pytest.mark.e2e
def test_sigterm_checkpoints_exits_75_and_the_same_command_continues(iebench_tree, tmp_path):
    args = fast_args(iebench_tree, 1000, *QUIET)
    proc = start(args, tmp_path)
    wait_for_steps(proc, tmp_path, 3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_RESUMABLE, err[-3000:]
    assert "SIGTERM: stopped after step" in out + err
    d = run_dir(tmp_path)
    stopped = load_checkpoint(d / "checkpoints" / "last.ckpt")["global_step"]
    logged = [json.loads(ln)["step"] for ln in (d / "step_losses.jsonl").read_text().splitlines()]
    assert stopped >= 3 and logged == list(range(1, stopped + 1))

    # a larger or smaller budget keeps the run directory (budget is not hashed)
    again = run(fast_args(iebench_tree, stopped + 2, *QUIET), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert run_dir(tmp_path) == d
    logged = [json.loads(ln)["step"] for ln in (d / "step_losses.jsonl").read_text().splitlines()]
    assert logged == list(range(1, stopped + 3))


def signalled_under_fake_slurm(
    root, tmp_path, signum: int, show_job: str = ""
) -> tuple[subprocess.Popen, str, str, Path]:
    """A run in SLURM job 4242 with a fake ``scontrol`` (records its arguments, answers
    ``show job`` with ``show_job``) gets ``signum`` after step 2 and ends: the process, its
    stdout and stderr, and the file of recorded ``scontrol`` calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls"
    fake = bin_dir / "scontrol"
    answer = f'[ "$1" = show ] && echo "{show_job}"\n' if show_job else ""
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n{answer}exit 0\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    proc = start(fast_args(root, 1000, *QUIET), tmp_path, env=env)
    wait_for_steps(proc, tmp_path, 2)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return proc, out, err, calls


@pytest.mark.e2e
def test_sigusr1_requeues_through_scontrol(iebench_tree, tmp_path):
    proc, out, err, calls = signalled_under_fake_slurm(iebench_tree, tmp_path, signal.SIGUSR1)
    assert proc.returncode == EXIT_OK, err[-3000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    assert "SLURM job requeued" in out + err
    assert load_checkpoint(run_dir(tmp_path) / "checkpoints" / "last.ckpt")["global_step"] >= 2


@pytest.mark.e2e
@pytest.mark.parametrize(("reason", "requeued"), [("TimeLimit", True), ("None", False)])
def test_sigterm_requeues_only_at_the_time_limit(iebench_tree, tmp_path, reason, requeued):
    """SIGTERM under SLURM: rank 0 asks ``scontrol show job`` why; at the time limit
    (``Reason=TimeLimit``, as SLURM says while stopping such a job) it requeues — before the
    checkpoint, which must fit in SLURM's KillWait — and exits 0; after ``scancel`` it
    checkpoints and exits 75 without requeueing."""
    show_job = f"JobId=4242 JobState=COMPLETING Reason={reason}"
    proc, out, err, calls = signalled_under_fake_slurm(
        iebench_tree, tmp_path, signal.SIGTERM, show_job
    )
    asked = ["show job -o 4242"] + (["requeue 4242"] if requeued else [])
    assert calls.read_text().splitlines() == asked
    assert proc.returncode == (EXIT_OK if requeued else EXIT_RESUMABLE), err[-3000:]
    assert ("SLURM job requeued" in out + err) == requeued
    assert load_checkpoint(run_dir(tmp_path) / "checkpoints" / "last.ckpt")["global_step"] >= 2
