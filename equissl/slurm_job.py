"""The SLURM job this process runs in, and asking SLURM to requeue it. Standard library
only: the batch shell (``equissl.apps.requeueable``) imports it before anything else."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess

log = logging.getLogger(__name__)

# What SLURM (and scancel --signal) sends a job to stop or warn it; SIGKILL still ends scontrol.
_SHIELDED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2}


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes (array jobs: ``<array job>_<task>``), if under SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class ScontrolFailed(RuntimeError):
    """``scontrol`` could not be run or did not succeed (the message says which and why)."""


def scontrol(*args: str, timeout: float) -> str:
    """Run ``scontrol ARGS`` immune to the signals that stop the job; its standard output.
    :class:`ScontrolFailed` when it cannot be run, times out or exits non-zero.

    SLURM signals every process of a job step, children included (measured on slurm-wlm
    22.05: a ``sleep`` started by the task died of the time limit's SIGTERM), and the time
    limit sends SIGTERM twice within milliseconds (slurmstepd, then srun's "forcing job
    termination"): the second one killed the ``scontrol show job`` the first had started, so
    the time limit went unrecognised. The child is started with those signals blocked, which
    it keeps through ``exec``; signals reaching this process meanwhile stay pending and are
    handled when the spawn returns.
    """
    what = f"scontrol {' '.join(args)}"
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SHIELDED)
    try:
        proc = subprocess.Popen(
            ["scontrol", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except OSError as err:
        raise ScontrolFailed(f"{what} failed: {err}") from err
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    try:
        out, errors = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as timed_out:
        proc.kill()
        proc.communicate()
        raise ScontrolFailed(f"{what} failed: {timed_out}") from timed_out
    if proc.returncode != 0:
        raise ScontrolFailed(f"{what} failed ({proc.returncode}): {errors.strip()}")
    return out


def request_requeue() -> tuple[bool, str]:
    """``scontrol requeue`` this job: ``(accepted by SLURM, what happened)``."""
    job = slurm_job_id()
    if job is None:
        return False, "SIGUSR1 outside a SLURM job: not requeueing"
    try:
        scontrol("requeue", job, timeout=60)
    except ScontrolFailed as err:
        return False, str(err)
    return True, f"requeued SLURM job {job}"


def time_limit_reached() -> bool:
    """Whether SLURM is ending this job for its time limit (``Reason=TimeLimit`` or
    ``JobState=TIMEOUT`` in ``scontrol show job``): what a SIGTERM means when it is. False
    outside SLURM, and (logged) when ``scontrol`` does not answer.

    Asked at a SIGTERM so that the time limit requeues the job as its warning does: a warning
    (``--signal=USR1@N``) sent before the job's tasks exist reaches nobody, and SLURM sends it
    up to 60 s early, so a limit not well above N loses it (slurm/README.md).
    """
    job = slurm_job_id()
    if job is None:
        return False
    try:
        fields = show_job(job)
    except ScontrolFailed as err:
        log.error("%s: taking this SIGTERM as not the time limit", err)
        return False
    return fields.get("Reason") == "TimeLimit" or fields.get("JobState") == "TIMEOUT"


def show_job(job: str) -> dict[str, str]:
    """The fields of ``scontrol show job -o JOB`` (``{"JobState": "RUNNING", ...}``);
    :class:`ScontrolFailed` says why not."""
    return dict(re.findall(r"(\w+)=(\S*)", scontrol("show", "job", "-o", job, timeout=30)))
