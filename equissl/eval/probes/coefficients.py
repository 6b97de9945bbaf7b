"""Regression of a trajectory's invariant physical coefficients (Burgers ν, Navier–Stokes
buoyancy b) from the frozen representation of one window — the invariant task of Mialon et
al. (2023), with the released protocol (facebookresearch/SSLForPDEs ``navier_stokes.py``
``eval_coeff``): one Linear layer without bias followed by a sigmoid rescaled to the
target's range, Adam 7e-4, 30 epochs, batch 64, on the frozen encoder in ``eval()`` mode;
the MSE is taken in units of the head's range (:meth:`RangeSigmoidHead.loss`).

Data, as the reference: the head trains on the **labelled split**, trajectories held out of
pretraining (``data.labelled_split``; the reference's ``valid`` split), and is tested on the
val (test) split, both seen through **untransformed** windows (random start frames, no
symmetry applied; the reference's ``steps=0`` crops). ``labels: pretraining`` and
``views: transformed`` are the named alternatives (the pretraining split's labels; the
pretraining augmentation's windows, the shared feature cache). Each epoch visits every
labelled trajectory once with one random evaluation view; validation scores every view.
Metrics, as the paper reports them (``results.json`` keys ``<part>/coefficients/…``):

* ``mse`` — mean squared error (the paper's Navier–Stokes figure);
* ``nmse`` — mean over views of ``‖ŷ − y‖² / ‖y‖²`` over the coefficient vector (KdV/KS);
* ``rel_error`` — mean of ``|ŷ − y| / |y|`` (Burgers; × 100 for the paper's %).

Beside them, on the same labels and budget: ``mean_*``, predicting the probe-train mean
(closed form: for b ~ U(0.2, 0.5) the MSE is 0.3²/12 = 0.0075), and with ``baselines``
``supervised_*``, the checkpoint's backbone architecture trained from scratch with the same
head on the same views (the released code's ``ResNetBaseline``). Both are computed once
per evaluation and repeated under every part. With ``random_encoder``, ``random_*``: the
same head on a freshly initialised encoder of the checkpoint's architecture (the
evaluation stage's ``untrained`` baseline; the reference's epoch-0 row). Data without
coefficients (images; KdV and KS as generated here) skip the probe.

``labelled_fraction`` < 1 keeps the labels of only that (seeded) share of the head's
training trajectories, for every row alike (fewer labels than the reference's budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from equissl.config import ProbeConfig
from equissl.datasets.base import ViewDataset, build_dataset
from equissl.eval.features import FeatureSet
from equissl.eval.probes.base import (
    EvalContext,
    Floor,
    Probe,
    ProbeResult,
    fit,
    floors_present,
    predict,
    seeded,
)
from equissl.eval.probes.protocol import Reference, trained_head_fields
from equissl.models.backbones import build_backbone
from equissl.progress import progress_bar
from equissl.registries import PROBES


@dataclass
class CoefficientProbeConfig(ProbeConfig):
    """Released protocol (SSLForPDEs ``eval_coeff``): ``RegressionHead(512, "1")``,
    ``--eval-lr 0.0007``, ``for _ in range(30)``, ``--batch-size 64``."""

    epochs: int = 30
    lr: float = 7e-4
    weight_decay: float = 0.0
    batch_size: int = 64
    # Head range [lo − m·span, hi + m·span] around the probe-train labels' [lo, hi]:
    # m = 1/3 turns b ∈ [0.2, 0.5] into the released RangeSigmoid's [0.1, 0.6].
    range_margin: float = 1.0 / 3.0
    ranges: dict[str, Any] = field(default_factory=dict)  # explicit {coeff: [lo, hi]}
    baselines: bool = True  # also train the supervised from-scratch backbone (costly)
    labelled_fraction: float = 1.0  # share of the head's training trajectories labelled
    num_workers: int = 0  # data loading of the supervised baseline
    # held_out: the data's labelled split, never pretrained on (the reference's valid split);
    # pretraining: the pretraining split (data without a labelled split use it, and say so)
    labels: str = "held_out"
    views: str = "untransformed"  # untransformed (the reference's crops) | transformed
    random_encoder: bool = True  # also the head on a fresh encoder (random_* metrics)


LABEL_SOURCES = ("held_out", "pretraining")
VIEW_KINDS = ("untransformed", "transformed")


class RangeSigmoidHead(nn.Module):
    """``lo + (hi − lo) · sigmoid(W x)``: ``x [B, D]`` -> ``[B, K]``, always inside
    ``[lo, hi]`` per output (the released ``Linear(bias=False)`` + ``RangeSigmoid``)."""

    def __init__(self, in_dim: int, lo: Tensor, hi: Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, len(lo), bias=False)
        self.register_buffer("lo", lo.float().clone())
        self.register_buffer("hi", hi.float().clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.lo + (self.hi - self.lo) * torch.sigmoid(self.linear(x))

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """MSE measured in units of the head's range (``[B, K]`` each): the released MSE
        divided by ``(hi − lo)²`` per output. Adam is blind to that constant except through
        its ε, which a target as small as Burgers ν (1e-3 … 1e-2: losses ~1e-5, gradients
        deep in a backbone below ε = 1e-8) would otherwise make stall."""
        span = self.hi - self.lo
        return F.mse_loss(pred / span, target / span)


def target_range(
    labels: Tensor, names: tuple[str, ...], margin: float, ranges: dict[str, Any]
) -> tuple[Tensor, Tensor]:
    """``(lo [K], hi [K])`` of the head: ``ranges[name]`` when given, else the labels'
    ``[N, K]`` range widened by ``margin`` × its span on both sides; a coefficient whose
    labels are all non-negative (a viscosity, a buoyancy) is not widened below 0, so the
    head cannot predict a negative one."""
    lo, hi = labels.min(0).values.double(), labels.max(0).values.double()
    span = (hi - lo).clamp_min(1e-6 * hi.abs().clamp_min(1.0))
    nonnegative = lo >= 0
    lo, hi = lo - margin * span, hi + margin * span
    lo = torch.where(nonnegative, lo.clamp_min(0.0), lo)
    for k, name in enumerate(names):
        if name in ranges:
            lo[k], hi[k] = (float(v) for v in ranges[name])
    return lo.float(), hi.float()


def coefficient_metrics(pred: Tensor, target: Tensor, prefix: str = "") -> dict[str, float]:
    """``mse``, ``nmse`` and ``rel_error`` of ``pred`` against ``target`` (``[N, K]``)."""
    pred, target = pred.double(), target.double()
    err = pred - target
    nmse = err.pow(2).sum(1) / target.pow(2).sum(1).clamp_min(1e-24)
    rel = err.abs() / target.abs().clamp_min(1e-12)
    return {
        f"{prefix}mse": float(err.pow(2).mean()),
        f"{prefix}nmse": float(nmse.mean()),
        f"{prefix}rel_error": float(rel.mean()),
    }


def labelled_subset(num: int, fraction: float, seed: int) -> Tensor:
    """Sorted indices ``[M]`` of the ``M = max(2, round(fraction · num))`` labelled objects
    out of ``num``, drawn by a generator seeded with ``seed``; all of them for fraction ≥ 1."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"labelled_fraction={fraction} must lie in (0, 1]")
    if fraction >= 1.0:
        return torch.arange(num)
    keep = min(num, max(2, round(fraction * num)))
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(num, generator=gen)[:keep].sort().values


#: the floors this probe declares: the probe-train mean's scores (``supervised_*`` is a
#: trained model, an ordinary column)
COEFFICIENT_FLOORS = {f"mean_{m}": Floor(m) for m in ("mse", "nmse", "rel_error")}


def mean_baseline(train_y: Tensor, val_y: Tensor) -> dict[str, float]:
    """Predict the probe-train mean for every validation label (``[N, K]``)."""
    return coefficient_metrics(train_y.mean(0).expand_as(val_y), val_y, "mean_")


def linear_coefficient_probe(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    lo: Tensor,
    hi: Tensor,
    cfg: dict[str, Any],
    device: torch.device,
    progress: bool = True,
) -> ProbeResult:
    """The range-sigmoid linear head on features ``[N, V, D]`` regressing ``[N, K]``
    labels; validation on every view."""
    n, v, d = train_x.shape

    def sample_epoch(gen: torch.Generator) -> tuple[Tensor, Tensor]:
        views = torch.randint(v, (n,), generator=gen)
        return train_x[torch.arange(n), views], train_y

    with seeded(int(cfg["seed"])):
        head = RangeSigmoidHead(d, lo, hi)
    model = fit(head, sample_epoch, head.loss, cfg, device, "probe coefficients", progress)
    yval = val_y.repeat_interleave(val_x.shape[1], dim=0)
    pred = predict(model, val_x.reshape(-1, d), device)
    return ProbeResult(coefficient_metrics(pred, yval), pred, yval)


class SupervisedRegressor(nn.Module):
    """A backbone from scratch with the probe's head: ``views [B, *view_shape]`` -> ``[B, K]``."""

    def __init__(self, backbone_cfg: dict[str, Any], view_shape: tuple[int, ...], lo, hi) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone_cfg, view_shape)
        self.head = RangeSigmoidHead(self.backbone.num_features, lo, hi)

    def forward(self, views: Tensor) -> Tensor:
        return self.head(self.backbone(views))


def supervised_baseline(
    train_views: Dataset,
    val_views: Dataset,
    views_per_object: int,
    backbone_cfg: dict[str, Any],
    view_shape: tuple[int, ...],
    lo: Tensor,
    hi: Tensor,
    cfg: dict[str, Any],
    device: torch.device,
    progress: bool = True,
    objects: Tensor | None = None,
) -> dict[str, float]:
    """Train a backbone + head from scratch on one-view items (``views [1, ...]``,
    object-major, ``views_per_object`` each) of the labelled ``objects`` (``[M]`` indices;
    all by default) with the probe's optimiser and budget: each epoch one random view per
    object; validation on every view. ``supervised_*`` metrics."""
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    with seeded(int(cfg["seed"])):
        model = SupervisedRegressor(backbone_cfg, view_shape, lo, hi).to(device)
    opt = torch.optim.Adam(
        model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"])
    )
    if objects is None:
        objects = torch.arange(len(train_views) // views_per_object)
    n = len(objects)
    bs, workers = int(cfg["batch_size"]), int(cfg["num_workers"])
    model.train()
    for _ in progress_bar(
        range(int(cfg["epochs"])), desc="supervised baseline", disable=not progress
    ):
        pick = torch.randint(views_per_object, (n,), generator=gen)
        order = torch.randperm(n, generator=gen)
        items = (objects[order] * views_per_object + pick[order]).tolist()
        for batch in DataLoader(Subset(train_views, items), batch_size=bs, num_workers=workers):
            if len(batch["views"]) < 2:  # BatchNorm cannot train on a lone remainder
                continue
            pred = model(batch["views"][:, 0].to(device))
            loss = model.head.loss(pred, batch["coeffs"].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    preds, targets = [], []
    with torch.no_grad():
        for batch in DataLoader(val_views, batch_size=bs, num_workers=workers):
            preds.append(model(batch["views"][:, 0].to(device)).cpu())
            targets.append(batch["coeffs"])
    return coefficient_metrics(torch.cat(preds), torch.cat(targets), "supervised_")


@dataclass
class HeadData:
    """What the heads of one evaluation train and test on: features ``train`` / ``test``
    (the checkpoint's), ``random_*`` (a fresh encoder's, or ``None``), the datasets behind
    them (the supervised baseline trains on views) and the deviations the data forced."""

    train: FeatureSet
    test: FeatureSet
    train_ds: ViewDataset
    test_ds: ViewDataset
    random_train: FeatureSet | None
    random_test: FeatureSet | None
    forced: tuple[str, ...]


@PROBES.register("coefficients", config=CoefficientProbeConfig)
class CoefficientProbe(Probe):
    """Invariant coefficient regression with its predict-the-mean, supervised and
    random-encoder rows."""

    on_sequences = True  # an aggregate over several windows sees the same trajectory

    def reference(self) -> Reference:
        return Reference(
            "Mialon et al., Self-supervised learning with Lie symmetries for PDEs (NeurIPS "
            "2023), github.com/facebookresearch/SSLForPDEs navier_stokes.py eval_coeff",
            {"head": "linear without bias + sigmoid to the target range", "optimizer": "Adam",
             "lr": 7e-4, "weight_decay": 0.0, "epochs": 30, "batch_size": 64,
             "labels": "held_out", "views": "untransformed", "random_encoder": True,
             "labelled_fraction": 1.0},
        )  # fmt: skip

    def card_fields(self, ctx: EvalContext) -> dict[str, Any]:
        data = self.head_data(ctx)
        return {
            **trained_head_fields(self.cfg, "linear without bias + sigmoid to the target range"),
            "labels": str(self.cfg["labels"]),
            "views": str(self.cfg["views"]),
            "random_encoder": bool(self.cfg["random_encoder"]),
            "labelled_fraction": float(self.cfg["labelled_fraction"]),
            "train_split": data.train_ds.split_name,
            "train_objects": data.train.num_objects,
            "test_split": data.test_ds.split_name,
            "test_objects": data.test.num_objects,
            "samples": f"one random {self.cfg['views']} evaluation window per training "
            f"trajectory per epoch; every cached window of each test trajectory",
        }

    def run_deviations(self, ctx: EvalContext) -> tuple[str, ...]:
        return self.head_data(ctx).forced

    def __init__(self, name: str, cfg: dict[str, Any]) -> None:
        super().__init__(name, cfg)
        for key, allowed in (("labels", LABEL_SOURCES), ("views", VIEW_KINDS)):
            if cfg[key] not in allowed:
                raise ValueError(
                    f"eval.probes.{name}.{key}={cfg[key]!r}: use one of {', '.join(allowed)}"
                )
        self._baselines: dict[str, float] | None = None
        self._data: tuple[Any, HeadData] | None = None

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if ctx.train.coeffs.ndim != 2 or ctx.train.coeffs.shape[1] == 0:
            return "the data carry no coefficients to regress"
        return None

    def head_data(self, ctx: EvalContext) -> HeadData:
        """The splits, views and features of this evaluation's heads (built once)."""
        if self._data is None or self._data[0] is not ctx.method:  # baselines: other models
            self._data = (ctx.method, self._build_head_data(ctx))
        return self._data[1]

    def _build_head_data(self, ctx: EvalContext) -> HeadData:
        forced: list[str] = []
        train_ds, test_ds = ctx.datasets["train"], ctx.datasets["val"]
        if ctx.features_of is None:  # a context without the stage's extraction (tests)
            forced.append("features: the shared cache (no extraction for other splits/views)")
            return HeadData(ctx.train, ctx.val, train_ds, test_ds, None, None, tuple(forced))
        if self.cfg["labels"] == "held_out":
            if ctx.data.get("labelled_split"):
                train_ds = build_dataset(ctx.data, "labelled", 1)
            else:
                forced.append(
                    "labels: the data have no labelled split held out of pretraining "
                    "(data.labelled_split is off, e.g. a run from before it existed): the "
                    "heads train on the pretraining split, which makes the supervised row "
                    "stronger than the reference's"
                )
        if self.cfg["views"] == "untransformed":
            train_ds, test_ds = train_ds.untransformed(), test_ds.untransformed()

        def features(ds: ViewDataset, role: str, baseline: str = "") -> FeatureSet:
            if not baseline and ds is ctx.datasets[role]:
                return ctx.train if role == "train" else ctx.val  # the shared cache
            return ctx.features_of(ds, baseline)

        random = (None, None)
        if self.cfg["random_encoder"]:
            random = (
                features(train_ds, "train", "untrained"),
                features(test_ds, "val", "untrained"),
            )
        return HeadData(
            features(train_ds, "train"),
            features(test_ds, "val"),
            train_ds,
            test_ds,
            *random,
            tuple(forced),
        )

    def labelled(self, ctx: EvalContext) -> Tensor:
        """Indices ``[M]`` of the heads' training trajectories whose labels are used."""
        fraction = float(self.cfg["labelled_fraction"])
        n = len(self.head_data(ctx).train.coeffs)
        return labelled_subset(n, fraction, int(self.cfg["seed"]))

    def head_range(self, ctx: EvalContext) -> tuple[Tensor, Tensor]:
        names = tuple(ctx.meta["spec"].get("coeff_names") or ())
        labels = self.head_data(ctx).train.coeffs[self.labelled(ctx)]
        return target_range(
            labels, names, float(self.cfg["range_margin"]), dict(self.cfg["ranges"])
        )

    def baselines(self, ctx: EvalContext) -> dict[str, float]:
        """The mean and supervised rows, computed on the first part and reused for the
        others."""
        if self._baselines is None:
            data, labelled = self.head_data(ctx), self.labelled(ctx)
            self._baselines = mean_baseline(data.train.coeffs[labelled], data.test.coeffs)
            self._baselines["labelled"] = float(len(labelled))
            if self.cfg["baselines"]:
                v = data.train.views_per_object
                seed = int(self.cfg["seed"])
                self._baselines.update(
                    supervised_baseline(
                        data.train_ds.evaluation_views(v, seed),
                        data.test_ds.evaluation_views(data.test.views_per_object, seed + 1),
                        v,
                        ctx.meta["config"]["backbone"],
                        tuple(ctx.meta["spec"]["view_shape"]),
                        *self.head_range(ctx),
                        self.cfg,
                        ctx.device,
                        ctx.progress,
                        labelled,
                    )
                )
        return self._baselines

    def head(self, ctx: EvalContext, train: FeatureSet, test: FeatureSet, part: str) -> ProbeResult:
        labelled = self.labelled(ctx)
        return linear_coefficient_probe(
            train.part(part)[labelled],
            train.coeffs[labelled],
            test.part(part),
            test.coeffs,
            *self.head_range(ctx),
            self.cfg,
            ctx.device,
            ctx.progress,
        )

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        data = self.head_data(ctx)
        res = self.head(ctx, data.train, data.test, part)
        if data.random_train is not None and data.random_test is not None:
            rand = self.head(ctx, data.random_train, data.random_test, part).metrics
            res.metrics.update({f"random_{k}": v for k, v in rand.items()})
        res.metrics.update(self.baselines(ctx))
        res.floors = floors_present(res.metrics, COEFFICIENT_FLOORS)
        return res
