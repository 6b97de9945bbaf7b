"""What the Hydra commands do before Hydra starts, and how they report equissl's own errors.

* ``--help`` prints what the command does, real examples and the config options, in well
  under a second: nothing here imports torch or Lightning (``--hydra-help`` is Hydra's).
* A misspelt config option (``method=sei``) or a missing ``checkpoint=`` file is named with a
  "did you mean" before Hydra composes anything; ``trainer=gpu`` without a GPU says to use
  ``trainer=cpu``.
* :func:`short_errors`: an error raised by equissl's own code (bad data, checkpoint, config,
  a locked run) prints as one message without a traceback; ``HYDRA_FULL_ERROR=1`` brings
  the traceback back. Errors raised inside other libraries keep their traceback.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

import equissl

log = logging.getLogger("equissl")

#: error types equissl raises with a message written for the user (bad data, checkpoint,
#: config, a locked run); a TypeError or AttributeError is a bug and keeps its traceback
USER_FACING = (ValueError, KeyError, OSError, RuntimeError)
#: config groups a command line picks options of (``method=sie``)
CHOICE_GROUPS = ("method", "data", "backbone", "trainer", "logger", "experiment", "probe")
#: trainer options that need a CUDA GPU
GPU_TRAINERS = ("gpu", "ddp", "multinode")

HELP = {
    "pretrain": """\
equissl-pretrain: pretrain an encoder with a self-supervised method (SIE, seq-JEPA, EquiCaps,
Lie-symmetry PDE SSL, their baselines) and write <run>/checkpoints/last.ckpt. The run folder
follows the command (outputs/pretrain/<method>_<data>_<overrides>_<hash>, named by the
overrides that change results): the same command again, or a requeued job, resumes from its
last checkpoint; a larger trainer.max_steps continues it.

Examples:
  equissl-pretrain experiment=quickstart                       # 10 minutes on a CPU
  equissl-pretrain method=sie data=3diebench data.root=/data/3DIEBench trainer=ddp
  equissl-pretrain method=vicreg data.root=/data/3DIEBench trainer=cpu trainer.max_steps=600
  equissl-pretrain experiment=lie_vicreg_burgers evaluate_after=true
  equissl-pretrain -m method=sie,vicreg seed=0,1 data.root=/data/3DIEBench   # a sweep

Settings are key=value overrides (--cfg job prints the composed config, --cfg all --resolve
also the run folder, hydra.run.dir); equissl-list lists every part with its keys.""",
    "evaluate": """\
equissl-evaluate: probe the frozen encoder of a checkpoint (classification, k-NN, rotation,
colour, translation, PDE coefficients, time-stepping, ...) and write results.json,
results.md and figures into <run>/eval_<hash>/.

Examples:
  equissl-evaluate checkpoint=outputs/pretrain/sie_3diebench_1a2b3c4d/checkpoints/last.ckpt
  equissl-evaluate checkpoint=RUN/checkpoints/last.ckpt probe=[rotation,classification]
  equissl-evaluate checkpoint=RUN/checkpoints/last.ckpt data_root=/scratch/3DIEBench
  equissl-evaluate checkpoint=RUN/checkpoints/last.ckpt eval.baselines=[untrained]
  equissl-evaluate -m 'checkpoint=outputs/pretrain/*/checkpoints/last.ckpt'  # one table""",
}


def config_root() -> Path:
    return Path(str(files("equissl.configs")))


def group_options(group: str) -> list[str]:
    """The YAML options of ``group`` shipped with equissl (``cpu/sie`` for sub-folders)."""
    root = config_root() / group
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def command_help(command: str) -> str:
    """``--help`` text of ``equissl-<command>``."""
    lines = [HELP[command], "", "Config options (group=option; add yours with hydra.searchpath):"]
    groups = ("probe",) if command == "evaluate" else CHOICE_GROUPS
    for group in groups:
        options = group_options(group)
        if options:
            lines += textwrap.wrap(
                ", ".join(options),
                width=92,
                initial_indent=f"  {group:<11} ",
                subsequent_indent=" " * 14,
                break_on_hyphens=False,
            )
    lines += [
        "",
        "Errors from equissl print in a few lines; HYDRA_FULL_ERROR=1 shows the traceback.",
        "Hydra's own options: --hydra-help.",
    ]
    return "\n".join(lines)


def _values(value: str) -> list[str]:
    """The option names in an override value: ``sie``, ``sie,vicreg``, ``[a,b]``."""
    value = value.strip().strip("[]")
    return [v.strip().strip("'\"") for v in value.split(",") if v.strip()]


def stored_options(group: str) -> list[str]:
    """The options of ``group`` in Hydra's ConfigStore (schemas, parts of plugins)."""
    from hydra.core.config_store import ConfigStore

    try:
        names = ConfigStore.instance().list(group)
    except OSError:  # no such group
        return []
    return [n.removesuffix(".yaml") for n in names]


def check_choices(argv: list[str], registered: bool = False) -> str | None:
    """A message naming the first unknown config option in ``argv`` (with "did you mean"),
    or ``None``. Before the parts are registered (``registered=False``, nothing heavy
    imported), ``EQUISSL_PLUGINS`` options cannot be seen, so the check waits for the second
    call, made after registration; options of a ``hydra.searchpath`` are left to Hydra."""
    if any(a.startswith("hydra.searchpath") for a in argv):
        return None
    if os.environ.get("EQUISSL_PLUGINS") and not registered:
        return None
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        if not sep or group not in CHOICE_GROUPS or "(" in value or "$" in value:
            continue
        known = group_options(group)
        stored = set(stored_options(group)) if registered else set()
        known = sorted(set(known) | {n for n in stored if not n.endswith("_schema")})
        for name in _values(value):
            if name in known or name in stored or name in ("null", "") or name.endswith("_schema"):
                continue
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            return f"unknown {group} {name!r}; {hint}options: {', '.join(known)}"
    return None


def check_trainer_device(argv: list[str]) -> str | None:
    """A message when the command asks for a GPU trainer and no CUDA GPU is visible."""
    asked = [v for a in argv for k, _, v in [a.partition("=")] if k.lstrip("+") == "trainer"]
    gpu = [v for v in asked if v in GPU_TRAINERS]
    if not gpu:
        return None
    import torch  # only for this question

    if torch.cuda.is_available():
        return None
    return (
        f"trainer={gpu[0]} needs a CUDA GPU and none is visible here "
        "(torch.cuda.is_available() is False); on a CPU use trainer=cpu"
    )


def check_checkpoint_paths(argv: list[str]) -> str | None:
    """A message naming a ``checkpoint=`` file that does not exist, or ``None``."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key != "checkpoint" or not sep:
            continue
        for path in _checkpoint_values(arg):
            p = Path(path)
            if p.is_file():
                continue
            if p.is_dir():
                hint = (
                    f" (it is a folder; its checkpoint is {p / 'checkpoints' / 'last.ckpt'})"
                    if (p / "checkpoints" / "last.ckpt").is_file()
                    else " (it is a folder)"
                )
                return f"checkpoint={path}: not a checkpoint file{hint}"
            near = _near_files(p)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            return f"checkpoint={path}: no such file{hint}"
    return None


def _checkpoint_values(arg: str) -> list[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create().parse_override(arg)
    except HydraException:
        return []  # Hydra names the syntax error itself
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    value = override.value()
    return [value] if isinstance(value, str) else []


def _near_files(path: Path) -> list[str]:
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return []
    names = [p.name for p in parent.iterdir()][:2000]
    close = difflib.get_close_matches(path.name, names, n=2, cutoff=0.6)
    return [str(parent / c) for c in close]


def _raised_by_equissl(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is equissl's own code (a message
    written for the user), not a library's."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    package = Path(equissl.__file__).resolve().parent
    try:
        Path(tb.tb_frame.f_code.co_filename).resolve().relative_to(package)
    except ValueError:
        return False
    return True


def is_user_error(err: BaseException) -> bool:
    """An error equissl raised with a message for the user (data, checkpoint, config,
    environment), not a bug or a library's failure."""
    return (
        isinstance(err, USER_FACING)
        and not isinstance(err, NotImplementedError)
        and _raised_by_equissl(err)
    )


@contextmanager
def short_errors(command: str) -> Iterator[None]:
    """Print equissl's own errors as ``<command>: error: <message>`` and exit 1 (a single
    run), or log them in one line and re-raise (a multirun job, whose launcher records the
    failure); other errors, and every error under ``HYDRA_FULL_ERROR=1``, propagate."""
    try:
        yield
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or not is_user_error(err):
            raise
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        message = f"{command}: error: {err}"
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error(message)
            raise
        print(f"{message}\n(HYDRA_FULL_ERROR=1 prints the traceback)", file=sys.stderr)
        sys.exit(1)
