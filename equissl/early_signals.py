"""SIGUSR1 caught from the first moment of ``equissl-pretrain``, before torch, data and
model are loaded (which takes seconds to minutes): by default the signal would kill the
process, and SLURM's pre-timeout warning or an ``scancel --signal=USR1`` would end the job
instead of requeueing it. The signal is only recorded here; the training stage
(:class:`equissl.training.signals.StopSignals`) acts on it at its first step boundary, and
the evaluation after training requeues (:func:`equissl.training.signals.requeue_after_training`).
Standard library only."""

from __future__ import annotations

import signal
from types import FrameType

_pending: list[int] = []


def _record(signum: int, _: FrameType | None) -> None:
    _pending.append(signum)


def record_usr1() -> None:
    """Record SIGUSR1 instead of dying of it, until a stage installs its own handler."""
    signal.signal(signal.SIGUSR1, _record)


def take_pending() -> int | None:
    """The signal recorded since the last call (``None``: none), forgetting it."""
    signum = _pending[-1] if _pending else None
    _pending.clear()
    return signum
