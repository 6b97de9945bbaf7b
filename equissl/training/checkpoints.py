"""When ``<run>/checkpoints/last.ckpt`` is written, and what it carries beyond Lightning's state.

:class:`RunCheckpoint` writes ``last.ckpt`` (through ``trainer.save_checkpoint``, hence the
atomic :class:`~equissl.checkpointing.AtomicCheckpointIO`) at the end of an optimizer step:

* every ``checkpoint.every_n_steps`` optimizer steps,
* after the last batch of every ``checkpoint.every_n_epochs``-th epoch, unless the last
  checkpoint is younger than ``checkpoint.epoch_min_interval_s`` (rank 0's clock decides),
* after the final step (``trainer.max_steps``), and
* at the first step boundary after SIGTERM / SIGUSR1 (:mod:`equissl.training.signals`).

Always at ``on_train_batch_end``: Lightning resumes such a checkpoint at the next batch
(``RESTARTED_ON_TRAIN_BATCH_END``), and the stateful loader's position counts that batch.
A checkpoint written after ``fit`` returns would not do: by then Lightning has closed the
epoch, and resuming from it skips the rest of an epoch cut by ``max_steps``.

The checkpoint carries model (EMA modules included, as submodules), optimizer, scheduler,
loop progress, the loader position and — added here, since Lightning does not save them —
the global RNG states of Python, NumPy, torch and CUDA (global rank 0's).

Exactness: resuming on CPU continues bitwise (tests/reliability). On GPU, cuDNN/cuBLAS
kernel choice and atomics make even two uninterrupted runs differ at float rounding
(~1e-7 relative per step, growing with training) unless ``trainer.deterministic=true``;
with it, a resumed run matches an uninterrupted one to that same tolerance or better.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint

from equissl.atomic import atomic_write_text
from equissl.lightning_compat import apply_restored_loader_state
from equissl.slurm_job import time_limit_reached
from equissl.training.signals import (
    EXIT_OK,
    EXIT_RESUMABLE,
    StopSignals,
    request_requeue,
)

log = logging.getLogger(__name__)

RNG_KEY = "equissl_rng"


def collect_rng_states() -> dict[str, Any]:
    """Global RNG states as checkpoint-safe values (tensors, ints, tuples: ``weights_only``)."""
    np_state = np.random.get_state(legacy=False)
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_states`."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
            "has_gauss": int(n["has_gauss"]),
            "gauss": float(n["gauss"]),
        }
    )
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class RunCheckpoint(Checkpoint):
    """Writes ``last.ckpt`` at step boundaries (see the module docstring) and stops on signals.

    Args:
        path: the checkpoint file, ``<run>/checkpoints/last.ckpt``.
        every_n_steps: optimizer steps between checkpoints (0: only epochs/end/signals).
        every_n_epochs: epochs between end-of-epoch checkpoints (0: none).
        signals: the stage's signal record.
        requeue: on SIGUSR1, ask SLURM to requeue the job after the checkpoint.

    After ``fit`` returns, :attr:`saved_step` is the global step of the newest checkpoint
    written or resumed from, and :attr:`exit_code` is set when a signal stopped training.
    """

    def __init__(
        self,
        path: str | Path,
        every_n_steps: int,
        every_n_epochs: int,
        signals: StopSignals,
        requeue: bool = True,
        epoch_min_interval_s: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.every_n_steps = int(every_n_steps)
        self.every_n_epochs = int(every_n_epochs)
        self.epoch_min_interval_s = float(epoch_min_interval_s)
        self._saved_at = time.monotonic()  # the run's start counts as a save
        self.signals = signals
        self.requeue = requeue
        self.saved_step: int | None = None
        self.exit_code: int | None = None
        self.stop_message = ""
        self._rng_to_restore: dict[str, Any] | None = None

    # ------------------------------------------------------------------------- hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning installed its SIGTERM handler in Trainer._run; ours decides instead.
        self.signals.launcher = trainer.strategy.launcher
        self.signals.reinstall()
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        # Lightning applies the restored loader position only when it builds the loader,
        # which it skips when the loader was already built before the restore, as it is when
        # configure_optimizers reads estimated_stepping_batches (a warm-up schedule): apply
        # it here (a no-op when already applied or not resuming).
        apply_restored_loader_state(trainer)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        signum = self._agreed_signal(trainer)
        epoch_end = (
            trainer.is_last_batch
            and self.every_n_epochs > 0
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )
        periodic = self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0
        final = trainer.max_steps != -1 and step >= trainer.max_steps
        if epoch_end and not (periodic or final or signum):
            epoch_end = self._epoch_save_due(trainer)
        # SIGTERM at the time limit: requeue before saving, SLURM kills after KillWait
        requeued = signum == signal.SIGTERM and self._requeue(trainer, time_limit=True)
        if signum or ((periodic or epoch_end or final) and step != self.saved_step):
            trainer.save_checkpoint(self.path, weights_only=False)
            self.saved_step = step
            self._saved_at = time.monotonic()
        if signum == signal.SIGUSR1:  # the warning: save first, the requeue stops the job
            requeued = self._requeue(trainer, time_limit=False)
        if signum:
            self._stop(trainer, signum, step, requeued)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[RNG_KEY] = collect_rng_states()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Applied at on_train_start, after everything that runs between restore and training.
        self._rng_to_restore = checkpoint.get(RNG_KEY)
        self.saved_step = int(checkpoint.get("global_step", 0))

    # ----------------------------------------------------------------------- helpers
    def _epoch_save_due(self, trainer: pl.Trainer) -> bool:
        """Whether the last checkpoint is old enough for an end-of-epoch one; rank 0 decides
        for all (saving is collective, clocks differ)."""
        due = time.monotonic() - self._saved_at >= self.epoch_min_interval_s
        if trainer.world_size > 1:
            due = bool(trainer.strategy.broadcast(due, src=0))
        return due

    def _agreed_signal(self, trainer: pl.Trainer) -> int:
        """The signal number if any rank has received one (0 otherwise); same on every rank."""
        signum = self.signals.signum or 0
        if trainer.world_size > 1:
            flag = torch.tensor([signum], dtype=torch.int64, device=trainer.strategy.root_device)
            signum = int(trainer.strategy.reduce(flag, reduce_op="max").item())
        return signum

    def _requeue(self, trainer: pl.Trainer, time_limit: bool) -> bool:
        """Global rank 0 asks SLURM to requeue the job — for a SIGTERM only when SLURM is
        ending the job for its time limit (``scancel`` and pre-emption are not requeued by
        us); whether SLURM accepted, the same on every rank."""
        requeued = False
        if self.requeue and trainer.is_global_zero and (not time_limit or time_limit_reached()):
            requeued = request_requeue()
        return bool(trainer.strategy.broadcast(requeued, src=0))

    def _stop(self, trainer: pl.Trainer, signum: int, step: int, requeued: bool) -> None:
        self.exit_code = EXIT_OK if requeued else EXIT_RESUMABLE
        name = signal.Signals(signum).name
        self.stop_message = f"{name}: stopped after step {step} with checkpoint {self.path}" + (
            "; SLURM job requeued" if requeued else "; run the same command to resume"
        )
        trainer.should_stop = True


class StepLossLog(Callback):
    """Appends ``{"step": int, "loss": float}`` per optimizer step to a JSON-lines file.

    The loss is the total returned by ``training_step`` (online probe included), as a
    float64 ``repr`` of the float32 value, so files of two runs compare exactly. On resume
    the lines after the checkpoint's step (written before a crash) are dropped first, so the
    file of a resumed run equals that of an uninterrupted one. Global rank 0 only.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not self.path.is_file():
            return
        lines = self.path.read_text().splitlines()
        kept = [ln for ln in lines if ln and json.loads(ln)["step"] <= trainer.global_step]
        if len(kept) != len(lines):
            atomic_write_text(self.path, "".join(f"{ln}\n" for ln in kept))

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not trainer.is_global_zero or outputs is None:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        with self.path.open("a") as f:
            f.write(json.dumps({"step": trainer.global_step, "loss": float(loss)}) + "\n")
