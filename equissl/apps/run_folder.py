"""Run-folder naming: a pretraining run's folder follows its experiment, so a requeued job or
the same command again finds its own ``last.ckpt``.

``outputs/pretrain/<method>_<data>_<readable overrides>_<hash>`` (:func:`run_dir`): only the
overrides that change results (:func:`equissl.config.is_result_key`) enter the name and the
hash, so a progress bar, a worker count, a logger, evaluation settings or a larger budget
continue the same run. Folders named by the earlier rule (every override but budget,
checkpoint cadence and speed: :func:`run_hash`) are found and continued, never orphaned.
Evaluation folders and multirun sweep jobs keep :func:`run_hash` / :func:`run_hash_all`:
there, every override is part of what was asked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from equissl.config import is_result_key

# Overrides that change how long, how safely or how fast a run trains, not what it is: they
# stay out of the run-directory hash so that the same command with a larger budget resumes.
UNHASHED_KEYS = ("trainer.max_steps", "trainer.max_epochs", "resume", "resume_allow")
UNHASHED_PREFIXES = ("checkpoint.", "speed.")


def _key(override: str) -> str:
    return str(override).lstrip("~+").split("=", 1)[0].strip()


def _hash(overrides: Any, keep: Callable[[str], bool] = lambda o: True) -> str:
    """Short stable hash of the overrides ``keep`` accepts (order-free)."""
    items = sorted(str(o) for o in (overrides or []) if keep(str(o)))
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:8]


def hashed_override(override: str) -> bool:
    """False for the overrides :func:`run_hash` ignores (budget, checkpoint cadence, speed)."""
    key = _key(override)
    return key not in UNHASHED_KEYS and not key.startswith(UNHASHED_PREFIXES)


def run_hash(overrides: Any) -> str:
    """Short stable hash of a run's command-line overrides (deterministic run directories).

    ``trainer.max_steps``, ``trainer.max_epochs``, ``resume``, ``checkpoint.*`` and
    ``speed.*`` are left out (:data:`UNHASHED_KEYS`): re-running with a larger budget
    continues the same run.
    """
    return _hash(overrides, hashed_override)


def run_hash_all(overrides: Any) -> str:
    """Hash of every override: multirun sweep jobs, which may differ only in budget."""
    return _hash(overrides)


def result_override(override: str) -> bool:
    """Whether a command-line override can change what the run computes (a config-group
    choice of a non-result section, ``logger=csv``, cannot)."""
    key = _key(override)
    if key == "resume_from":  # a new run continuing another's state: its own folder
        return True
    return is_result_key(key) and is_result_key(key + ".x")


def result_hash(overrides: Any) -> str:
    """Short stable hash of the result-changing overrides."""
    return _hash(overrides, result_override)


#: override keys left out of the readable part of a name (paths; the name has method, data)
_UNREADABLE = re.compile(r"(^|\.)(root|dir|path|splits_dir|mesh_root|resume_from)$|^(method|data)$")
_READABLE_CHARS = 60


def readable(overrides: Any) -> str:
    """``lr-0.5_seed-1``: the result-changing overrides a person reads in a folder name (last
    key component and value, at most 60 characters); paths are left out. Only letters,
    digits and ``._+-``, so the path can be typed back as a Hydra value (no ``,`` or ``=``)."""
    parts = []
    for o in sorted(str(o) for o in (overrides or []) if result_override(str(o))):
        key, _, value = o.lstrip("~+").partition("=")
        if _UNREADABLE.search(key.strip()):
            continue
        short = key.strip().rsplit(".", 1)[-1]
        parts.append(re.sub(r"[^A-Za-z0-9._+-]+", ".", f"{short}-{value.strip()}").strip("."))
    return "_".join(parts)[:_READABLE_CHARS].rstrip("_.-")


def run_dir(base: str, method: str, data: str, overrides: Any) -> str:
    """``<base>/<method>_<data>_[<readable>_]<hash>``; the folder an earlier equissl named for
    the same command when it exists and the new one does not (so the run continues)."""
    name = "_".join(filter(None, [method, data, readable(overrides), result_hash(overrides)]))
    new = Path(base) / name
    legacy = Path(base) / f"{method}_{data}_{run_hash(overrides)}"
    if not new.exists() and (legacy / "checkpoints").is_dir():
        return str(legacy)
    return str(new)


def register_resolvers() -> None:
    """Make ``${run_dir:...}``, ``${run_hash:...}`` and ``${run_hash_all:...}`` available to
    configs (idempotent)."""
    for name, fn in (("run_dir", run_dir), ("run_hash", run_hash), ("run_hash_all", run_hash_all)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
