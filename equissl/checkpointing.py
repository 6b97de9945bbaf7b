"""Atomic checkpoint writes and safe checkpoint reads.

Lightning's default writer streams into the final path, so a job killed mid-write (a
SLURM pre-emption) leaves a truncated ``last.ckpt`` that the requeued job then fails to
load; we write through :func:`equissl.atomic.atomic_open` instead.
Reads use ``weights_only=True``: checkpoints never unpickle arbitrary objects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from equissl.atomic import atomic_open

log = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` so that readers see the old file or the whole new one."""
    with atomic_open(path) as f:
        torch.save(obj, f)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is (the message names the file and key)."""


def read_description(ckpt: dict, path: str | Path) -> dict[str, Any]:
    """The ``"equissl"`` self-description of a loaded checkpoint, checked: format version
    (a newer format than this package writes is refused), required entries, and the stored
    config against the schemas registered now: keys added to a schema after the checkpoint
    was written are filled with their defaults (logged), unknown keys and missing keys
    without a default are named.
    """
    from equissl.config import config_problems, fill_config_defaults
    from equissl.ssl.base import CHECKPOINT_KEY, CHECKPOINT_VERSION

    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not an equissl checkpoint (no '{CHECKPOINT_KEY}' entry)")
    version = meta.get("version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: '{CHECKPOINT_KEY}.version' is {version!r}, not an int")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version} (written by equissl "
            f"{meta.get('package_version', '?')}); this equissl reads formats up to "
            f"{CHECKPOINT_VERSION}: upgrade equissl"
        )
    if version < CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}, from before checkpoints described their "
            f"data (format {CHECKPOINT_VERSION}); re-save it with the equissl that wrote it or "
            "retrain"
        )
    absent = [k for k in ("config", "spec", "parts") if k not in meta]
    if absent or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} lacks {absent or ['state_dict']}")
    filled = fill_config_defaults(meta["config"])
    if filled:
        log.info("%s predates config keys %s: read with their defaults", path, ", ".join(filled))
    problems = config_problems(meta["config"])
    if problems:
        raise CheckpointError(
            f"{path}: its config does not match this equissl's schemas: " + "; ".join(problems)
        )
    return meta


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``, naming the file on failure."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise RuntimeError(f"checkpoint {path} cannot be loaded: {err}") from err


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO with atomic writes and ``weights_only`` reads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location or "cpu")
