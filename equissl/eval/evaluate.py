"""The evaluation stage: checkpoint -> frozen features -> probes -> report (DESIGN §5)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from equissl.checkpointing import load_checkpoint
from equissl.datasets.builders import build_dataset, num_classes_of
from equissl.datasets.validate import check_dataset_labels
from equissl.eval.features import cache_key, cached_features
from equissl.eval.probes import classification_probe, pair_regression_probe
from equissl.eval.report import plot_rotation, write_report
from equissl.ssl import SSLMethod, build_method
from equissl.ssl.base import CHECKPOINT_KEY

log = logging.getLogger(__name__)

# Equivariant probes: the action-space target each regresses.
PAIR_PROBES = ("rotation", "color", "translation", "translation_object")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_method(checkpoint: str | Path, data_overrides: dict[str, Any] | None = None,
                ) -> tuple[SSLMethod, dict[str, Any], dict[str, Any]]:
    """Rebuild a method from a checkpoint alone.

    Returns:
        ``(method in eval mode, resolved run config, data config used)``.
    """
    ckpt = load_checkpoint(checkpoint)
    if CHECKPOINT_KEY not in ckpt:
        raise ValueError(f"{checkpoint} is not an equissl checkpoint (no '{CHECKPOINT_KEY}' entry)")
    meta = ckpt[CHECKPOINT_KEY]
    config = meta["config"]
    data = {**config["data"], **{k: v for k, v in (data_overrides or {}).items() if v is not None}}
    train_set = build_dataset(data, config["method"], data["train_split"])
    method = build_method(config, train_set.action_space, meta["num_classes"])
    method.load_state_dict(ckpt["state_dict"])
    return method.eval(), config, data


def evaluate_checkpoint(
    checkpoint: str | Path,
    eval_cfg: dict[str, Any],
    out_dir: str | Path,
    data_overrides: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every configured probe on every part of the frozen representation.

    Args:
        checkpoint: an equissl checkpoint (``last.ckpt``).
        eval_cfg: the ``eval`` config section (feature extraction + ``probe``).
        out_dir: where ``results.json``, ``results.md``, plots and the feature cache go.
        data_overrides: e.g. ``{"root": ...}`` to evaluate on another copy of the data.
    Returns:
        The ``results.json`` dict.
    """
    out_dir = Path(out_dir)
    pcfg = eval_cfg["probe"]
    device = resolve_device(pcfg["device"])
    method, config, data = load_method(checkpoint, data_overrides)
    splits = {}
    feats = {}
    cache_dir = Path(eval_cfg.get("cache_dir") or out_dir / "features")
    for role in ("train", "val"):
        ds = build_dataset(data, config["method"], data[f"{role}_split"])
        splits[role] = ds
        key = cache_key(checkpoint, ds.split_name, f"{data['root']}|{data.get('image_size')}")
        feats[role] = cached_features(
            method, ds, cache_dir / f"{ds.split_name}_{key}.pt",
            batch_size=int(eval_cfg["batch_size"]), num_workers=int(eval_cfg["num_workers"]),
            device=device, progress=progress,
        )
    check_dataset_labels(splits["train"], splits["val"])  # raises on bad labels, warns unseen
    action_space = splits["train"].action_space
    num_classes = num_classes_of(splits["train"], splits["val"])
    parts = {k: v for k, v in method.parts.items() if not pcfg["parts"] or k in pcfg["parts"]}
    metrics: dict[str, float] = {}
    for part, sl in parts.items():
        for probe in pcfg["probes"]:
            if probe == "classification":
                if num_classes <= 1:
                    continue
                res = classification_probe(feats["train"], feats["val"], sl, num_classes, pcfg,
                                           device, progress)
            elif probe in PAIR_PROBES:
                if probe not in action_space.targets:
                    continue

                def target(a: torch.Tensor, b: torch.Tensor, name: str = probe) -> torch.Tensor:
                    return action_space.target(name, a, b)

                res = pair_regression_probe(feats["train"], feats["val"], sl, target, pcfg,
                                            device, f"probe {probe} [{part}]", progress)
                if probe == "rotation":
                    plot_rotation(res.pred, res.target, f"{config['method']['name']} {part}",
                                  out_dir / f"rotation_{part}.png")
            else:
                raise ValueError(f"unknown probe {probe!r}; known: classification, "
                                 f"{', '.join(PAIR_PROBES)}")
            metrics.update({f"{part}/{probe}/{k}": v for k, v in res.metrics.items()})
            log.info("%s/%s: %s", part, probe, res.metrics)
    results = {
        "checkpoint": str(checkpoint),
        "method": config["method"]["name"],
        "data": config["data"]["name"],
        "config": config,
        "metrics": metrics,
    }
    write_report(results, out_dir)
    return results
