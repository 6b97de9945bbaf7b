"""The Hydra commands' machinery: config set-up (schemas, parts, resolvers, the SLURM
launcher), the ``equissl-pretrain`` and ``equissl-evaluate`` jobs, and the callback that
notes each output folder before Hydra writes into it. Imported by :mod:`equissl.apps.cli`
only when one of those commands runs, so the light commands (validate, pack, report, ...)
never import Hydra."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from equissl.apps import run_start
from equissl.apps.command_line import check_choices, is_user_error, short_errors
from equissl.apps.run_folder import register_resolvers
from equissl.apps.sweep_jobs import name_sweep_job
from equissl.plugins import register_configs

log = logging.getLogger("equissl")

#: option flags of a Hydra command line that take a value (skipped when collecting overrides)
_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name"}
_VALUE_FLAGS |= {"-cn", "--config-dir", "-cd", "--experimental-rerun", "--info", "-i"}


def eval_dir(checkpoint: str) -> str:
    """Run directory of a checkpoint: ``<run>/checkpoints/x.ckpt`` -> ``<run>``.

    Hydra resolves this before it creates the evaluation folder, so a missing checkpoint
    fails here and leaves nothing behind."""
    p = Path(checkpoint)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} not found")
    return str(p.parent.parent if p.parent.name == "checkpoints" else p.parent)


def setup() -> None:
    """Register the schemas, parts and resolvers the Hydra commands need (idempotent). Not
    done at import, so that ``--help`` answers without importing torch and Lightning."""
    for message in _DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message)
    register_configs()
    register_resolvers()
    _register_launcher()
    if not OmegaConf.has_resolver("eval_dir"):
        OmegaConf.register_new_resolver("eval_dir", eval_dir)


def _register_launcher() -> None:
    """equissl's SLURM sweep launcher (``hydra/launcher=slurm``), by hand: Hydra finds
    plugins by listing the ``hydra_plugins`` folders, which misses an editable install's."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.equissl_launcher import EquisslSlurmLauncher

    Plugins.instance().register(EquisslSlurmLauncher)


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore


def _one_log_stream() -> None:
    """Lightning gives its loggers their own console handler when imported before Hydra
    configures logging; route them through Hydra's handlers instead, so each line is
    printed once (and lands in the run's log file)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_drop_noise)
    logging.getLogger("lightning.pytorch.callbacks.model_summary").addFilter(without_zero_flops)


#: warnings of libraries about their own internals or setups we handle, which a user cannot act on
_DEPRECATIONS = (
    r".*isinstance\(treespec, LeafSpec\)",  # Lightning's use of torch's pytree
    r"The image decoding and encoding capabilities of TorchVision are deprecated",
    # Lightning logs every log_every_n_steps optimizer steps across epochs, so epochs
    # shorter than the interval lose nothing (the quickstart's 5-batch epochs log every 10)
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    # a warning, not a log line, wherever SLURM's srun is installed: our templates start
    # their steps with srun, and a plain command on a login node is not a mistake
    r"The `srun` command is available on your system but is not used",
)


#: Lightning lines that say nothing about this run (an advert, hints for setups we handle)
_NOISE = (
    "💡 Tip",
    "litlogger",
    "The `srun` command is available",
    "TPU available",
    "HPU available",
)


def _drop_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(n in message for n in _NOISE)


def without_zero_flops(record: logging.LogRecord) -> bool:
    """Lightning's model summary without its FLOPs column and total when nothing measured
    them (every entry 0: the model has no ``example_input_array``)."""
    lines = record.getMessage().split("\n")
    header = next((i for i, line in enumerate(lines) if "| FLOPs" in line), None)
    if header is None or not any(line.strip() == "0         Total Flops" for line in lines):
        return True
    cut = lines[header].index("| FLOPs")
    kept = [line[:cut].rstrip() if "|" in line else line for line in lines]
    rule = len(kept[header])
    kept = ["-" * rule if set(line) == {"-"} else line for line in kept]
    record.msg, record.args = "\n".join(kept[:-1] if "Total Flops" in kept[-1] else kept), ()
    return True


def print_results(results: dict, out_dir: Path) -> None:
    """The headline metrics with their floor rows; every metric is in ``results.md``."""
    from equissl.eval.plots import HEADLINE
    from equissl.eval.report import markdown_table

    print(f"\nresults: {out_dir / 'results.json'} (every metric: {out_dir / 'results.md'})\n")
    print(markdown_table([results], only=HEADLINE))


@hydra.main(version_base="1.3", config_path="pkg://equissl.configs", config_name="pretrain")
def pretrain_main(cfg: DictConfig) -> None:
    with run_start.taken_back_if_refused(_job_folder, _refused), short_errors("equissl-pretrain"):
        _pretrain_job(cfg)


def _job_start(cfg: DictConfig) -> tuple[dict[str, Any], Path]:
    """What every Hydra job does first: one log stream, the resolved config, the output
    folder (named in a sweep's listing)."""
    _one_log_stream()
    config = _resolved(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    name_sweep_job(out_dir.name)
    return config, out_dir


def _pretrain_job(cfg: DictConfig) -> None:
    from equissl.eval.evaluate import evaluate_checkpoint
    from equissl.training.pretrain import pretrain
    from equissl.training.signals import requeue_after_training

    config, run_dir = _job_start(cfg)
    last = pretrain(config, run_dir)
    print(f"checkpoint: {last}")
    if config["evaluate_after"]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        with requeue_after_training():  # the requeued job resumes from the feature cache
            results = evaluate_checkpoint(last, config["eval"], run_dir / "eval")
        print_results(results, run_dir / "eval")


@hydra.main(version_base="1.3", config_path="pkg://equissl.configs", config_name="evaluate")
def evaluate_main(cfg: DictConfig) -> None:
    with run_start.taken_back_if_refused(_job_folder, _refused), short_errors("equissl-evaluate"):
        _evaluate_job(cfg)


def _evaluate_job(cfg: DictConfig) -> None:
    from equissl.eval.evaluate import evaluate_checkpoint

    config, out_dir = _job_start(cfg)
    overrides = {
        "root": config["data_root"],
        "splits_dir": config["splits_dir"],
        "train_split": config["train_split"],
        "val_split": config["val_split"],
    }
    results = evaluate_checkpoint(config["checkpoint"], config["eval"], out_dir, overrides)
    print_results(results, out_dir)


class NoteNewRunDir(Callback):
    """Hydra callback: note each output folder's state before Hydra writes into it, so that
    a refused command can leave it as it was (:mod:`equissl.apps.run_start`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # run_job does the same next
        subdir = OmegaConf.select(config, "hydra.output_subdir")
        run_start.note(OmegaConf.select(config, "hydra.run.dir"), subdir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        run_start.note_sweep(
            OmegaConf.select(config, "hydra.sweep.dir"),
            OmegaConf.select(config, "hydra.output_subdir"),
        )


def _job_folder() -> tuple[str, str | None]:
    hydra_cfg = HydraConfig.get()
    return hydra_cfg.runtime.output_dir, hydra_cfg.output_subdir


def _refused(err: BaseException) -> bool:
    """A command that stopped at start on a user error: ``short_errors``' exit 1 (a single
    run) or the user error it re-raises in a sweep job."""
    if isinstance(err, SystemExit):
        return err.code in (1, 2)
    return is_user_error(err)


def run_folder_line(config_name: str, argv: list[str]) -> str:
    """``# run folder: <dir>`` (a YAML comment after Hydra's output) of the command line
    ``argv``, resolved as Hydra will resolve ``hydra.run.dir``."""
    from hydra import compose, initialize_config_module

    overrides, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_FLAGS:
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    with initialize_config_module("equissl.configs", version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        folder = Path(str(cfg.hydra.run.dir))
    state = "exists" if folder.is_dir() else "new"
    return f"# run folder: {folder} ({state})"


def check_registered_choices(argv: list[str]) -> str | None:
    """``check_choices`` again once ``EQUISSL_PLUGINS`` parts are registered (their options
    were invisible before)."""
    return check_choices(argv, registered=True) if os.environ.get("EQUISSL_PLUGINS") else None
