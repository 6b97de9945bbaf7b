"""The evaluation stage: checkpoint -> frozen features -> probes -> report (docs/evaluation.md).

The model is rebuilt from the checkpoint alone (its self-description); the data are only
read for the probes, and must match the model's view shape and action space.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from equissl.checkpointing import file_digest
from equissl.datasets.base import DataSpec, ViewDataset, build_dataset, num_classes_of
from equissl.datasets.iebench_format import DatasetFormatError
from equissl.datasets.validate import check_dataset_labels
from equissl.eval.baselines import BASELINES
from equissl.eval.features import FeatureSet, cache_key, cached_features
from equissl.eval.probes.backbone_mode import check_backbone_mode
from equissl.eval.probes.base import EvalContext, Probe
from equissl.eval.report import write_report
from equissl.progress import progress_bar
from equissl.registries import PROBES
from equissl.ssl.base import SSLMethod
from equissl.ssl.loading import load_method

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def default_cache_dir(checkpoint: str | Path, out_dir: Path) -> Path:
    """``<run>/features`` beside the checkpoint's run directory (``<run>/checkpoints/x.ckpt``),
    so every evaluation of that checkpoint shares it (entries are keyed by content); the
    evaluation directory's ``features`` when the run directory is not writable."""
    ckpt = Path(checkpoint).resolve()
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / "features" if os.access(run, os.W_OK) else out_dir / "features"


def eval_datasets(
    meta: dict[str, Any],
    overrides: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, ViewDataset]]:
    """The data config (checkpoint's, with ``overrides``) and its probe train/val splits,
    checked against the model's spec."""

    config = meta["config"]
    data = {**config["data"], **{k: v for k, v in (overrides or {}).items() if v is not None}}
    model_spec = DataSpec.from_dict(meta["spec"])
    splits = {}
    for role in ("train", "val"):
        ds = build_dataset(data, data[f"{role}_split"], 1)
        problems = model_spec.mismatch(ds.spec())
        if problems:
            raise ValueError(
                f"the {role} split {data[f'{role}_split']!r} of {data['root']} does "
                f"not fit the checkpoint's model: it has " + "; ".join(problems)
            )
        splits[role] = ds
    check_dataset_labels(splits["train"], splits["val"])  # raises on bad labels, warns unseen
    return data, splits


def ood_dataset(meta: dict[str, Any], data: dict[str, Any], root: str) -> ViewDataset:
    """The test split (``data.val_split``) of another root holding the same kind of data
    under a shifted distribution (e.g. 3DIEBench-OOD's rotations), checked against the
    model's spec: the ``eval.ood_root`` protocol's test set."""
    try:
        ds = build_dataset({**data, "root": root}, data["val_split"], 1)
    except (ValueError, DatasetFormatError) as err:  # a wrong kind of data, a missing file
        raise type(err)(f"eval.ood_root={root}: {err}") from err
    problems = DataSpec.from_dict(meta["spec"]).mismatch(ds.spec())
    if problems:
        raise ValueError(
            f"eval.ood_root={root}: its {data['val_split']!r} split does not fit the "
            "checkpoint's model: it has " + "; ".join(problems)
        )
    return ds


#: ``eval.data_check``: how the feature cache's key confirms the data (``ViewDataset.manifest``
#: or ``full_manifest``)
DATA_CHECKS = ("folders", "files")


def data_check(eval_cfg: dict[str, Any]) -> str:
    """``eval.data_check`` (default ``folders``), checked."""
    check = str(eval_cfg.get("data_check") or "folders")
    if check not in DATA_CHECKS:
        raise ValueError(f"eval.data_check={check!r} is not one of {' | '.join(DATA_CHECKS)}")
    return check


def split_features(
    method: SSLMethod,
    splits: dict[str, ViewDataset],
    digest: str,
    settings: dict[str, Any],
    cache_dir: Path,
    eval_cfg: dict[str, Any],
    device: torch.device,
    progress: bool,
) -> dict[str, FeatureSet]:
    """The cached features of ``method`` on each split (``{"train": …, "val": …}``), keyed by
    the checkpoint ``digest``, the split's manifest and ``settings`` (a baseline model adds
    its name, so its features never mix with the checkpoint's)."""
    feats = {}
    check = data_check(eval_cfg)
    for role, ds in splits.items():
        manifest = ds.full_manifest() if check == "files" else ds.manifest()
        key = cache_key(digest, manifest, {**settings, "split": ds.split_name})
        feats[role] = cached_features(
            method,
            ds,
            cache_dir / f"{ds.split_name}_{key}",
            views_per_object=int(settings["views"]),
            seed=int(settings["seed"]),
            batch_size=int(eval_cfg["batch_size"]),
            num_workers=int(eval_cfg["num_workers"]),
            device=device,
            progress=progress,
            sequence_views=settings["sequences"],
            dtype=str(settings["dtype"]),
        )
    return feats


def format_metrics(metrics: dict[str, float]) -> str:
    """``r2_global=0.4213, constant_r2=-0.0012``: four significant digits, for log lines."""
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def run_probes(
    probes: dict[str, Probe],
    ctx: EvalContext,
    parts: list[str],
    floors: dict[str, dict[str, str]] | None = None,
    protocols: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """Every probe on its parts: ``(metrics {"<part>/<probe>/<metric>": value},
    skipped {probe: reason}, plots {name: file})``. ``floors``, when given, receives the
    floors the probes declared (``ProbeResult.floors``) as ``results.json["floors"]``
    holds them: ``{"<probe>/<metric>": {"of": "<probe>/<metric>", "row": row}}``;
    ``protocols`` receives each probe's protocol card (``Probe.card``)."""
    floors = {} if floors is None else floors
    protocols = {} if protocols is None else protocols
    metrics: dict[str, float] = {}
    skipped: dict[str, str] = {}
    plots: dict[str, str] = {}
    for name, probe in probes.items():
        reason = probe.skip_reason(ctx)
        if reason:
            skipped[name] = reason
            log.info("probe %s skipped: %s", name, reason)
            continue
        protocols[name] = probe.card(ctx)
        by_part = {}
        # one bar per probe, advancing per part (the heads' own per-epoch bars stay off)
        quiet = replace(ctx, progress=False)
        todo = probe.parts(ctx, parts)
        bar = progress_bar(todo, desc=f"probe {name}", unit="part", disable=not ctx.progress)
        for part in bar:
            res = by_part[part] = probe.run(quiet, part)
            for split in (ctx.train, ctx.val):  # unmap the cache pages it read
                split.release()
            metrics.update({f"{part}/{name}/{k}": v for k, v in res.metrics.items()})
            for k, floor in res.declared_floors().items():
                floors[f"{name}/{k}"] = {"of": f"{name}/{floor.of}", "row": floor.row}
            plots.update(res.plots)
            log.info("%s/%s: %s", part, name, format_metrics(res.metrics))
        plots.update(probe.summarise(ctx, by_part))
    return metrics, skipped, plots


#: entries of an evaluation folder that belong to the folder, not to one evaluation
_FOLDER_ENTRIES = (".hydra", "earlier", "features")


def keep_earlier_results(out_dir: Path, digest: str) -> Path | None:
    """Move the results of an evaluation of another checkpoint out of ``out_dir`` before this
    one writes there (an extended run's ``last.ckpt`` keeps its path, hence its evaluation
    folder): into ``out_dir/earlier/<their checkpoint's sha1[:8]>/``.

    Returns:
        The folder the earlier results went to, or ``None`` (nothing earlier, or results of
        this same checkpoint, which an evaluation with these settings reproduces).
    """
    results = out_dir / "results.json"
    if not results.is_file():
        return None
    try:
        earlier = json.loads(results.read_text()).get("checkpoint_sha1")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if earlier == digest:
        return None
    stamp = f"{earlier[:8]}" if earlier else f"unknown_{int(results.stat().st_mtime)}"
    dest = out_dir / "earlier" / stamp
    n = 1
    while dest.exists():
        dest, n = out_dir / "earlier" / f"{stamp}.{n}", n + 1
    dest.mkdir(parents=True)
    for entry in sorted(out_dir.iterdir()):
        if entry.name not in _FOLDER_ENTRIES and entry.suffix != ".log":
            shutil.move(str(entry), dest / entry.name)
    log.warning("%s held the results of another checkpoint; they were moved to %s", out_dir, dest)
    return dest


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
        eval_cfg: the ``eval`` config section (feature extraction, ``probes``, ``baselines``:
            names of :data:`equissl.eval.baselines.BASELINES` also put through the probes).
        out_dir: where ``results.json``, ``results.md`` and plots go (the feature cache goes
            to ``eval.cache_dir``, by default :func:`default_cache_dir`).
        data_overrides: e.g. ``{"root": ...}`` to evaluate on another copy of the data.
    Returns:
        The ``results.json`` dict.
    """
    out_dir = Path(out_dir)
    backbone_mode = check_backbone_mode(str(eval_cfg.get("backbone_mode") or "eval"))
    data_check(eval_cfg)  # a misspelt value stops here, before any work
    device = resolve_device(eval_cfg["device"])
    method, meta = load_method(checkpoint)
    config = meta["config"]
    data, splits = eval_datasets(meta, data_overrides)
    ood_root = eval_cfg.get("ood_root")
    ood = ood_dataset(meta, data, str(ood_root)) if ood_root else None  # named at start-up
    views = int(data.get("eval_views") or 0) or type(splits["train"]).default_eval_views
    seed = int(eval_cfg["seed"])
    digest = file_digest(checkpoint)
    keep_earlier_results(out_dir, digest)
    cache_dir = Path(eval_cfg.get("cache_dir") or default_cache_dir(checkpoint, out_dir))
    dtype = str(eval_cfg.get("cache_dtype") or "float32")

    def make_probes() -> dict[str, Probe]:
        return {
            name: PROBES.get(pcfg["impl"])(name, pcfg)
            for name, pcfg in (eval_cfg.get("probes") or {}).items()
        }

    probes = make_probes()
    builders = {name: BASELINES.get(name) for name in eval_cfg.get("baselines") or []}
    sequence_views = [int(m) for m in eval_cfg.get("sequence_views") or []]
    seq = (
        sorted({*sequence_views, *(m for p in probes.values() for m in p.sequence_views())})
        if meta.get("sequence_representation")
        else []
    )
    settings = {"views": views, "seed": seed, "sequences": seq, "dtype": dtype}
    feats = split_features(method, splits, digest, settings, cache_dir, eval_cfg, device, progress)
    out_dir.mkdir(parents=True, exist_ok=True)

    models: dict[str, SSLMethod] = {"": method}

    def model_and_settings(name: str) -> tuple[SSLMethod, dict[str, Any]]:
        """The model ``name`` ("" the checkpoint's, else a baseline built once) and the cache
        settings that keep its features apart."""
        if name not in models:
            models[name] = BASELINES.get(name)(method, meta)
        return models[name], ({**settings, "baseline": name} if name else settings)

    def features_for(evaluated: str) -> Callable[[ViewDataset, str], FeatureSet]:
        """``EvalContext.features_of`` of the model ``evaluated`` ("" the checkpoint's, or
        a baseline's name): its features of any dataset, cached like the splits'."""

        def features_of(ds: ViewDataset, baseline: str = "") -> FeatureSet:
            model, model_settings = model_and_settings(baseline or evaluated)
            one = split_features(
                model, {"x": ds}, digest, model_settings, cache_dir, eval_cfg, device, progress
            )
            return one["x"]

        return features_of

    ctx = EvalContext(
        train=feats["train"],
        val=feats["val"],
        action_space=splits["train"].action_space,
        num_classes=num_classes_of(splits["train"].labels, splits["val"].labels),
        method=method,
        meta=meta,
        datasets=splits,
        device=device,
        out_dir=out_dir,
        progress=progress,
        sequence_views=tuple(sequence_views),
        data=data,
        features_of=features_for(""),
        backbone_mode=backbone_mode,
        extraction={
            "views_per_object": views,
            "seed": seed,
            "batch_size": int(eval_cfg["batch_size"]),
            "num_workers": int(eval_cfg["num_workers"]),
        },
    )
    wanted = eval_cfg.get("parts")
    parts = [p for p in meta["parts"] if not wanted or p in wanted]
    unknown = sorted(set(wanted or ()) - set(meta["parts"]))
    if unknown:
        raise ValueError(f"eval.parts names {unknown}; the model's parts are {list(meta['parts'])}")
    floors: dict[str, dict[str, str]] = {}
    protocols: dict[str, dict[str, Any]] = {}
    metrics, skipped, plots = run_probes(probes, ctx, parts, floors, protocols)
    baselines = {}
    for name in builders:
        model, base_settings = model_and_settings(name)
        base_feats = split_features(
            model, splits, digest, base_settings, cache_dir, eval_cfg, device, progress
        )
        base_ctx = replace(
            ctx,
            train=base_feats["train"],
            val=base_feats["val"],
            method=model,
            out_dir=out_dir / "baselines" / name,
            features_of=features_for(name),
        )
        base_ctx.out_dir.mkdir(parents=True, exist_ok=True)
        baselines[name] = run_probes(probes, base_ctx, parts, floors)[0]
    results = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha1": digest,
        "checkpoint_step": meta["global_step"],  # the optimizer steps it was trained for
        "method": config["method"]["name"],
        "data": config["data"]["name"],
        "config": config,
        "metrics": metrics,
        "skipped": skipped,
        "plots": plots,
        "floors": floors,  # which metrics are floors (declared by the probes)
        "protocols": protocols,  # what each probe ran, against the paper it follows
    }
    if builders:  # the key only when asked for: results without it keep their exact shape
        results["baselines"] = baselines
    if ood is not None:  # heads trained on the train split as above, scored on another root
        ood_ctx = replace(
            ctx,
            val=ctx.features_of(ood, ""),
            datasets={**splits, "val": ood},
            out_dir=out_dir / "ood",
        )
        ood_ctx.out_dir.mkdir(parents=True, exist_ok=True)
        ood_protocols: dict[str, dict[str, Any]] = {}
        # new probe objects: a probe may keep what it computed for the splits it saw
        # (the coefficient probe's head data and baselines), which the OOD run must not reuse
        ood_probes = make_probes()
        ood_metrics, _, ood_plots = run_probes(ood_probes, ood_ctx, parts, floors, ood_protocols)
        for card in ood_protocols.values():
            card["test_split"] = f"{card['test_split']} of {ood_root}"
        results["ood"] = {
            "root": str(ood_root),
            "metrics": ood_metrics,
            "protocols": ood_protocols,
            "plots": {k: f"ood/{v}" for k, v in ood_plots.items()},
        }
    write_report(results, out_dir)
    return results
