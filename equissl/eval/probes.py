"""Probes trained on cached frozen features (DESIGN §5.2).

Protocols follow the SIE evaluation scripts: each training epoch visits every object once,
with one random view (classification: ``eval_classification.py``) or one random pair of
distinct views (pair regression: ``eval_angle_prediction.py``); Adam, batch 256.
Validation uses every view (classification) or a fixed, seeded set of pairs per object
(regression), so repeated evaluations of one checkpoint agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from equissl.eval.features import FeatureSet
from equissl.eval.metrics import balanced_top1, r2_global, r2_sklearn, top1

PairTarget = Callable[[Tensor, Tensor], Tensor]


@dataclass
class ProbeResult:
    """Metrics of one probe and its validation predictions (for plots)."""

    metrics: dict[str, float]
    pred: Tensor
    target: Tensor


def pair_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    """The SIE ``--deep-end`` head: ``in -> hidden -> hidden -> out`` with ReLUs."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, out_dim),
    )


def _fit(
    model: nn.Module,
    sample_epoch: Callable[[torch.Generator], tuple[Tensor, Tensor]],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    cfg: dict[str, Any],
    device: torch.device,
    desc: str,
    progress: bool,
) -> nn.Module:
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]),
                           weight_decay=float(cfg["weight_decay"]))
    bs = int(cfg["batch_size"])
    for _ in tqdm(range(int(cfg["epochs"])), desc=desc, unit="ep", disable=not progress,
                  leave=False):
        x, y = sample_epoch(gen)
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), bs):
            idx = order[start:start + bs]
            loss = loss_fn(model(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, device: torch.device, bs: int = 4096) -> Tensor:
    return torch.cat([model(x[i:i + bs].to(device)).cpu() for i in range(0, len(x), bs)])


def classification_probe(
    train: FeatureSet, val: FeatureSet, part: slice, num_classes: int, cfg: dict[str, Any],
    device: torch.device, progress: bool = True,
) -> ProbeResult:
    """Linear classifier on ``features[..., part]``: ``top1`` and ``balanced_top1`` on val."""
    xtr = train.features[..., part]
    n, v, d = xtr.shape

    def sample_epoch(gen: torch.Generator) -> tuple[Tensor, Tensor]:
        views = torch.randint(v, (n,), generator=gen)
        return xtr[torch.arange(n), views], train.labels

    model = _fit(nn.Linear(d, num_classes), sample_epoch, F.cross_entropy, cfg, device,
                 "probe classification", progress)
    xval = val.features[..., part].reshape(-1, d)
    yval = val.labels.repeat_interleave(val.features.shape[1])
    logits = _predict(model, xval, device)
    return ProbeResult({"top1": top1(logits, yval), "balanced_top1": balanced_top1(logits, yval)},
                       logits.argmax(-1), yval)


def fixed_pairs(num_objects: int, num_views: int, per_object: int, seed: int) -> Tensor:
    """``[num_objects * per_object, 3]`` (object, view a, view b) with a ≠ b, seeded."""
    gen = torch.Generator().manual_seed(seed)
    obj = torch.arange(num_objects).repeat_interleave(per_object)
    a, b = _distinct_views(len(obj), num_views, gen)
    return torch.stack((obj, a, b), dim=1)


def _distinct_views(count: int, num_views: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    a = torch.randint(num_views, (count,), generator=gen)
    b = (a + torch.randint(1, num_views, (count,), generator=gen)) % num_views
    return a, b


def pair_regression_probe(
    train: FeatureSet, val: FeatureSet, part: slice, target: PairTarget, cfg: dict[str, Any],
    device: torch.device, desc: str = "probe pair", progress: bool = True,
) -> ProbeResult:
    """MLP on ``[r_a ‖ r_b]`` regressing ``target(latents_a, latents_b)``; R² both ways."""
    xtr, ltr = train.features[..., part], train.latents
    n, v, d = xtr.shape
    if v < 2:
        raise ValueError("pair probes need at least two views per object")
    out_dim = target(ltr[:1, 0], ltr[:1, 1]).shape[-1]

    def sample_epoch(gen: torch.Generator) -> tuple[Tensor, Tensor]:
        a, b = _distinct_views(n, v, gen)
        rows = torch.arange(n)
        x = torch.cat((xtr[rows, a], xtr[rows, b]), dim=1)
        return x, target(ltr[rows, a], ltr[rows, b])

    model = _fit(pair_mlp(2 * d, int(cfg["hidden_dim"]), out_dim), sample_epoch, F.mse_loss,
                 cfg, device, desc, progress)
    pairs = fixed_pairs(len(val.features), val.features.shape[1],
                        int(cfg["val_pairs_per_object"]), int(cfg["seed"]) + 1)
    o, a, b = pairs.unbind(1)
    xval = torch.cat((val.features[o, a][..., part], val.features[o, b][..., part]), dim=1)
    yval = target(val.latents[o, a], val.latents[o, b])
    pred = _predict(model, xval, device)
    metrics = {
        "r2_global": r2_global(pred, yval),
        "r2_sklearn": r2_sklearn(pred, yval),
        "mse": float(F.mse_loss(pred, yval)),
    }
    return ProbeResult(metrics, pred, yval)
