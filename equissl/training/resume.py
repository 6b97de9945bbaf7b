"""Resume integrity: a resume continues the run its checkpoint describes, or says why not.

A resume whose result-changing settings (:func:`equissl.config.is_result_key`) differ from
the config stored in the checkpoint is refused, naming each key with old -> new, unless the
key is named in ``resume_allow``. An allowed change is applied — the method is built from
the new config, and the optimizer's restored learning rate and weight decay are replaced —
then recorded in ``<run>/resume_history.jsonl``, and the new config is what later
checkpoints store. Without this, the stored config said ``lr=0.5`` while the optimizer
kept the checkpoint's ``1e-3``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from equissl.checkpointing import CHECKPOINT_KEY, ResumeMismatch, check_resume, result_changes

__all__ = ["HISTORY_FILE", "ResumeGuard", "ResumeMismatch", "check_resume", "result_changes"]

log = logging.getLogger(__name__)

HISTORY_FILE = "resume_history.jsonl"


class ResumeGuard(pl.Callback):
    """Checks the resumed checkpoint's config against this run's (refusing or recording the
    differences) and applies allowed optimizer changes after Lightning restored its state."""

    def __init__(self, run_dir: str | Path) -> None:
        self.history = Path(run_dir) / HISTORY_FILE
        self.changes: dict[str, tuple[Any, Any]] = {}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        stored = (checkpoint.get(CHECKPOINT_KEY) or {}).get("config") or {}
        source = trainer.ckpt_path or "the checkpoint being resumed"
        self.changes = check_resume(source, stored, pl_module.config)
        if self.changes and trainer.is_global_zero:
            record = {
                "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                "step": int(checkpoint.get("global_step", 0)),
                "checkpoint": str(source),
                "changes": {k: [old, new] for k, (old, new) in self.changes.items()},
            }
            with open(self.history, "a") as f:
                f.write(json.dumps(record) + "\n")
            log.warning(
                "resuming with changed settings (resume_allow): %s",
                "; ".join(f"{k}: {o!r} -> {n!r}" for k, (o, n) in self.changes.items()),
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optim_keys = {k.rsplit(".", 1)[-1] for k in self.changes if k.startswith("method.optim.")}
        if not optim_keys & {"lr", "weight_decay", "lr_scaling", "base_batch_size"}:
            return
        lr = float(pl_module.effective_lr())
        wd = float(pl_module.mcfg["optim"]["weight_decay"])
        schedules = [
            c.scheduler
            for c in trainer.lr_scheduler_configs
            if isinstance(c.scheduler, torch.optim.lr_scheduler.LambdaLR)
        ]
        for schedule in schedules:  # the restored base rates are the old lr
            schedule.base_lrs = [lr] * len(schedule.base_lrs)
        for optimizer in trainer.optimizers:
            for i, group in enumerate(optimizer.param_groups):
                factor = 1.0
                if schedules:  # where the schedule stands now, at the restored step
                    s = schedules[-1]
                    factor = s.lr_lambdas[min(i, len(s.lr_lambdas) - 1)](s.last_epoch)
                group["lr"] = lr * factor
                if "initial_lr" in group:
                    group["initial_lr"] = lr
                if group.get("weight_decay", 0.0) != 0.0:
                    group["weight_decay"] = wd
