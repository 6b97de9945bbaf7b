"""The settings that tell runs apart: what differs between the stored configs of several
evaluated runs (labels of sweep reports and charts, columns of their CSV)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from equissl.checkpointing import flatten

#: settings that never tell runs apart (progress, logging, workers, paths of resumption)
IGNORED = (
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "data.num_workers",
    "data.on_error",
    "data.generate",
    "resume",
    "resume_from",
    "resume_allow",
    "evaluate_after",
    "checkpoint.",
    "speed.",
    "logger.",
    "eval.",
    "probe.",
)


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k if k.endswith(".") else k + ".") for k in IGNORED)


def differing_settings(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run, ``{setting: value}`` of the settings whose values differ between the runs
    (from each run's stored pretraining config; ``checkpoint_sha1`` is not a setting)."""
    flat = [flatten(r.get("config") or {}) for r in results]
    keys = sorted({k for f in flat for k in f if not _ignored(k)})
    missing = object()
    differing = [k for k in keys if len({repr(f.get(k, missing)) for f in flat}) > 1]
    return [{k: f.get(k) for k in differing} for f in flat]
