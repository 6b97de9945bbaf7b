"""The pretraining stage: config -> datamodule, method, Lightning Trainer -> checkpoints.

Fault tolerance (:mod:`equissl.training`): ``last.ckpt`` at step boundaries
(every ``checkpoint.every_n_steps``, epoch ends, the final step, SIGTERM/SIGUSR1), exact
resume with the same command, stale temporary files removed at start-up.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path
from typing import Any

import hydra.utils
import lightning.pytorch as pl
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from equissl.atomic import remove_stale_tmp
from equissl.checkpointing import AtomicCheckpointIO, config_range_problems, load_checkpoint
from equissl.config import TrainerConfig
from equissl.datasets.base import generate_dataset
from equissl.registries import DATASETS
from equissl.ssl.loading import build_method
from equissl.training import run_lock
from equissl.training.callbacks import ViewGridLogger
from equissl.training.checkpoints import RunCheckpoint, StepLossLog
from equissl.training.datamodule import PretrainDataModule
from equissl.training.monitor import TrainingMonitor
from equissl.training.resume import ResumeGuard
from equissl.training.sampler import check_rank_share
from equissl.training.signals import StopSignals, TrainingStopped

log = logging.getLogger(__name__)

#: what Lightning does when a Trainer argument is left at ``None`` (its signature default)
_LIGHTNING_NONE_MEANS = {
    "precision": "32-true",
    "log_every_n_steps": 50,
    "limit_train_batches": 1.0,
    "enable_progress_bar": True,
    "deterministic": False,
}


def trainer_arguments(trainer: dict[str, Any]) -> dict[str, Any]:
    """The ``trainer`` section (:class:`equissl.config.TrainerConfig`, same names as
    ``lightning.pytorch.Trainer``) as Trainer arguments, leaving out every value that is
    Lightning's own default: passing a default explicitly makes Lightning print notes such
    as "limit_train_batches=1.0 was configured so 100% of the batches will be used"."""
    defaults = inspect.signature(pl.Trainer.__init__).parameters
    trainer = {**trainer, "log_every_n_steps": logging_interval(trainer)}
    out = {}
    for f in dataclasses.fields(TrainerConfig):
        value = trainer[f.name]
        default = defaults[f.name].default
        if value == default or (default is None and _LIGHTNING_NONE_MEANS.get(f.name) == value):
            continue
        out[f.name] = value
    return out


def logging_interval(trainer: dict[str, Any]) -> int:
    """``trainer.log_every_n_steps``, shortened to a tenth of ``max_steps`` when the run is
    shorter than one interval: a 20-step run at Lightning's 50 would log no scalar at all."""
    every, steps = int(trainer["log_every_n_steps"]), int(trainer.get("max_steps") or -1)
    return max(1, steps // 10) if 0 < steps < every else every


def prepare_data(data: dict[str, Any]) -> None:
    """Generate the dataset into ``data.root`` first when ``data.generate`` asks for it."""
    cls = DATASETS.get(data["impl"])
    if not data.get("generate"):
        return
    if cls.needs_generation(data):
        log.info("data.root %s: generating the dataset (%s)", data["root"], data["generate"])
        generate_dataset(data)
    else:
        log.info(
            "data.root %s already holds a dataset: training on it as it is (data.generate "
            "writes only into a new or empty folder, or finishes its own render)",
            data["root"],
        )


def views_per_object(config: dict[str, Any]) -> int:
    """The method's views per object; ``data.num_views`` (the spelling in docs/guide.md) sets it."""
    if config["data"].get("num_views") is not None:
        config["method"]["num_views"] = int(config["data"]["num_views"])
    return int(config["method"]["num_views"])


def resolve_batch(data: dict[str, Any], world_size: int, trainer: dict[str, Any]) -> int:
    """The per-device batch; ``data.global_batch_size``, when set, replaces ``data.batch_size``
    with ``global_batch_size / world_size`` (in ``data``, hence in the checkpoint's config).

    Args:
        data: the resolved ``data`` section (updated in place).
        world_size: ranks of the run, ``devices × num_nodes`` as the Trainer resolved them.
        trainer: the resolved ``trainer`` section (named in errors and the log line).

    Raises:
        ValueError: the global batch is not a positive multiple of the ranks, naming
            ``data.global_batch_size``, ``data.batch_size`` and the trainer's keys.
    """
    world_size = int(world_size)
    ranks = (
        f"trainer.devices={trainer.get('devices')!r} x trainer.num_nodes="
        f"{trainer.get('num_nodes', 1)} = {world_size} rank(s)"
    )
    global_batch = data.get("global_batch_size")
    if global_batch is not None:
        global_batch = int(global_batch)
        if global_batch <= 0 or global_batch % world_size:
            raise ValueError(
                f"data.global_batch_size={global_batch} does not split evenly over {ranks}, "
                "so no per-device data.batch_size can be derived from it; choose a multiple "
                f"of {world_size} or set data.batch_size (per device) instead"
            )
        data["batch_size"] = global_batch // world_size
    per_device = int(data["batch_size"])
    source = "data.global_batch_size" if global_batch is not None else "data.batch_size"
    if rank_zero_only.rank == 0:
        log.info(
            "batch: data.global_batch_size=%d, data.batch_size=%d per device over %s (set by %s)",
            per_device * world_size,
            per_device,
            ranks,
            source,
        )
    return per_device


def build_logger(cfg: dict[str, Any], run_dir: Path) -> list[Logger] | bool:
    """The Lightning loggers of the ``logger`` config: ``target`` built with ``kwargs``,
    then every ``{target, kwargs}`` of ``also`` (several at once, e.g. TensorBoard and
    wandb), each with ``save_dir`` = the run folder unless given, for loggers that take one;
    ``False`` for ``name: none``. An unknown or missing class is named with its key."""
    if cfg["name"] == "none":
        return False
    target = cfg.get("target")
    if not target:
        raise ValueError(
            f"logger.target is not set for logger.name={cfg['name']!r}: give a Lightning "
            "logger class, e.g. logger.target=lightning.pytorch.loggers.CSVLogger"
        )
    loggers = [one_logger("logger", target, cfg.get("kwargs"), run_dir)]
    for i, extra in enumerate(cfg.get("also") or []):
        if not isinstance(extra, dict) or not extra.get("target"):
            raise ValueError(f"logger.also[{i}] must be {{target: <Logger class>, kwargs: {{}}}}")
        loggers.append(
            one_logger(f"logger.also[{i}]", extra["target"], extra.get("kwargs"), run_dir)
        )
    return loggers


def one_logger(key: str, target: str, kwargs: dict[str, Any] | None, run_dir: Path) -> Logger:
    """The Lightning logger class ``target`` (the config key ``key`` in errors) built with
    ``kwargs``, ``save_dir`` defaulting to ``run_dir``."""
    try:
        cls = hydra.utils.get_class(target)
    except (ImportError, ValueError) as err:
        raise ValueError(
            f"{key}.target={target}: cannot import it ({err}); is its package installed "
            "(wandb: pip install wandb)?"
        ) from err
    if not (isinstance(cls, type) and issubclass(cls, Logger)):
        raise ValueError(f"{key}.target={target} is not a Lightning logger class")
    kwargs = dict(kwargs or {})
    if "save_dir" in inspect.signature(cls).parameters:
        kwargs.setdefault("save_dir", str(run_dir))
    return cls(**kwargs)


def resume_path(ckpt_dir: Path, run_dir: Path, resume_from: str | None = None) -> str | None:
    """The run's own newest checkpoint, else ``resume_from``, else ``None``.

    Own checkpoints: ``last.ckpt`` and Lightning's SLURM ``hpc_ckpt_*.ckpt`` of runs made
    before equissl owned requeueing.
    """
    candidates = [
        p for p in [ckpt_dir / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()
    ]
    if not candidates:
        if resume_from and not Path(resume_from).is_file():
            raise FileNotFoundError(f"resume_from={resume_from}: no such checkpoint")
        return resume_from or None
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    return "hpc" if newest.name.startswith("hpc_ckpt_") else str(newest)


def read_resumed(ckpt_path: str | None) -> dict[str, Any] | None:
    """The checkpoint being resumed, memory-mapped and weights-only (tensors are read only
    when touched); ``None`` when there is none, or for Lightning's SLURM checkpoint."""
    if not ckpt_path or ckpt_path == "hpc":
        return None
    return load_checkpoint(ckpt_path, mmap=True)


def start_line(run_dir: Path, ckpt_path: str | None, resumed: dict[str, Any] | None) -> str:
    """The first line of a run: ``new run at <dir>`` or ``resuming from <ckpt> (step N)``."""
    if not ckpt_path:
        return f"new run at {run_dir}"
    if ckpt_path == "hpc":
        return f"resuming {run_dir} from Lightning's SLURM checkpoint"
    step = (resumed or {}).get("global_step", "?")
    return f"resuming from {ckpt_path} (step {step}) in {run_dir}"


def pretrain(config: dict[str, Any], run_dir: str | Path) -> Path:
    """Run the pretraining stage described by the resolved ``config``.

    Returns:
        Path of ``<run_dir>/checkpoints/last.ckpt``.

    Raises:
        TrainingStopped: a signal stopped training (``SystemExit``; its ``code`` is the exit
            code of :mod:`equissl.training.signals`).
        RunDirLocked: another live process trains in ``run_dir``
            (:mod:`equissl.training.run_lock`).
        ValueError: a rank's share of the training set is smaller than one batch.
    """
    lock = run_lock.acquire(run_dir) if rank_zero_only.rank == 0 else None
    try:
        with StopSignals() as signals:
            return _pretrain(config, Path(run_dir), signals)
    finally:
        if lock is not None:
            run_lock.release(lock)


def _pretrain(config: dict[str, Any], run_dir: Path, signals: StopSignals) -> Path:
    out_of_range = config_range_problems(config)
    if out_of_range:
        raise ValueError("settings out of range:\n  " + "\n  ".join(out_of_range))
    ckpt_dir = run_dir / "checkpoints"
    resume_from = config.get("resume_from")
    ckpt_path = resume_path(ckpt_dir, run_dir, resume_from) if config.get("resume", True) else None
    resumed = read_resumed(ckpt_path)  # an unreadable checkpoint is named here
    if rank_zero_only.rank == 0:
        log.info(start_line(run_dir, ckpt_path, resumed))
    pl.seed_everything(int(config["seed"]), workers=True)
    if rank_zero_only.rank == 0:
        for stale in remove_stale_tmp(ckpt_dir) + remove_stale_tmp(run_dir):
            log.warning("removed %s, left by an interrupted write", stale)
    prepare_data(config["data"])
    last = ckpt_dir / "last.ckpt"
    ccfg = config.get("checkpoint") or {}
    checkpoint = RunCheckpoint(
        last,
        every_n_steps=int(ccfg.get("every_n_steps", 500)),
        every_n_epochs=int(ccfg.get("every_n_epochs", 1)),
        signals=signals,
        requeue=bool(ccfg.get("requeue", True)),
        epoch_min_interval_s=float(ccfg.get("epoch_min_interval_s", 0.0)),
    )
    callbacks: list[pl.Callback] = [checkpoint, ResumeGuard(run_dir)]
    if config["logger"].get("step_losses"):
        callbacks.append(StepLossLog(run_dir / "step_losses.jsonl"))
    if config["trainer"]["enable_progress_bar"]:
        refresh = max(1, logging_interval(config["trainer"]) // 5)
        callbacks.append(TQDMProgressBar(refresh_rate=refresh))
    monitor = config.get("monitor") or {}
    if int(monitor.get("every_n_steps", 0)) > 0:
        callbacks.append(
            TrainingMonitor(monitor, config["data"], lambda: signals.signum is not None)
        )
    logger = build_logger(config["logger"], run_dir)
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
        callbacks.append(ViewGridLogger(int(config["logger"]["view_grid_every_n_steps"])))
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        # equissl requeues (equissl.training.signals); Lightning's would save mid-step.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = pl.Trainer(
        **trainer_arguments(config["trainer"]),
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=callbacks,
        plugins=plugins,
        use_distributed_sampler=False,  # ResumableSampler shards by rank itself
    )
    # The Trainer exists before the data and the model so that its resolved world size
    # ("auto" and -1 devices included) gives the per-device batch, which the model's config
    # (saved in checkpoints) then holds.
    resolve_batch(config["data"], trainer.world_size, config["trainer"])
    datamodule = PretrainDataModule(
        config["data"],
        views_per_object(config),
        seed=int(config["seed"]),
        speed=config.get("speed"),
    )
    method = build_method(config, datamodule.spec)
    check_rank_share(
        len(datamodule.train_set), trainer.world_size, int(config["data"]["batch_size"])
    )
    if resumed is not None:  # refused before the logger writes anything
        method.check_resumable(resumed, str(ckpt_path))
    del resumed  # Lightning reads the checkpoint itself; keep no mapping open while training
    try:
        trainer.fit(method, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        pass  # Lightning's own SIGTERM path (a signal before on_train_start): handled below
    if checkpoint.exit_code is not None:
        log.warning("%s (exit code %d)", checkpoint.stop_message, checkpoint.exit_code)
        raise TrainingStopped(checkpoint.exit_code, checkpoint.stop_message)
    if signals.signum is not None and trainer.global_step != checkpoint.saved_step:
        log.warning("signal %d before a checkpoint could be written", signals.signum)
        raise TrainingStopped(
            128 + signals.signum, f"signal {signals.signum} before a checkpoint could be written"
        )
    # Runs that end without a step-boundary checkpoint of their final state (max_steps=0,
    # the untrained baseline) save it here (collective: every rank calls).
    if checkpoint.saved_step != trainer.global_step or not last.is_file():
        trainer.save_checkpoint(last, weights_only=False)
    return last
