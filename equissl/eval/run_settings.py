"""The settings that tell runs apart: what differs between the stored configs of several
evaluated runs (labels of sweep reports and charts, columns of their CSV)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from equissl.checkpointing import flatten
from equissl.config import is_result_key

#: settings that change no result (``equissl.config.NOT_RESULT_KEYS``) yet tell the runs of
#: a sweep apart: budgets and devices
TELLING = (
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "data.global_batch_size",
)


def _ignored(key: str) -> bool:
    """Progress, logging, workers, resumption, evaluation settings: never a run's name."""
    return not is_result_key(key) and key not in TELLING


def differing_settings(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run, ``{setting: value}`` of the settings whose values differ between the runs
    (from each run's stored pretraining config; ``checkpoint_sha1`` is not a setting)."""
    flat = [flatten(r.get("config") or {}) for r in results]
    keys = sorted({k for f in flat for k in f if not _ignored(k)})
    missing = object()
    differing = [k for k in keys if len({repr(f.get(k, missing)) for f in flat}) > 1]
    return [{k: f.get(k) for k in differing} for f in flat]


def group_label(setting: dict[str, Any]) -> str:
    """The label of a group of runs: their differing settings but ``seed``."""
    return " ".join(f"{k}={v}" for k, v in setting.items() if k != "seed") or "all runs"


def seed_groups(results: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """``{group label: indices of the runs}`` of the runs that differ only in ``seed``."""
    groups: dict[str, list[int]] = {}
    for i, setting in enumerate(differing_settings(results)):
        groups.setdefault(group_label(setting), []).append(i)
    return groups
