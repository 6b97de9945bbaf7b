"""``equissl-requeueable [--usr1=requeue|forward] CMD ...``: the batch shell of the sbatch
templates (``exec``'d by them, so it *is* the process SLURM signals with ``--signal=B:USR1``
or ``scancel --batch --signal=USR1``).

It runs ``CMD`` as a child and returns its exit status. On SIGUSR1 — SLURM's warning that
the time limit is near — it either

* ``requeue`` (default; evaluate, generate, pack, whose commands have no handler of their
  own): asks SLURM to requeue this job (``scontrol requeue``, the array task for arrays)
  and keeps waiting; SLURM then stops the job and starts it again, and the same command
  skips the work already done (cached features, rendered objects, packed chunks); or
* ``forward`` (pretrain): passes the signal to ``CMD`` (``srun``, which hands it to every
  task), whose handler writes ``last.ckpt`` at the next step boundary and requeues.

On SIGTERM in ``requeue`` mode it requeues too when SLURM is ending the job for its time
limit (a warning sent too early, before this process existed, is lost: slurm/README.md), and
keeps waiting for ``CMD``, which SLURM signals itself; ``scancel``'s SIGTERM is not requeued.
In ``forward`` mode the training tasks make that decision (one requeue, from global rank 0).

A bash ``trap`` would not do: bash runs traps only after its foreground child has
returned, and a batch shell without one dies of SIGUSR1 (the job ends FAILED 0:10 without a
requeue). Standard library only: it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from types import FrameType

from equissl.slurm_job import request_requeue, time_limit_reached


def say(message: str) -> None:
    print(f"equissl-requeueable: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], usr1: str) -> int:
    """Run ``cmd`` with SIGUSR1 handled as ``usr1`` says; its exit status (``128 + n`` when
    a signal ``n`` ended it)."""
    child: subprocess.Popen | None = None
    requeued = False

    def on_usr1(signum: int, _: FrameType | None) -> None:
        nonlocal requeued
        if usr1 == "forward":
            if child is not None and child.poll() is None:
                say("SIGUSR1: passed to the training step, which checkpoints and requeues")
                child.send_signal(signum)
        elif not requeued:
            requeued, message = request_requeue()
            say(f"time limit near: {message}" if requeued else message)

    def on_term(signum: int, _: FrameType | None) -> None:
        nonlocal requeued
        if requeued or not time_limit_reached():  # as without this handler: die of it
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        requeued, message = request_requeue()
        say(f"time limit reached: {message}")

    signal.signal(signal.SIGUSR1, on_usr1)
    if usr1 == "requeue":
        signal.signal(signal.SIGTERM, on_term)
    try:
        child = subprocess.Popen(cmd)
    except OSError as err:
        say(f"cannot start {cmd[0]}: {err}")
        return 127
    status = child.wait()
    return 128 - status if status < 0 else status


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="equissl-requeueable",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
    )
    parser.add_argument("--usr1", choices=("requeue", "forward"), default="requeue")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="the command and its arguments")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the command to run")
    sys.exit(run(cmd, args.usr1))


if __name__ == "__main__":
    main()
