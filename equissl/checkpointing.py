"""Atomic checkpoint writes and safe checkpoint reads.

Lightning's default writer streams into the final path, so a job killed mid-write (a
SLURM pre-emption) leaves a truncated ``last.ckpt`` that the requeued job then fails to
load; we write through :func:`equissl.atomic.atomic_open` instead.
Reads use ``weights_only=True``: checkpoints never unpickle arbitrary objects.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import typing
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from equissl.atomic import atomic_open
from equissl.config import PretrainConfig, is_result_key, nested_schema, range_problems
from equissl.plugins import load_plugins
from equissl.registries import BACKBONES, DATASETS, METHODS

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "equissl"
CHECKPOINT_VERSION = 2  # format of the CHECKPOINT_KEY entry; 1 had no data spec


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` so that readers see the old file or the whole new one."""
    with atomic_open(path) as f:
        torch.save(obj, f)


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-1 of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is (the message names the file and key)."""


def read_description(ckpt: dict, path: str | Path) -> dict[str, Any]:
    """The ``"equissl"`` self-description of a loaded checkpoint, checked: format version
    (a newer format than this package writes is refused), required entries, and the stored
    config against the schemas registered now: keys added to a schema after the checkpoint
    was written are filled with their defaults (logged), unknown keys and missing keys
    without a default are named.
    """
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


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict:
    """Load a checkpoint with ``weights_only=True``, naming the file on failure
    (``mmap=True``: tensors are mapped from the file, read only when touched)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
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


# --- stored configs against the schemas registered now ----------------------------------


def _section_registries() -> dict[str, Any]:
    """The registry of each config section whose schema depends on its ``impl``."""
    load_plugins()
    return {"method": METHODS, "data": DATASETS, "backbone": BACKBONES}


def schema_problems(values: Any, schema: type, prefix: str) -> list[str]:
    """Keys of ``values`` (a plain dict) that ``schema`` (a dataclass) does not know, and
    schema keys it lacks, as ``"unknown key method.foo"`` / ``"missing key data.root"``.
    Nested dataclass fields are checked recursively; free-form dict fields are not."""
    if not isinstance(values, dict):
        return [f"{prefix} should be a mapping, got {type(values).__name__}"]
    hints = typing.get_type_hints(schema)
    known = {f.name: f for f in dataclasses.fields(schema)}
    problems = [f"unknown key {prefix}.{k}" for k in sorted(set(values) - set(known))]
    problems += [f"missing key {prefix}.{k}" for k in sorted(set(known) - set(values))]
    for name in sorted(set(known) & set(values)):
        sub = nested_schema(hints.get(name))
        if sub is not None and values[name] is not None:
            problems += schema_problems(values[name], sub, f"{prefix}.{name}")
    return problems


def fill_schema_defaults(values: Any, schema: type, prefix: str) -> list[str]:
    """Add to ``values`` (a plain dict, changed in place) every key of ``schema`` it lacks
    that has a default, recursively into nested dataclass fields; returns the dotted keys
    added. This is how a checkpoint written before a key existed is read: the key's default
    is what the older code did (a new key must default to the old behaviour). Keys without
    a default (``???``) are left missing, so :func:`schema_problems` still names them."""
    if not isinstance(values, dict):
        return []
    hints = typing.get_type_hints(schema)
    filled = []
    for f in dataclasses.fields(schema):
        if f.name not in values:
            if f.default is not dataclasses.MISSING and f.default != "???":
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
                values[f.name] = (
                    dataclasses.asdict(default) if dataclasses.is_dataclass(default) else default
                )
            else:
                continue
            filled.append(f"{prefix}.{f.name}")
            continue
        sub = nested_schema(hints.get(f.name))
        if sub is not None and values[f.name] is not None:
            filled += fill_schema_defaults(values[f.name], sub, f"{prefix}.{f.name}")
    return filled


def _section_schemas(config: dict[str, Any]) -> dict[str, type | None]:
    """The registered schema of the config's method, data and backbone (None: unregistered)."""
    schemas: dict[str, type | None] = {}
    for section, registry in _section_registries().items():
        values = config.get(section) or {}
        impl = values.get("impl") if isinstance(values, dict) else None
        schemas[section] = registry.entry(impl).config if impl in registry else None
    return schemas


def fill_config_defaults(config: dict[str, Any]) -> list[str]:
    """:func:`fill_schema_defaults` on a stored pretraining config: the top level and the
    registered method, data and backbone sections; returns the keys added."""
    filled = [
        k.replace("config.", "", 1) for k in fill_schema_defaults(config, PretrainConfig, "config")
    ]
    for section, schema in _section_schemas(config).items():
        if schema is not None:
            filled += fill_schema_defaults(config[section], schema, section)
    return filled


def config_problems(config: dict[str, Any]) -> list[str]:
    """Every mismatch between a resolved pretraining config (as stored in checkpoints) and
    the schemas registered now: top level, method, data, backbone, trainer, logger, eval."""
    problems = [
        p.replace(" config.", " ") for p in schema_problems(config, PretrainConfig, "config")
    ]
    registries = _section_registries()
    for section, schema in _section_schemas(config).items():
        if schema is None:
            values = config.get(section) or {}
            impl = values.get("impl") if isinstance(values, dict) else None
            known = ", ".join(registries[section].names())
            problems.append(f"{section}.impl={impl!r} is not registered; known: {known}")
            continue
        problems += schema_problems(config[section], schema, section)
    return problems


def config_range_problems(config: dict[str, Any]) -> list[str]:
    """Every value of a resolved pretraining config outside the range its schema field
    declares (:func:`equissl.config.range_problems`): the shared sections and the
    registered method, data and backbone schemas."""
    problems = range_problems(config, PretrainConfig, "")
    for section, schema in _section_schemas(config).items():
        if schema is not None:
            problems += range_problems(config[section], schema, section)
    return sorted(set(problems))


class ResumeMismatch(CheckpointError):
    """The checkpoint being resumed was trained with other result-changing settings."""


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"method.optim.lr": 0.001, ...}`` of a nested dict (lists stay values)."""
    if not isinstance(config, dict):
        return {prefix: config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def result_changes(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (stored value, new value)}`` of every result-changing setting that differs."""
    old, now = copy.deepcopy(stored), copy.deepcopy(new)
    fill_config_defaults(old)  # keys added since the checkpoint: their default is what ran
    fill_config_defaults(now)
    a, b = flatten(old), flatten(now)
    missing = object()
    return {
        k: (a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if is_result_key(k) and a.get(k, missing) != b.get(k, missing)
    }


def check_resume(
    source: str | Path, stored: dict[str, Any], new: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """The allowed changes between ``stored`` and ``new``.

    Raises:
        ResumeMismatch: a result-changing key differs and ``new["resume_allow"]`` does not
            name it (every such key is listed, with old -> new).
    """
    changes = result_changes(stored, new)
    allowed = set(new.get("resume_allow") or [])
    refused = {k: v for k, v in changes.items() if not _allowed(k, allowed)}
    if refused:
        lines = "\n".join(f"  {k}: {old!r} -> {now!r}" for k, (old, now) in refused.items())
        keys = ",".join(refused)
        raise ResumeMismatch(
            f"{source} was trained with other settings than this command gives:\n{lines}\n"
            "Resuming would continue the old run under a config that does not describe it. "
            "Use another run directory for a new run, or name the keys that may change: "
            f"resume_allow=[{keys}]"
        )
    return changes


def _allowed(key: str, allowed: set[str]) -> bool:
    return any(key == a or key.startswith(a + ".") for a in allowed)
