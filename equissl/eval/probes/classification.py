"""Linear classification on frozen features (SIE ``eval_classification.py``): each epoch
visits every object once with one random view; validation scores every view. Beside
``top1`` and ``balanced_top1``, their floors on the same validation views: ``chance_top1``,
``majority_top1`` and ``majority_balanced_top1`` (always the most frequent training class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equissl.config import ProbeConfig
from equissl.eval.metrics import balanced_top1, classification_floors, top1
from equissl.eval.probes.base import (
    CLASSIFICATION_FLOORS,
    EvalContext,
    Probe,
    ProbeResult,
    fit,
    predict,
    seeded,
)
from equissl.eval.probes.protocol import SIE_TRAIN_MODE, Reference, trained_head_fields
from equissl.registries import PROBES


@dataclass
class ClassificationProbeConfig(ProbeConfig):
    """SIE protocol: Adam 1e-3, wd 0, batch 256, 300 epochs, constant rate."""

    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256


def classification_probe(
    train_x: Tensor,
    train_labels: Tensor,
    val_x: Tensor,
    val_labels: Tensor,
    num_classes: int,
    cfg: dict[str, Any],
    device: torch.device,
    progress: bool = True,
) -> ProbeResult:
    """Linear classifier on features ``[N, V, D]``: ``top1`` and ``balanced_top1`` on val,
    with the chance and majority-class floors."""
    n, v, d = train_x.shape

    def sample_epoch(gen: torch.Generator) -> tuple[Tensor, Tensor]:
        views = torch.randint(v, (n,), generator=gen)
        return train_x[torch.arange(n), views], train_labels

    with seeded(int(cfg["seed"])):
        head = nn.Linear(d, num_classes)
    model = fit(head, sample_epoch, F.cross_entropy, cfg, device, "probe classification", progress)
    xval = val_x.reshape(-1, d)
    yval = val_labels.repeat_interleave(val_x.shape[1])
    logits = predict(model, xval, device)
    return ProbeResult(
        {
            "top1": top1(logits, yval),
            "balanced_top1": balanced_top1(logits, yval),
            **classification_floors(train_labels, yval, num_classes),
        },
        logits.argmax(-1),
        yval,
        floors=dict(CLASSIFICATION_FLOORS),
    )


def labelled(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The objects of ``x [N, V, D]`` with a known label (``>= 0``). When every label is
    known (3DIEBench), ``x`` itself: the cached part stays memory-mapped and each epoch
    reads one view per object, instead of a copy of all ``N × V`` rows in RAM."""
    known = labels >= 0
    if bool(known.all()):
        return x, labels
    rows = known.nonzero().squeeze(1)
    return x[rows], labels[rows]


@PROBES.register("classification", config=ClassificationProbeConfig)
class ClassificationProbe(Probe):
    """Linear probe on the class label (top-1 and class-balanced top-1)."""

    on_sequences = True  # e.g. seq-JEPA's aggregate over M views

    def reference(self) -> Reference:
        return Reference(
            "SIE (Garrido, Najman, LeCun, ICML 2023), github.com/facebookresearch/SIE "
            "eval_classification.py",
            {"head": "linear", "optimizer": "Adam", "lr": 1e-3, "weight_decay": 0.0,
             "epochs": 300, "batch_size": 256},
            (
                SIE_TRAIN_MODE,
                "test: every cached view of each test object is scored; SIE scores one random "
                "view per object per epoch (unseeded), a noisier estimate of the same mean",
            ),
        )  # fmt: skip

    def card_fields(self, ctx: EvalContext) -> dict[str, Any]:
        return {
            **trained_head_fields(self.cfg, "linear"),
            "samples": "one random view per training object per epoch; parts of sequence "
            "methods also as aggregates of M views",
        }

    def run_deviations(self, ctx: EvalContext) -> tuple[str, ...]:
        if not ctx.train.sequences:
            return ()
        return (
            "aggregate parts (<part>@M<m>): one fixed sequence per object, probed offline; "
            "seq-JEPA's published aggregate top-1 comes from its online linear probe, trained "
            "during pretraining on fresh random sequences every step",
        )

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if ctx.num_classes <= 1 or not bool((ctx.train.labels >= 0).any()):
            return "the data carry no class labels"
        return None

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        return classification_probe(
            *labelled(ctx.train.part(part), ctx.train.labels),
            *labelled(ctx.val.part(part), ctx.val.labels),
            ctx.num_classes,
            self.cfg,
            ctx.device,
            ctx.progress,
        )
