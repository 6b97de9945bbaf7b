"""Run-folder naming: the short hash of a run's command-line overrides that Hydra puts in
``hydra.run.dir`` / ``hydra.sweep.subdir`` (``configs/pretrain.yaml``), so a requeued job or
the same command again finds its own ``last.ckpt``."""

from __future__ import annotations

import hashlib
from typing import Any

from omegaconf import OmegaConf

# Overrides that change how long, how safely or how fast a run trains, not what it is: they
# stay out of the run-directory hash so that the same command with a larger budget resumes.
UNHASHED_KEYS = ("trainer.max_steps", "trainer.max_epochs", "resume", "resume_allow")
UNHASHED_PREFIXES = ("checkpoint.", "speed.")


def hashed_override(override: str) -> bool:
    """False for the overrides :func:`run_hash` ignores (budget, checkpoint cadence, speed)."""
    key = str(override).lstrip("~+").split("=", 1)[0].strip()
    return key not in UNHASHED_KEYS and not key.startswith(UNHASHED_PREFIXES)


def run_hash(overrides: Any) -> str:
    """Short stable hash of a run's command-line overrides (deterministic run directories).

    ``trainer.max_steps``, ``trainer.max_epochs``, ``resume``, ``checkpoint.*`` and
    ``speed.*`` are left out (:data:`UNHASHED_KEYS`): re-running with a larger budget
    continues the same run.
    """
    items = sorted(str(o) for o in (overrides or []) if hashed_override(str(o)))
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:8]


def run_hash_all(overrides: Any) -> str:
    """Hash of every override: multirun sweep jobs, which may differ only in budget."""
    items = sorted(str(o) for o in (overrides or []))
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:8]


def register_resolvers() -> None:
    """Make ``${run_hash:...}`` and ``${run_hash_all:...}`` available to configs (idempotent)."""
    if not OmegaConf.has_resolver("run_hash"):
        OmegaConf.register_new_resolver("run_hash", run_hash)
    if not OmegaConf.has_resolver("run_hash_all"):
        OmegaConf.register_new_resolver("run_hash_all", run_hash_all)
