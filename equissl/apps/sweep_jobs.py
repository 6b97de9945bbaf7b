"""What the SLURM launcher of ``equissl-pretrain -m hydra/launcher=slurm`` (and
``equissl-evaluate -m``) adds to hydra-submitit-launcher's; the launcher class itself lives in
``hydra_plugins/equissl_launcher`` (Hydra loads launchers only from that namespace).

* **A failed job fails.** Hydra catches a task's exception and hands submitit a "failed"
  return value, which submitit records as a success: the job ended ``COMPLETED 0:0`` and
  its traceback lived only in the submitting console. Here the job re-raises it, so the
  traceback is in the job's own log (``<sweep>/.submitit/<job>_0_log.err``) and SLURM shows
  the job ``FAILED``.
* **The job is named after its run folder** (``scontrol update JobName=``, by the command
  once its run folder is known: :func:`name_sweep_job`), so ``squeue``
  and ``sacct`` tell the jobs of a sweep apart instead of listing ``cli`` n times.
* **The submitter ends with a table**: per job its SLURM id, state, run folder and headline
  (the first headline metric of ``<run>/eval/results.json`` when the job evaluated, else
  the step of ``last.ckpt``), also when some jobs failed (then it exits 1 after the table).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from equissl.slurm_job import ScontrolFailed, scontrol, show_job, slurm_job_id

log = logging.getLogger(__name__)

#: states of a job that has not ended
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


def name_sweep_job(name: str) -> None:
    """Rename the SLURM job of a sweep (submitit's) that this process runs in after its run
    folder; best effort, and nothing for other jobs (an ``sbatch --job-name`` stays)."""
    job = slurm_job_id()  # <array>_<task>: a plain id of an array task may name the array
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or not job:
        return
    if os.environ.get("SLURM_PROCID", "0") != "0":
        return
    try:
        scontrol("update", f"JobId={job}", f"JobName={name}", timeout=30)
    except ScontrolFailed as err:
        log.info("could not name SLURM job %s: %s", job, err)


def headline(run: Path) -> str:
    """The first headline metric of ``<run>/eval/results.json``, else the step of
    ``last.ckpt``, else "-"."""
    from equissl.eval.plots import is_headline

    results = run / "eval" / "results.json"
    if results.is_file():
        metrics = json.loads(results.read_text()).get("metrics", {})
        for key, value in metrics.items():
            if is_headline(key):
                return f"{key} {value:.3g}"
    ckpt = run / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        from equissl.checkpointing import load_checkpoint

        step = load_checkpoint(ckpt, mmap=True).get("global_step", "?")
        return f"last.ckpt at step {step}"
    return "-"


def slurm_state(job_id: str) -> str:
    """The job's state as ``scontrol show job`` gives it (no accounting database needed),
    or ``"unknown"``."""
    try:
        return show_job(job_id).get("JobState", "unknown")
    except ScontrolFailed:
        return "unknown"


def sweep_table(jobs: Sequence[Any], folders: Sequence[Path]) -> str:
    """Markdown table of the sweep's jobs (submitit jobs, each waited for): SLURM id,
    state, run folder, headline."""
    lines = ["", "| job | state | run folder | headline |", "|---|---|---|---|"]
    for job, folder in zip(jobs, folders, strict=False):
        try:
            job.wait()
        except Exception:  # noqa: BLE001, S110 (a failed job is a row, not an error here)
            pass
        state = final_state(job.job_id)
        lines.append(f"| {job.job_id} | {state} | {folder} | {headline(folder)} |")
    return "\n".join(lines) + "\n"


def final_state(job_id: str, timeout: float = 300) -> str:
    """The job's state once SLURM has finished it (submitit sees a job's result file a
    moment before SLURM ends the job), or the last state seen after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        state = slurm_state(job_id)
        if state not in ACTIVE or time.monotonic() > deadline:
            return state
        time.sleep(1)
