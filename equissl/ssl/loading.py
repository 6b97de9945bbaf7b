"""Building a method from a config, and rebuilding one from a checkpoint alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from equissl.checkpointing import load_checkpoint, read_description
from equissl.datasets.base import DataSpec
from equissl.plugins import load_plugins
from equissl.registries import METHODS
from equissl.ssl.base import SSLMethod


def build_method(config: dict[str, Any], spec: DataSpec) -> SSLMethod:
    """Instantiate the method named by ``config["method"]["impl"]`` for data ``spec``."""
    load_plugins()
    return METHODS.get(config["method"]["impl"])(config, spec)


def load_method(checkpoint: str | Path) -> tuple[SSLMethod, dict[str, Any]]:
    """Rebuild a method from a checkpoint alone (no data), in ``eval()`` mode.

    Returns:
        ``(method, the checkpoint's "equissl" description with its ``global_step`` added)``.
    Raises:
        CheckpointError: not an equissl checkpoint, a newer format, or a config that does not
            match the registered schemas (the file and the key are named).
    """

    ckpt = load_checkpoint(checkpoint)
    meta = {**read_description(ckpt, checkpoint), "global_step": int(ckpt.get("global_step", 0))}
    method = build_method(meta["config"], DataSpec.from_dict(meta["spec"]))
    method.load_state_dict(ckpt["state_dict"])
    return method.eval(), meta
