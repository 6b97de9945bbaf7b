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

from equissl.config import ProbeConfig, at_least
from equissl.eval.metrics import balanced_top1, classes, classification_floors, top1
from equissl.eval.probes.backbone_mode import TrainModeBackbone
from equissl.eval.probes.base import (
    CLASSIFICATION_FLOORS,
    EvalContext,
    Probe,
    ProbeResult,
    fit,
    labelled,
    labelled_rows,
    predict,
    seeded,
    sequence_length,
    view_features,
)
from equissl.eval.probes.protocol import TRAIN_MODE, Reference, trained_head_fields
from equissl.eval.probes.sequences import aggregate, random_orders
from equissl.registries import PROBES


@dataclass
class ClassificationProbeConfig(ProbeConfig):
    """SIE protocol: Adam 1e-3, wd 0, batch 256, 300 epochs, constant rate."""

    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    # Aggregate parts (<part>@M<m>) of methods that aggregate cached encodings (seq-JEPA):
    # fresh = a new random sequence of M views per object every epoch, as the reference's
    # probe sees them, tested on val_sequences_per_object seeded sequences per object;
    # fixed = the cached sequence of each object's first M evaluation views, train and test.
    sequences: str = "fresh"
    val_sequences_per_object: int = at_least(1, 5)


def classification_probe(
    train_x: Tensor,
    train_labels: Tensor,
    val_x: Tensor,
    val_labels: Tensor,
    num_classes: int,
    cfg: dict[str, Any],
    device: torch.device,
    progress: bool = True,
    backbone: TrainModeBackbone | None = None,
    rows: tuple[Tensor, Tensor] | None = None,
) -> ProbeResult:
    """Linear classifier on features ``[N, V, D]``: ``top1`` and ``balanced_top1`` on val,
    with the chance and majority-class floors. With ``backbone`` (``eval.backbone_mode:
    reference``) each training batch reruns it in ``train()`` mode on the drawn views and
    the val features are recomputed after training; the cached ``train_x`` and ``val_x``
    then give the shapes only, and ``rows`` names the objects of each split they hold
    (:func:`labelled_rows`; default all)."""
    n, v, d = train_x.shape
    objects = torch.arange(n) if rows is None else rows[0]

    def sample_epoch(gen: torch.Generator) -> tuple[Tensor, Tensor]:
        views = torch.randint(v, (n,), generator=gen)
        return objects * v + views, train_labels  # flat view indices, featurised per batch

    with seeded(int(cfg["seed"])):
        head = nn.Linear(d, num_classes)
    inputs = view_features(train_x) if backbone is None else backbone.features
    model = fit(
        head, sample_epoch, F.cross_entropy, cfg, device, "probe classification", progress, inputs
    )
    if backbone is not None:
        val_x = backbone.test_features()
        val_x = val_x if rows is None else val_x[rows[1]]
    xval = val_x.reshape(-1, d)
    yval = val_labels.repeat_interleave(val_x.shape[1])
    return scored(model, xval, yval, train_labels, num_classes, device)


def scored(
    model: nn.Module,
    xval: Tensor,
    yval: Tensor,
    train_labels: Tensor,
    num_classes: int,
    device: torch.device,
) -> ProbeResult:
    """A trained classifier's ``top1`` and ``balanced_top1`` on ``xval [S, D]`` with labels
    ``yval [S]``, beside the chance and majority-class floors."""
    pred = predict(model, xval, device, keep=classes)  # [S] class ids, not [S, C] logits
    return ProbeResult(
        {
            "top1": top1(pred, yval),
            "balanced_top1": balanced_top1(pred, yval),
            **classification_floors(train_labels, yval, num_classes),
        },
        pred,
        yval,
        floors=dict(CLASSIFICATION_FLOORS),
    )


def fresh_sequence_probe(
    ctx: EvalContext, part: str, length: int, cfg: dict[str, Any]
) -> ProbeResult:
    """Linear classifier on the aggregate ``part`` of ``length``-view sequences: each epoch
    one fresh random sequence per labelled training object, aggregated from the cached
    encodings (:mod:`.sequences`); tested on ``val_sequences_per_object`` seeded random
    sequences per labelled test object. Where the method's online classifier read this part
    during pretraining (seq-JEPA's, ``online_probe_input: aggregate``), ``online_top1`` is
    that classifier's top-1 on the same test sequences: the reference's reported number."""
    method = ctx.method
    enc = method.sequence_encoding_part

    def sequences_of(fs: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        rows = labelled_rows(fs.labels)
        return fs.parts[enc], fs.latents, rows, fs.labels[rows]

    train_z, train_lat, train_rows, train_labels = sequences_of(ctx.train)
    val_z, val_lat, val_rows, val_labels = sequences_of(ctx.val)

    def sample_epoch(gen: torch.Generator) -> tuple[Tensor, Tensor]:
        orders = random_orders(len(train_rows), train_z.shape[1], length, gen)
        x = aggregate(method, train_z, train_lat, train_rows, orders, part, ctx.device)
        return x, train_labels

    per = int(cfg["val_sequences_per_object"])
    gen = torch.Generator().manual_seed(int(cfg["seed"]) + 1)
    objects = val_rows.repeat_interleave(per)
    orders = random_orders(len(objects), val_z.shape[1], length, gen)
    xval = aggregate(method, val_z, val_lat, objects, orders, part, ctx.device)
    with seeded(int(cfg["seed"])):
        head = nn.Linear(xval.shape[1], ctx.num_classes)
    model = fit(head, sample_epoch, F.cross_entropy, cfg, ctx.device, "probe classification", False)
    yval = val_labels.repeat_interleave(per)
    res = scored(model, xval, yval, train_labels, ctx.num_classes, ctx.device)
    if getattr(method, "online_probe_part", None) == part:
        # the classifier trained online during pretraining, as the reference reports it
        online = predict(method.online_logits, xval, ctx.device, keep=classes)
        res.metrics["online_top1"] = top1(online, yval)
    return res


#: ``eval.probes.classification.sequences`` values
SEQUENCE_MODES = ("fresh", "fixed")


@PROBES.register("classification", config=ClassificationProbeConfig)
class ClassificationProbe(Probe):
    """Linear probe on the class label (top-1 and class-balanced top-1)."""

    on_sequences = True  # e.g. seq-JEPA's aggregate over M views

    def reference(self) -> Reference:
        return Reference(
            "SIE (Garrido, Najman, LeCun, ICML 2023), github.com/facebookresearch/SIE "
            "eval_classification.py",
            {"head": "linear", "optimizer": "Adam", "lr": 1e-3, "weight_decay": 0.0,
             "epochs": 300, "batch_size": 256, "backbone": TRAIN_MODE},
            (
                "test: every cached view of each test object is scored; SIE scores one random "
                "view per object per epoch (unseeded), a noisier estimate of the same mean",
            ),
        )  # fmt: skip

    def __init__(self, name: str, cfg: dict[str, Any]) -> None:
        super().__init__(name, cfg)
        if cfg.get("sequences", "fresh") not in SEQUENCE_MODES:
            raise ValueError(
                f"eval.probes.{name}.sequences={cfg['sequences']!r}: choose one of "
                + ", ".join(SEQUENCE_MODES)
            )

    def fresh_sequences(self, ctx: EvalContext) -> bool:
        """Whether aggregate parts draw fresh sequences (``sequences: fresh`` and a method
        that aggregates cached encodings)."""
        return (
            self.cfg.get("sequences", "fresh") == "fresh"
            and getattr(ctx.method, "sequence_encoding_part", None) is not None
        )

    def card_fields(self, ctx: EvalContext) -> dict[str, Any]:
        if not ctx.train.sequences:
            aggregates = ""
        elif self.fresh_sequences(ctx):
            aggregates = (
                "; aggregate parts: a fresh random sequence of M views per training object "
                f"per epoch, {int(self.cfg['val_sequences_per_object'])} seeded random "
                "sequences per test object"
            )
        else:
            aggregates = "; aggregate parts: each object's first M evaluation views, fixed"
        return {
            **trained_head_fields(self.cfg, "linear"),
            "samples": "one random view per training object per epoch" + aggregates,
        }

    def run_deviations(self, ctx: EvalContext) -> tuple[str, ...]:
        if not ctx.train.sequences:
            return ()
        if self.fresh_sequences(ctx):
            found: tuple[str, ...] = (
                "aggregate parts (<part>@M<m>): fresh sequences every epoch, probed offline "
                "on the final encoder; seq-JEPA's published aggregate top-1 comes from its "
                "online linear probe, trained during pretraining as the encoder changes",
            )
        else:
            found = (
                "aggregate parts (<part>@M<m>): one fixed sequence per object, probed offline; "
                "seq-JEPA's published aggregate top-1 comes from its online linear probe, "
                "trained during pretraining on fresh random sequences every step",
            )
        if self.follows_train_mode(ctx):
            found += ("aggregate parts read cached eval() features in every backbone mode",)
        return found

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if ctx.num_classes <= 1 or not bool((ctx.train.labels >= 0).any()):
            return "the data carry no class labels"
        return None

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        seq = sequence_length(part)
        if seq is not None and self.fresh_sequences(ctx):
            return fresh_sequence_probe(ctx, seq[0], seq[1], self.cfg)
        return classification_probe(
            *labelled(ctx.train.part(part), ctx.train.labels),
            *labelled(ctx.val.part(part), ctx.val.labels),
            ctx.num_classes,
            self.cfg,
            ctx.device,
            ctx.progress,
            self.train_mode_backbone(ctx, part),
            (labelled_rows(ctx.train.labels), labelled_rows(ctx.val.labels)),
        )
