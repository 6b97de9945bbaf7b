"""SIGTERM / SIGUSR1: stop at the next step boundary with a checkpoint, then exit with a code.

The handlers only record the signal. :class:`equissl.training.checkpoints.RunCheckpoint`
looks at the record after every optimizer step (all ranks agree through one all-reduce),
writes ``last.ckpt`` at that step boundary — an exact resume point — and stops the Trainer.
On SLURM's pre-timeout SIGUSR1 (``--signal=SIGUSR1@90``) global rank 0 then requeues the
job with ``scontrol requeue``: **equissl owns requeueing**; Lightning's
``SLURMEnvironment`` runs with ``auto_requeue=False`` and its SIGTERM handler is replaced
once training starts (it would save nothing and exit 0).

Exit codes of ``equissl-pretrain`` (see ``slurm/README.md``):

* ``0`` (:data:`EXIT_OK`) — finished; or stopped by SIGUSR1 with ``last.ckpt`` written and
  the requeue accepted by SLURM.
* ``75`` (:data:`EXIT_RESUMABLE`, ``EX_TEMPFAIL``) — stopped by a signal, ``last.ckpt``
  written at the stopping step, no requeue requested (SIGTERM, or SIGUSR1 outside SLURM or
  with a failed ``scontrol``): run the same command again to continue.
* ``128 + signum`` (143 for SIGTERM, 138 for SIGUSR1) — a signal arrived but no checkpoint
  was written for it (training ended or had not reached a step).
* ``1`` — any error (Hydra's code for an exception).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_RESUMABLE = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingStopped(SystemExit):
    """Raised by ``pretrain`` when a signal stopped training; ``code`` is the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StopSignals:
    """Records SIGTERM/SIGUSR1 instead of dying; forwards them to locally launched ranks.

    Use as a context manager around the whole stage: handlers are installed on entry and
    the previous ones restored on exit. :meth:`reinstall` puts them back after Lightning
    has installed its own.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self.launcher: Any = None  # Lightning launcher whose child ranks get the signal too

    def _handle(self, signum: int, _: FrameType | None) -> None:
        first = self.signum is None
        self.signum = signum
        log.warning(
            "received %s: stopping at the next step with a checkpoint", signal.Signals(signum).name
        )
        if first and self.launcher is not None and hasattr(self.launcher, "kill"):
            self.launcher.kill(signum)  # local DDP: ranks 1.. are our child processes

    def __enter__(self) -> StopSignals:
        for s in STOP_SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def reinstall(self) -> None:
        for s in STOP_SIGNALS:
            signal.signal(s, self._handle)

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes (array jobs: ``<array job>_<task>``), if under SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def request_requeue() -> bool:
    """``scontrol requeue`` this job; True if SLURM accepted it."""
    job = slurm_job_id()
    if job is None:
        log.warning("SIGUSR1 outside a SLURM job: not requeueing")
        return False
    try:
        res = subprocess.run(
            ["scontrol", "requeue", job], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        log.error("scontrol requeue %s failed: %s", job, err)
        return False
    if res.returncode != 0:
        log.error("scontrol requeue %s failed (%d): %s", job, res.returncode, res.stderr.strip())
        return False
    log.warning("requeued SLURM job %s", job)
    return True
