"""Console entry points: equissl-pretrain, -evaluate (Hydra), -generate, -validate, -pack,
-list, -report, -export, -import (docs/guide.md). Help, path and option checks run before
Hydra and before torch is imported (:mod:`equissl.apps.command_line`)."""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from equissl import early_signals
from equissl.apps import run_start
from equissl.apps.command_line import (
    check_checkpoint_paths,
    check_choices,
    check_trainer_device,
    command_help,
    is_user_error,
    short_errors,
)
from equissl.apps.run_folder import register_resolvers
from equissl.apps.sweep_jobs import name_sweep_job
from equissl.plugins import register_configs

log = logging.getLogger("equissl")


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
def _pretrain(cfg: DictConfig) -> None:
    with run_start.taken_back_if_refused(_job_folder, _refused), short_errors("equissl-pretrain"):
        _pretrain_job(cfg)


def _pretrain_job(cfg: DictConfig) -> None:
    from equissl.eval.evaluate import evaluate_checkpoint
    from equissl.training.pretrain import pretrain
    from equissl.training.signals import requeue_on_usr1

    _one_log_stream()
    config = _resolved(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    name_sweep_job(run_dir.name)
    last = pretrain(config, run_dir)
    print(f"checkpoint: {last}")
    if config["evaluate_after"]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        with requeue_on_usr1():  # the requeued job resumes from the feature cache
            results = evaluate_checkpoint(last, config["eval"], run_dir / "eval")
        print_results(results, run_dir / "eval")


@hydra.main(version_base="1.3", config_path="pkg://equissl.configs", config_name="evaluate")
def _evaluate(cfg: DictConfig) -> None:
    with run_start.taken_back_if_refused(_job_folder, _refused), short_errors("equissl-evaluate"):
        _evaluate_job(cfg)


def _evaluate_job(cfg: DictConfig) -> None:
    from equissl.eval.evaluate import evaluate_checkpoint

    _one_log_stream()
    config = _resolved(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    name_sweep_job(out_dir.name)
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


def list_parts(argv: list[str] | None = None) -> None:
    """``equissl-list``: every registered method, dataset, backbone, probe and action space."""
    from equissl.plugins import describe_registries

    print(describe_registries())


def pretrain() -> None:
    """``equissl-pretrain``."""
    early_signals.record_usr1()  # before the seconds of imports and set-up below
    argv = sys.argv[1:]
    if {"--help", "-h"} & set(argv):
        say(command_help("pretrain"))
        return
    _exit_on_usage_error("equissl-pretrain", check_choices, argv)
    _exit_on_usage_error("equissl-pretrain", check_trainer_device, argv)
    setup()
    _exit_on_usage_error("equissl-pretrain", _check_registered_choices, argv)
    _pretrain()
    if shows_job_config(argv):
        print(run_folder_line("pretrain", argv))


def evaluate() -> None:
    """``equissl-evaluate``."""
    argv = sys.argv[1:]
    if {"--help", "-h"} & set(argv):
        say(command_help("evaluate"))
        return
    _exit_on_usage_error("equissl-evaluate", check_choices, argv)
    try:
        sys.argv[1:] = expand_checkpoint_glob(argv)
    except ValueError as err:
        sys.exit(f"equissl-evaluate: {err}")
    _exit_on_usage_error("equissl-evaluate", check_checkpoint_paths, sys.argv[1:])
    setup()
    _exit_on_usage_error("equissl-evaluate", _check_registered_choices, sys.argv[1:])
    _evaluate()
    if shows_job_config(sys.argv[1:]):
        print(run_folder_line("evaluate", sys.argv[1:]))


_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name"}
_VALUE_FLAGS |= {"-cn", "--config-dir", "-cd", "--experimental-rerun", "--info", "-i"}


def shows_job_config(argv: list[str]) -> bool:
    """``--cfg job`` / ``--cfg all`` of one run (not a sweep): Hydra prints the config and
    stops, so nothing else says where the run would write."""
    if {"-m", "--multirun"} & set(argv):
        return False
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return any(
        (a in ("--cfg", "-c") and v in ("job", "all")) or a in ("--cfg=job", "--cfg=all")
        for a, v in pairs
    )


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


def _check_registered_choices(argv: list[str]) -> str | None:
    """``check_choices`` again once ``EQUISSL_PLUGINS`` parts are registered (their options
    were invisible before)."""
    return check_choices(argv, registered=True) if os.environ.get("EQUISSL_PLUGINS") else None


def _exit_on_usage_error(command: str, check: Any, argv: list[str]) -> None:
    problem = check(argv)
    if problem:
        sys.exit(f"{command}: {problem}")


def expand_checkpoint_glob(argv: list[str]) -> list[str]:
    """Expand a ``checkpoint=`` value with glob characters (``runs/*/last.ckpt``,
    ``runs/**/last.ckpt``, or Hydra-style ``glob(runs/*/last.ckpt)``) into the sorted,
    comma-separated sweep of the files it matches, before Hydra parses the overrides
    (Hydra's ``glob()`` picks config-group options, not values).

    Raises:
        ValueError: the pattern matches no file, or several without ``-m`` (a multirun).
    """
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        pattern = value[5:-1] if value.startswith("glob(") and value.endswith(")") else value
        literal = Path(value).is_file()  # an existing file named with glob characters
        if key != "checkpoint" or not sep or literal or not re.search(r"[*?\[]", pattern):
            out.append(arg)
            continue
        matches = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not matches:
            raise ValueError(f"checkpoint={value}: the pattern matches no file")
        if len(matches) > 1 and not {"-m", "--multirun"} & set(argv):
            raise ValueError(
                f"checkpoint={value} matches {len(matches)} checkpoints; add -m to evaluate "
                "each of them (a multirun sweep with one combined table)"
            )
        out.append("checkpoint=" + ",".join(hydra_quoted(p) for p in matches))
    return out


def hydra_quoted(value: str) -> str:
    """``value`` as one Hydra override value: bare when Hydra reads it back as this string,
    else single-quoted (commas, spaces, brackets, quotes, ``1.5`` or ``true`` in a file name
    stay part of the name)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        if OverridesParser.create().parse_override(f"k={value}").value() == value:
            return value
    except HydraException:
        pass
    # inside quotes only backslashes before a quote (or the closing one) are escapes
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    return "'" + escaped.replace("'", "\\'") + "'"


def say(text: str) -> None:
    """Print ``text``; a reader that left early (``--help | head``) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _tool(module: str, argv: list[str] | None) -> None:
    """Run ``equissl.apps.<module>.main``; ``--help`` prints the module's usage (exit 0)."""
    import importlib

    tool = importlib.import_module(f"equissl.apps.{module}")
    args = sys.argv[1:] if argv is None else argv
    if {"--help", "-h"} & set(args):
        say(str(tool.__doc__))
        sys.exit(0)
    sys.exit(tool.main(args))


def generate(argv: list[str] | None = None) -> None:
    """``equissl-generate``."""
    _tool("generate", argv)


def validate(argv: list[str] | None = None) -> None:
    """``equissl-validate``."""
    _tool("validate", argv)


def pack(argv: list[str] | None = None) -> None:
    """``equissl-pack``."""
    _tool("pack", argv)


def report(argv: list[str] | None = None) -> None:
    """``equissl-report``."""
    _tool("report", argv)


def export(argv: list[str] | None = None) -> None:
    """``equissl-export``."""
    _tool("export", argv)


def import_released(argv: list[str] | None = None) -> None:
    """``equissl-import``."""
    _tool("import_released", argv)
