"""Optimisers, learning-rate scaling and schedules of ``method.optim``
(:class:`equissl.config.OptimConfig`), used by
:meth:`equissl.ssl.base.SSLMethod.configure_optimizers`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

#: norm layers whose parameters ``exclude_bias_norm`` keeps out of weight decay
NORM_LAYERS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
)


def param_groups(module: nn.Module, exclude_bias_norm: bool) -> list[dict[str, Any]]:
    """The trainable parameters of ``module`` as optimizer groups; with ``exclude_bias_norm``
    a second group without weight decay holds biases, norm-layer parameters and every other
    tensor of rank ≤ 1.

    By module type and tensor rank, not by parameter name: name matching misses some
    BatchNorms, a known flaw of the Lie-symmetry reference code.
    """
    if not exclude_bias_norm:
        return [{"params": [p for p in module.parameters() if p.requires_grad]}]
    decay, no_decay = [], []
    for sub in module.modules():
        for p in sub.parameters(recurse=False):
            if not p.requires_grad:
                continue
            (no_decay if isinstance(sub, NORM_LAYERS) or p.ndim <= 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def scaled_lr(optim: dict[str, Any], global_batch: int) -> float:
    """``optim.lr`` after ``optim.lr_scaling``: ``none`` as given, ``linear`` times
    ``global_batch / optim.base_batch_size`` (the explicit scaling rule; never implicit)."""
    if optim["lr_scaling"] == "none":
        return float(optim["lr"])
    if optim["lr_scaling"] == "linear":
        return float(optim["lr"]) * global_batch / float(optim["base_batch_size"])
    raise ValueError(f"unknown optim.lr_scaling {optim['lr_scaling']!r}; use none or linear")


#: ``method.optim.name`` -> torch optimizer class and the extra settings it takes
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], tuple[str, ...]]] = {
    "adam": (torch.optim.Adam, ()),
    "adamw": (torch.optim.AdamW, ()),
    "sgd": (torch.optim.SGD, ("momentum",)),
}


def build_optimizer(
    optim: dict[str, Any], groups: list[dict[str, Any]], lr: float, kernel: dict[str, Any]
) -> torch.optim.Optimizer:
    """The optimizer ``optim.name`` over ``groups`` at ``lr`` with ``optim.weight_decay``;
    ``kernel`` picks torch's foreach / fused implementation (:mod:`equissl.speed`)."""
    if optim["name"] not in OPTIMIZERS:
        raise ValueError(f"unknown optim.name {optim['name']!r}; choose from {list(OPTIMIZERS)}")
    cls, extra = OPTIMIZERS[optim["name"]]
    options = {k: float(optim[k]) for k in extra}
    return cls(groups, lr=lr, weight_decay=float(optim["weight_decay"]), **options, **kernel)


def warmup_factor(step: int, warmup: int, start: float) -> float:
    """LR factor of warm-up step ``step < warmup``: linear from ``start`` to 1, reaching 1 on
    the last warm-up step."""
    return start + (1.0 - start) * (step + 1) / warmup


def warmup_cosine(total: int, warmup: int, start: float = 0.0, floor: float = 0.0) -> Any:
    """LR factor of optimizer step ``s``: linear warm-up over ``warmup`` steps (from
    ``start``), then a cosine from 1 to ``floor`` over the remaining ``total − warmup``."""

    def factor(step: int) -> float:
        if step < warmup:
            return warmup_factor(step, warmup, start)
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def warmup_constant(total: int, warmup: int, start: float = 0.0, floor: float = 0.0) -> Any:
    """LR factor of optimizer step ``s``: linear warm-up over ``warmup`` steps (from
    ``start``), then 1 (``total`` and ``floor`` unused; the signature of every schedule)."""

    def factor(step: int) -> float:
        return warmup_factor(step, warmup, start) if step < warmup else 1.0

    return factor


#: ``method.optim.scheduler`` -> factory ``(total, warmup, start=, floor=) -> step -> factor``
SCHEDULES = {"warmup_cosine": warmup_cosine, "warmup_constant": warmup_constant}


def build_schedule(
    optim: dict[str, Any], optimizer: torch.optim.Optimizer, lr: float, total: int, warmup: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step schedule ``optim.scheduler`` over ``total`` optimizer steps with
    ``warmup`` warm-up steps; ``warmup_start_lr`` and ``min_lr`` are absolute rates."""
    if optim["scheduler"] not in SCHEDULES:
        raise ValueError(
            f"unknown optim.scheduler {optim['scheduler']!r}; use none or one of {list(SCHEDULES)}"
        )
    start = float(optim.get("warmup_start_lr", 0.0)) / lr
    floor = float(optim.get("min_lr", 0.0)) / lr
    factor = SCHEDULES[optim["scheduler"]](total, warmup, start=start, floor=floor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
