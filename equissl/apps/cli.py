"""Console entry points: equissl-pretrain, -evaluate (Hydra), -generate, -validate, -pack,
-list (docs/guide.md). Help, path and option checks run before Hydra and before torch is
imported (:mod:`equissl.apps.command_line`)."""

from __future__ import annotations

import glob
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from equissl.apps.command_line import (
    check_checkpoint_paths,
    check_choices,
    check_trainer_device,
    command_help,
    short_errors,
)
from equissl.apps.run_folder import register_resolvers
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
    if not OmegaConf.has_resolver("eval_dir"):
        OmegaConf.register_new_resolver("eval_dir", eval_dir)


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


#: deprecation warnings of libraries about their own internals, which a user cannot act on
_DEPRECATIONS = (
    r".*isinstance\(treespec, LeafSpec\)",  # Lightning's use of torch's pytree
    r"The image decoding and encoding capabilities of TorchVision are deprecated",
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


def print_results(results: dict, out_dir: Path) -> None:
    """The headline metrics with their floor rows; every metric is in ``results.md``."""
    from equissl.eval.plots import HEADLINE
    from equissl.eval.report import markdown_table

    print(f"\nresults: {out_dir / 'results.json'} (every metric: {out_dir / 'results.md'})\n")
    print(markdown_table([results], only=HEADLINE))


@hydra.main(version_base="1.3", config_path="pkg://equissl.configs", config_name="pretrain")
def _pretrain(cfg: DictConfig) -> None:
    with short_errors("equissl-pretrain"):
        _pretrain_job(cfg)


def _pretrain_job(cfg: DictConfig) -> None:
    from equissl.eval.evaluate import evaluate_checkpoint
    from equissl.training.pretrain import pretrain

    _one_log_stream()
    config = _resolved(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    last = pretrain(config, run_dir)
    print(f"checkpoint: {last}")
    if config["evaluate_after"]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        results = evaluate_checkpoint(last, config["eval"], run_dir / "eval")
        print_results(results, run_dir / "eval")


@hydra.main(version_base="1.3", config_path="pkg://equissl.configs", config_name="evaluate")
def _evaluate(cfg: DictConfig) -> None:
    with short_errors("equissl-evaluate"):
        _evaluate_job(cfg)


def _evaluate_job(cfg: DictConfig) -> None:
    from equissl.eval.evaluate import evaluate_checkpoint

    _one_log_stream()
    config = _resolved(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    overrides = {
        "root": config["data_root"],
        "splits_dir": config["splits_dir"],
        "train_split": config["train_split"],
        "val_split": config["val_split"],
    }
    try:
        results = evaluate_checkpoint(config["checkpoint"], config["eval"], out_dir, overrides)
    except BaseException:
        _remove_if_empty(out_dir)
        raise
    print_results(results, out_dir)


class NoteNewRunDir(Callback):
    """Hydra callback: remember which output folders this invocation creates, before Hydra
    creates them, so that a failed command removes only a folder it made itself."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # run_job does the same next
        _note_if_new(OmegaConf.select(config, "hydra.run.dir"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        _note_if_new(OmegaConf.select(config, "hydra.sweep.dir"))


#: output folders (resolved) that did not exist when this process's Hydra run started
_NEW_DIRS: set[Path] = set()


def _note_if_new(path: str | None) -> None:
    if path and not Path(path).exists():
        _NEW_DIRS.add(Path(path).resolve())


def _made_by_us(path: Path) -> bool:
    path = path.resolve()
    return any(path == new or new in path.parents for new in _NEW_DIRS)


def _remove_if_empty(path: Path) -> None:
    """Drop a run directory that this very command created and left with nothing but
    Hydra's own files (its ``.hydra`` folder and log file); anything that existed before the
    command started is kept."""
    import shutil

    if not path.is_dir() or not _made_by_us(path):
        return
    hydra_files = {".hydra"} | {p.name for p in path.glob("*.log") if p.is_file()}
    if all(p.name in hydra_files for p in path.iterdir()):
        shutil.rmtree(path, ignore_errors=True)


def list_parts(argv: list[str] | None = None) -> None:
    """``equissl-list``: every registered method, dataset, backbone, probe and action space."""
    from equissl.plugins import describe_registries

    print(describe_registries())


def pretrain() -> None:
    """``equissl-pretrain``."""
    argv = sys.argv[1:]
    if {"--help", "-h"} & set(argv):
        print(command_help("pretrain"))
        return
    _exit_on_usage_error("equissl-pretrain", check_choices, argv)
    _exit_on_usage_error("equissl-pretrain", check_trainer_device, argv)
    setup()
    _pretrain()


def evaluate() -> None:
    """``equissl-evaluate``."""
    argv = sys.argv[1:]
    if {"--help", "-h"} & set(argv):
        print(command_help("evaluate"))
        return
    _exit_on_usage_error("equissl-evaluate", check_choices, argv)
    try:
        sys.argv[1:] = expand_checkpoint_glob(argv)
    except ValueError as err:
        sys.exit(f"equissl-evaluate: {err}")
    _exit_on_usage_error("equissl-evaluate", check_checkpoint_paths, sys.argv[1:])
    setup()
    _evaluate()


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


def generate(argv: list[str] | None = None) -> None:
    from equissl.apps.generate import main

    sys.exit(main(sys.argv[1:] if argv is None else argv))


def validate(argv: list[str] | None = None) -> None:
    from equissl.apps.validate import main

    sys.exit(main(sys.argv[1:] if argv is None else argv))


def pack(argv: list[str] | None = None) -> None:
    from equissl.apps.pack import main

    sys.exit(main(sys.argv[1:] if argv is None else argv))
