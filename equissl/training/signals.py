"""SIGTERM / SIGUSR1: stop at the next step boundary with a checkpoint, then exit with a code.

The handlers only record the signal. :class:`equissl.training.checkpoints.RunCheckpoint`
looks at the record after every optimizer step (all ranks agree through one all-reduce),
writes ``last.ckpt`` at that step boundary — an exact resume point — and stops the Trainer.
On SLURM's pre-timeout SIGUSR1 (``--signal=SIGUSR1@90``) global rank 0 then requeues the
job with ``scontrol requeue``; on a SIGTERM it does so only when SLURM is ending the job for
its time limit (a warning that came too early to reach the tasks; requeued before the
checkpoint is written, since SLURM kills the job ``KillWait`` seconds later). **equissl owns
requeueing**: Lightning's ``SLURMEnvironment`` runs with ``auto_requeue=False`` and its
SIGTERM handler is replaced once training starts (it would save nothing and exit 0).

Exit codes of ``equissl-pretrain`` (see ``slurm/README.md``):

* ``0`` (:data:`EXIT_OK`) — finished; or stopped by SIGUSR1, or by the SIGTERM of SLURM's
  time limit, with ``last.ckpt`` written and the requeue accepted by SLURM.
* ``75`` (:data:`EXIT_RESUMABLE`, ``EX_TEMPFAIL``) — stopped by a signal, ``last.ckpt``
  written at the stopping step, no requeue requested (SIGTERM of ``scancel`` or pre-emption,
  or SIGUSR1 outside SLURM or with a failed ``scontrol``): run the same command again to
  continue.
* ``128 + signum`` (143 for SIGTERM, 138 for SIGUSR1) — a signal arrived but no checkpoint
  was written for it (training ended or had not reached a step).
* ``1`` — any error (Hydra's code for an exception).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from equissl import early_signals, slurm_job

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
        pending = early_signals.take_pending()  # arrived while the command started
        if pending is not None:
            self._handle(pending, None)
        return self

    def reinstall(self) -> None:
        for s in STOP_SIGNALS:
            signal.signal(s, self._handle)

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}


def request_requeue() -> bool:
    """``scontrol requeue`` this job (:func:`equissl.slurm_job.request_requeue`), logged;
    True if SLURM accepted it."""
    accepted, message = slurm_job.request_requeue()
    (log.warning if accepted else log.error)(message)
    return accepted


@contextmanager
def requeue_after_training() -> Iterator[None]:
    """Around work after training (``evaluate_after``): SLURM's warning (SIGUSR1 — also one
    that arrived since training ended) requeues the job at once, and so does its time limit's
    SIGTERM (a warning can be lost: slurm/README.md) before the process dies of it as it
    would without this; the requeued job finds training done and redoes only what its caches
    lack. Any other SIGTERM (``scancel``, pre-emption) ends the process unchanged. Outside
    SLURM SIGUSR1 is logged and ignored."""
    asked = False

    def on_usr1(signum: int, _: FrameType | None) -> None:
        nonlocal asked
        if not asked:
            asked = True
            log.warning("received SIGUSR1 after training: requeueing the job")
            request_requeue()

    def on_term(signum: int, _: FrameType | None) -> None:
        nonlocal asked
        if not asked and slurm_job.time_limit_reached():
            asked = True
            log.warning("time limit reached after training: requeueing the job")
            request_requeue()
        signal.signal(signum, previous_term if previous_term is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    previous_usr1 = signal.signal(signal.SIGUSR1, on_usr1)
    previous_term = signal.signal(signal.SIGTERM, on_term)
    if early_signals.take_pending() is not None:
        on_usr1(signal.SIGUSR1, None)
    try:
        yield
    finally:
        for s, previous in ((signal.SIGUSR1, previous_usr1), (signal.SIGTERM, previous_term)):
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
