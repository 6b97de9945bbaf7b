"""One process per run directory: ``<run>/run.lock`` names its holder.

Two identical commands (a duplicate ``sbatch``, a requeue while the old job still runs)
would otherwise both train in one run directory and both write ``last.ckpt``, and the
second's start-up clean-up could remove the first's temporary checkpoint file. The lock is
a file created whole and exclusively (:func:`equissl.atomic.atomic_create_text`) holding
``{"host", "pid", "slurm_job_id", "started"}``. Another process finding it:

* takes it over when it belongs to the same SLURM job id (a requeued job is the same run;
  the old attempt is gone, as SLURM requeues only after the job's processes ended);
* takes it over, with a warning, when its holder ran on this host and is no longer alive;
* otherwise stops, naming the holder and how to remove a lock left by a dead process on
  another host (which cannot be checked from here).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from equissl.atomic import atomic_create_text, atomic_write_text

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


class RunDirLocked(RuntimeError):
    """Another live process trains in this run directory."""


def holder_info() -> dict[str, Any]:
    """This process as a lock holder."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _describe(holder: dict[str, Any]) -> str:
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{job}, since {holder.get('started')}"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # damaged: it is created whole (atomic_create_text), never half-written
    return value if isinstance(value, dict) else {}


def _takeover_reason(holder: dict[str, Any], me: dict[str, Any]) -> str | None:
    """Why ``me`` may take the lock of ``holder`` over, or ``None`` (it may not)."""
    if not holder:
        return "the lock file was unreadable (damaged)"
    if holder.get("slurm_job_id") and holder.get("slurm_job_id") == me["slurm_job_id"]:
        if holder.get("host") == me["host"] and holder.get("pid") == me["pid"]:
            return "this process holds it already"
        return f"it belongs to an earlier attempt of this SLURM job ({holder['slurm_job_id']})"
    if holder.get("host") == me["host"]:
        pid = int(holder.get("pid", -1))
        if pid == me["pid"]:
            return "this process holds it already"
        if pid <= 0 or not _alive(pid):
            return f"its holder (pid {pid}) is no longer running"
    return None


def acquire(run_dir: str | Path) -> Path:
    """Take ``<run_dir>/run.lock`` for this process.

    Returns:
        The lock file's path (pass it to :func:`release`).

    Raises:
        RunDirLocked: a live process (or one on another host that cannot be checked) holds
            it; the message names the holder and the file.
    """
    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    me = holder_info()
    for _ in range(3):
        try:
            if atomic_create_text(path, json.dumps(me)):
                return path
        except FileNotFoundError:
            continue  # the holder's start-up clean-up took our temporary file: try again
        holder = _read(path)
        if holder is None:
            continue  # released meanwhile: try again
        reason = _takeover_reason(holder, me)
        if reason is None:
            raise RunDirLocked(
                f"{path.parent} is in use by another run ({_describe(holder)}): two "
                "processes training in one run directory would overwrite each other's "
                f"checkpoints. Wait for it to end, or, if that process is gone, delete "
                f"{path} and start again"
            )
        log.warning("taking over %s: %s", path, reason)
        atomic_write_text(path, json.dumps(me))
        return path
    raise RunDirLocked(f"could not take {path}: it keeps changing hands")


def release(path: str | Path) -> None:
    """Remove the lock if this process still holds it."""
    path = Path(path)
    holder = _read(path)
    me = holder_info()
    if holder and holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
        path.unlink(missing_ok=True)
