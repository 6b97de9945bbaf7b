"""Console entry points: equissl-pretrain, -evaluate (Hydra), -generate, -validate, -pack,
-list, -report, -export, -import (docs/guide.md). Help, path and option checks run before
Hydra and before torch is imported (:mod:`equissl.apps.command_line`); Hydra itself is
imported (:mod:`equissl.apps.hydra_main`) only by the two commands that compose a config
from it, so the others start without it."""

from __future__ import annotations

import glob
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from equissl import early_signals
from equissl.apps.command_line import (
    check_checkpoint_paths,
    check_choices,
    check_trainer_device,
    command_help,
)

#: names that lived here before the Hydra machinery moved to :mod:`equissl.apps.hydra_main`;
#: ``equissl.apps.cli.<name>`` still finds them (configs and scripts that name them)
_MOVED = (
    "NoteNewRunDir",
    "eval_dir",
    "print_results",
    "run_folder_line",
    "setup",
    "without_zero_flops",
    "_resolved",
)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module("equissl.apps.hydra_main"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from equissl.apps import hydra_main

    hydra_main.setup()
    _exit_on_usage_error("equissl-pretrain", hydra_main.check_registered_choices, argv)
    hydra_main.pretrain_main()
    if shows_job_config(argv):
        print(hydra_main.run_folder_line("pretrain", argv))


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
    from equissl.apps import hydra_main

    hydra_main.setup()
    _exit_on_usage_error("equissl-evaluate", hydra_main.check_registered_choices, sys.argv[1:])
    hydra_main.evaluate_main()
    if shows_job_config(sys.argv[1:]):
        print(hydra_main.run_folder_line("evaluate", sys.argv[1:]))


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
