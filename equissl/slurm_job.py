"""The SLURM job this process runs in, and asking SLURM to requeue it. Standard library
only: the batch shell (``equissl.apps.requeueable``) imports it before anything else."""

from __future__ import annotations

import os
import re
import subprocess


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes (array jobs: ``<array job>_<task>``), if under SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def request_requeue() -> tuple[bool, str]:
    """``scontrol requeue`` this job: ``(accepted by SLURM, what happened)``."""
    job = slurm_job_id()
    if job is None:
        return False, "SIGUSR1 outside a SLURM job: not requeueing"
    try:
        res = subprocess.run(
            ["scontrol", "requeue", job], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"scontrol requeue {job} failed: {err}"
    if res.returncode != 0:
        return False, f"scontrol requeue {job} failed ({res.returncode}): {res.stderr.strip()}"
    return True, f"requeued SLURM job {job}"


def time_limit_reached() -> bool:
    """Whether SLURM is ending this job for its time limit (``Reason=TimeLimit`` or
    ``JobState=TIMEOUT`` in ``scontrol show job``): what a SIGTERM means when it is. False
    outside SLURM or when ``scontrol`` does not answer.

    Asked at a SIGTERM so that the time limit requeues the job as its warning does: a warning
    (``--signal=USR1@N``) sent before the job's tasks exist reaches nobody, and SLURM sends it
    up to 60 s early, so a limit not well above N loses it (slurm/README.md).
    """
    job = slurm_job_id()
    if job is None:
        return False
    try:
        res = subprocess.run(
            ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    fields = dict(re.findall(r"(\w+)=(\S*)", res.stdout)) if res.returncode == 0 else {}
    return fields.get("Reason") == "TimeLimit" or fields.get("JobState") == "TIMEOUT"
