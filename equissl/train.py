"""The pretraining stage: config -> datamodule, method, Lightning Trainer -> checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from equissl.callbacks import ViewGridLogger
from equissl.checkpointing import AtomicCheckpointIO
from equissl.datasets.base import DATASETS, generate_dataset
from equissl.datasets.builders import PretrainDataModule
from equissl.ssl import build_method

log = logging.getLogger(__name__)

TRAINER_KEYS = (
    "accelerator", "devices", "num_nodes", "strategy", "max_epochs", "max_steps", "precision",
    "log_every_n_steps", "sync_batchnorm", "gradient_clip_val", "accumulate_grad_batches",
    "limit_train_batches",
    "enable_progress_bar",
)


def prepare_data(data: dict[str, Any]) -> None:
    """Generate the dataset into ``data.root`` first when ``data.generate`` asks for it."""
    cls = DATASETS.get(data["impl"])
    if data.get("generate") and cls.needs_generation(data):
        log.info("data.root %s: generating the dataset (%s)", data["root"], data["generate"])
        generate_dataset(data)


def views_per_object(config: dict[str, Any]) -> int:
    """The method's views per object; ``data.num_views`` (the README's spelling) sets it."""
    if config["data"].get("num_views") is not None:
        config["method"]["num_views"] = int(config["data"]["num_views"])
    return int(config["method"]["num_views"])


def build_logger(cfg: dict[str, Any], run_dir: Path) -> Logger | bool:
    name = cfg["name"]
    if name == "tensorboard":
        return TensorBoardLogger(save_dir=str(run_dir), name="tb", version="")
    if name == "csv":
        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
    if name == "none":
        return False
    raise ValueError(f"unknown logger {name!r}; choose tensorboard, csv or none")


def resume_path(ckpt_dir: Path, run_dir: Path) -> str | None:
    """The newest of ``last.ckpt`` and Lightning's SLURM ``hpc_ckpt_*.ckpt``, if any."""
    candidates = [p for p in [ckpt_dir / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
                  if p.is_file()]
    if not candidates:
        return None
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    return "hpc" if newest.name.startswith("hpc_ckpt_") else str(newest)


def pretrain(config: dict[str, Any], run_dir: str | Path) -> Path:
    """Run the pretraining stage described by the resolved ``config``.

    Returns:
        Path of ``<run_dir>/checkpoints/last.ckpt``.
    """
    run_dir = Path(run_dir)
    pl.seed_everything(int(config["seed"]), workers=True)
    prepare_data(config["data"])
    datamodule = PretrainDataModule(config["data"], views_per_object(config))
    method = build_method(config, datamodule.spec)
    ckpt_dir = run_dir / "checkpoints"
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_epochs=1,
                        save_on_train_epoch_end=True),
    ]
    if config["trainer"]["enable_progress_bar"]:
        refresh = max(1, int(config["trainer"]["log_every_n_steps"]) // 5)
        callbacks.append(TQDMProgressBar(refresh_rate=refresh))
    logger = build_logger(config["logger"], run_dir)
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
        callbacks.append(ViewGridLogger(int(config["logger"]["view_grid_every_n_steps"])))
    trainer = pl.Trainer(
        **{k: config["trainer"][k] for k in TRAINER_KEYS},
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        deterministic=False,
    )
    ckpt_path = resume_path(ckpt_dir, run_dir) if config.get("resume", True) else None
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    trainer.fit(method, datamodule=datamodule, ckpt_path=ckpt_path)
    # The final state, also when max_steps stopped mid-epoch (collective: every rank calls).
    last = ckpt_dir / "last.ckpt"
    trainer.save_checkpoint(last, weights_only=False)
    return last
