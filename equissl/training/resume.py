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

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from equissl.checkpointing import CHECKPOINT_KEY, CheckpointError, fill_config_defaults
from equissl.config import is_result_key

log = logging.getLogger(__name__)

HISTORY_FILE = "resume_history.jsonl"


class ResumeMismatch(CheckpointError):
    """The checkpoint being resumed was trained with other result-changing settings."""


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"method.optim.lr": 0.001, ...}`` of a nested dict (lists stay values)."""
    if not isinstance(config, dict):
        return {prefix: config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def result_changes(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (stored value, new value)}`` of every result-changing setting that differs."""
    old, now = copy.deepcopy(stored), copy.deepcopy(new)
    fill_config_defaults(old)  # keys added since the checkpoint: their default is what ran
    fill_config_defaults(now)
    a, b = flatten(old), flatten(now)
    missing = object()
    return {
        k: (a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if is_result_key(k) and a.get(k, missing) != b.get(k, missing)
    }


def check_resume(
    source: str | Path, stored: dict[str, Any], new: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """The allowed changes between ``stored`` and ``new``.

    Raises:
        ResumeMismatch: a result-changing key differs and ``new["resume_allow"]`` does not
            name it (every such key is listed, with old -> new).
    """
    changes = result_changes(stored, new)
    allowed = set(new.get("resume_allow") or [])
    refused = {k: v for k, v in changes.items() if not _allowed(k, allowed)}
    if refused:
        lines = "\n".join(f"  {k}: {old!r} -> {now!r}" for k, (old, now) in refused.items())
        keys = ",".join(refused)
        raise ResumeMismatch(
            f"{source} was trained with other settings than this command gives:\n{lines}\n"
            "Resuming would continue the old run under a config that does not describe it. "
            "Use another run directory for a new run, or name the keys that may change: "
            f"resume_allow=[{keys}]"
        )
    return changes


def _allowed(key: str, allowed: set[str]) -> bool:
    return any(key == a or key.startswith(a + ".") for a in allowed)


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
