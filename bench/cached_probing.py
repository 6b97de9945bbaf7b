"""Cached-feature probing against the reference protocol (issue 12 item 8): the rotation
probe of the evaluation stage (``equissl.eval.probes.pair_regression``) on features
extracted once, against the SIE repository's ``eval_angle_prediction.py`` protocol, which
runs the frozen backbone on both images of every pair at every probe epoch.

    python bench/cached_probing.py [--data DIR] [--checkpoint CKPT] [--part equi]
        [--epochs 5] [--repeats 3] [--protocol-epochs 300] [--threads N] [--out DIR]

Same probe on both sides: the MLP ``2d -> 1024 -> 1024 -> 4`` on ``[r_a ‖ r_b]`` regressing
the relative quaternion, Adam 1e-3, batch 256, one random pair of distinct views per train
object per epoch, with the same seeded generator, head initialisation and mini-batch order,
and the same fixed validation pairs (10 per object). Same data: the quickstart render
(``--data``, default ``data/quickstart``; rendered with equissl's generator from
``configs/experiment/quickstart.yaml`` when absent). Same model: ``--checkpoint`` (default
the method table's SIE run under ``runs/method_table`` if present, else an untrained SIE of
the quickstart config: the speed ratio does not depend on training). The backbone is in
``eval()`` mode on both sides (the SIE script leaves it in ``train()``, where probe data shift
the BatchNorm statistics), so the two sides see the same features and their R² agree up to
float rounding of the batching.

* **reference**: each epoch decodes and encodes the two images of every train pair, then
  steps the head; validation encodes each fixed pair's two images once, at the end (the SIE
  script also re-encodes a validation pass every epoch: not counted here, which favours the
  reference).
* **ours**: :func:`equissl.eval.features.cached_features` (every evaluation view of both
  splits, written to a fresh cache directory) then the probe on the cached tensors.

Each side runs ``--epochs`` epochs end to end, ``--repeats`` times; medians are reported.
The costs are linear in epochs — reference ``E × (2 N backbone passes + MLP) + val``, ours
``one extraction (N·V + N_val·V passes) + E × MLP`` — so the ratio at the protocol's
``--protocol-epochs`` is projected from the measured per-epoch and fixed costs, and the
asymptotic ratio (E → ∞) is the reference's epoch over ours. Writes
``<out>/cached_probing_cpu.{json,txt}``.

Both sides use the same torch threads (``--threads``). On a shared machine use
``--threads 1``: under oversubscription, 2 threads make the MLP's small matrix products
wait at thread barriers, which inflated our per-epoch cost 5-8x in a run on the 2-core
development machine at load 12 (``bench/results/cached_probing_cpu_threads2.txt``) while the
backbone's convolutions suffered less. This matters only for the projection to 300 epochs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from torch import Tensor

from equissl.apps.hydra_main import _resolved, setup
from equissl.datasets.base import build_dataset
from equissl.eval.features import cached_features
from equissl.eval.metrics import r2_global, r2_sklearn
from equissl.eval.probes.base import seeded
from equissl.eval.probes.pair_regression import (
    distinct_views,
    fixed_pairs,
    pair_mlp,
    pair_regression_probe,
)
from equissl.ssl.loading import build_method, load_method
from equissl.training.pretrain import prepare_data

setup()  # the configs, parts and resolvers the commands register at start-up

REPO = Path(__file__).resolve().parents[1]


def quickstart_config(root: Path) -> dict[str, Any]:
    with initialize_config_module("equissl.configs", version_base="1.3"):
        cfg = compose("pretrain", overrides=["experiment=quickstart", f"data.root={root}"])
    return _resolved(cfg)


def model_and_data(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any], str]:
    """The frozen method, its data config (root ``--data``, rendered if absent), the
    rotation probe's config and where the model came from."""
    config = quickstart_config(args.data)
    prepare_data(config["data"])
    ckpt = args.checkpoint
    if ckpt is None:
        found = sorted((REPO / "runs" / "method_table").glob("sie_seed0_*/checkpoints/last.ckpt"))
        ckpt = found[0] if found else None
    if ckpt is not None and Path(ckpt).is_file():
        method, meta = load_method(ckpt)
        data = {**meta["config"]["data"], "root": str(args.data)}
        source = str(ckpt)
    else:
        data = config["data"]
        method = build_method(config, build_dataset(data, data["train_split"], 1).spec())
        source = "untrained SIE (configs/experiment/quickstart.yaml)"
    probe = {**config["eval"]["probes"]["rotation"], "epochs": args.epochs}
    return method.eval(), data, probe, source


def pair_views(single: Any, v: int, objs: Tensor, views: Tensor) -> tuple[Tensor, Tensor]:
    """Decoded images ``[B, C, H, W]`` and latents ``[B, P]`` of views ``views`` of ``objs``."""
    items = [single[int(o) * v + int(j)] for o, j in zip(objs, views, strict=True)]
    return (
        torch.stack([it["views"][0] for it in items]),
        torch.stack([it["latents"][0] for it in items]),
    )


def reference_probe(
    method: Any, train: Any, val: Any, part: str, space: Any, cfg: dict[str, Any]
) -> dict[str, Any]:
    """The reference protocol: the frozen backbone encodes both images of every pair at
    every epoch. Sampling, initialisation and batching as :func:`fit` (same generator)."""
    n, v = len(train) // train.views_per_object, train.views_per_object
    seed, bs = int(cfg["seed"]), int(cfg["batch_size"])

    def encode(single: Any, objs: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        vv = single.views_per_object
        xa, la = pair_views(single, vv, objs, a)
        xb, lb = pair_views(single, vv, objs, b)
        with torch.no_grad():
            r = method.represent(torch.cat((xa, xb)))[part]
        return torch.cat(r.chunk(2), dim=1), space.target("rotation", la, lb)

    gen = torch.Generator().manual_seed(seed)
    with seeded(seed):
        head = pair_mlp(2 * method.part_dims[part], int(cfg["hidden_dim"]), 4)
    opt = torch.optim.Adam(
        head.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"])
    )
    epochs = []
    for _ in range(int(cfg["epochs"])):
        start = time.perf_counter()
        a, b = distinct_views(n, v, gen)
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, bs):
            idx = order[s : s + bs]
            x, y = encode(train, idx, a[idx], b[idx])
            loss = F.mse_loss(head(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        epochs.append(time.perf_counter() - start)
    start = time.perf_counter()
    head.eval()
    nv = len(val) // val.views_per_object
    o, pa, pb = fixed_pairs(
        nv, val.views_per_object, int(cfg["val_pairs_per_object"]), seed + 1
    ).unbind(1)
    preds, targets = [], []
    for s in range(0, len(o), bs):
        x, y = encode(val, o[s : s + bs], pa[s : s + bs], pb[s : s + bs])
        with torch.no_grad():
            preds.append(head(x))
        targets.append(y)
    pred, target = torch.cat(preds), torch.cat(targets)
    return {
        "epoch_seconds": epochs,
        "val_seconds": time.perf_counter() - start,
        "r2_global": r2_global(pred, target),
        "r2_sklearn": r2_sklearn(pred, target),
    }


def cached_probe(
    method: Any, splits: dict[str, Any], part: str, space: Any, cfg: dict[str, Any], views: int
) -> dict[str, Any]:
    """Ours: extract every evaluation view of both splits into a fresh cache, then probe."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        feats = {
            role: cached_features(
                method,
                ds,
                Path(tmp) / role,
                views_per_object=views,
                batch_size=256,
                num_workers=0,
                progress=False,
            )
            for role, ds in splits.items()
        }
        extraction = time.perf_counter() - start

        def probe(c: dict[str, Any]) -> tuple[float, dict[str, float]]:
            start = time.perf_counter()
            res = pair_regression_probe(
                feats["train"].parts[part],
                feats["train"].latents,
                feats["val"].parts[part],
                feats["val"].latents,
                lambda a, b: space.target("rotation", a, b),
                c,
                torch.device("cpu"),
                progress=False,
            )
            return time.perf_counter() - start, res.metrics

        seconds, metrics = probe(cfg)
        fixed, _ = probe({**cfg, "epochs": 0})  # the probe's fixed cost (head, val pairs)
    return {
        "extraction_seconds": extraction,
        "probe_seconds": seconds,
        "probe_fixed_seconds": fixed,
        **metrics,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs, no GPU used (torch threads "
        f"{torch.get_num_threads()}), load average {load}; torch {torch.__version__}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "data" / "quickstart")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--part", default="equi")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--protocol-epochs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    method, data, cfg, source = model_and_data(args)
    splits = {role: build_dataset(data, data[f"{role}_split"], 1) for role in ("train", "val")}
    space = splits["train"].action_space
    views = int(data.get("eval_views") or 0) or type(splits["train"]).default_eval_views
    evals = {role: ds.evaluation_views(views, 0) for role, ds in splits.items()}
    runs = []
    for _ in range(args.repeats):
        ours = cached_probe(method, splits, args.part, space, cfg, views)
        ref = reference_probe(method, evals["train"], evals["val"], args.part, space, cfg)
        runs.append({"ours": ours, "reference": ref})
        print(json.dumps(runs[-1]), flush=True)

    def med(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in runs)

    ref_epoch = statistics.median(t for r in runs for t in r["reference"]["epoch_seconds"])
    ref_total = statistics.median(
        sum(r["reference"]["epoch_seconds"]) + r["reference"]["val_seconds"] for r in runs
    )
    ref_val = med("reference", "val_seconds")
    extraction = med("ours", "extraction_seconds")
    our_epoch = statistics.median(
        max(r["ours"]["probe_seconds"] - r["ours"]["probe_fixed_seconds"], 0.0) / args.epochs
        for r in runs
    )
    our_fixed = extraction + med("ours", "probe_fixed_seconds")
    ours_total = statistics.median(
        r["ours"]["extraction_seconds"] + r["ours"]["probe_seconds"] for r in runs
    )
    e = args.protocol_epochs
    projected = (e * ref_epoch + ref_val) / (our_fixed + e * our_epoch)
    n_train, n_val = len(splits["train"]), len(splits["val"])
    summary = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "model": source,
        "data": f"{data['root']}: {n_train} train + {n_val} val objects x {views} views, "
        f"{data['image_size']} px",
        "part": args.part,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "reference_seconds": ref_total,
        "ours_seconds": ours_total,
        "ratio": ref_total / ours_total,
        "reference_epoch_seconds": ref_epoch,
        "reference_val_seconds": ref_val,
        "ours_extraction_seconds": extraction,
        "ours_probe_fixed_seconds": med("ours", "probe_fixed_seconds"),
        "ours_epoch_seconds": our_epoch,
        "protocol_epochs": e,
        "projected_ratio_at_protocol_epochs": projected,
        "asymptotic_ratio": ref_epoch / our_epoch,
        "r2_global": {"reference": med("reference", "r2_global"), "ours": med("ours", "r2_global")},
        "r2_sklearn": {
            "reference": med("reference", "r2_sklearn"),
            "ours": med("ours", "r2_sklearn"),
        },
        "runs": runs,
    }
    s = summary
    report = "\n".join(
        [
            f"cached-feature probing vs the reference protocol ({s['date']})",
            f"machine: {s['machine']}",
            f"model: {s['model']}; part {s['part']}; data: {s['data']}",
            f"rotation pair MLP, {s['epochs']} epochs, medians over {s['repeats']} repeats:",
            f"  reference (backbone every epoch): {ref_total:8.2f} s "
            f"({ref_epoch:.3f} s/epoch + {ref_val:.2f} s val)",
            f"  ours (extraction + probe):        {ours_total:8.2f} s "
            f"({extraction:.2f} s extraction + {our_epoch:.4f} s/epoch "
            f"+ {our_fixed - extraction:.2f} s val)",
            f"  ratio at {s['epochs']} epochs: {s['ratio']:.1f}x",
            f"  projected at the protocol's {e} epochs: {e * ref_epoch + ref_val:.0f} s vs "
            f"{our_fixed + e * our_epoch:.1f} s = {projected:.1f}x",
            f"  asymptotic (epochs -> inf, reference epoch / our epoch): "
            f"{s['asymptotic_ratio']:.0f}x",
            f"  r2_global: reference {s['r2_global']['reference']:.4f}, "
            f"ours {s['r2_global']['ours']:.4f}; r2_sklearn: reference "
            f"{s['r2_sklearn']['reference']:.4f}, ours {s['r2_sklearn']['ours']:.4f}",
        ]
    )
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cached_probing_cpu.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "cached_probing_cpu.txt").write_text(report + "\n")


if __name__ == "__main__":
    main()
