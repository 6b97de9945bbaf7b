"""The probe extension point (docs/extending.md, "A probe"): a registry of probes trained on
cached frozen features, and the pieces they share.

A probe is one module registering a :class:`Probe` subclass with its config schema
(``@PROBES.register("classification", config=ClassificationProbeConfig)``) plus one YAML
option in ``configs/probe/<name>.yaml`` (``# @package eval.probes.<name>``) holding its
protocol. The evaluation stage asks each configured probe :meth:`Probe.sequence_views`
(sequence lengths it needs in the feature cache), then :meth:`Probe.skip_reason` (a
skipped probe is recorded in ``results.json`` with the reason), runs it on each part of
:meth:`Probe.parts` (by default every named part of the representation) and finally lets
it :meth:`Probe.summarise` the parts' results (plots across parts). Everything random is
drawn from generators seeded by the probe's ``seed``: evaluating one checkpoint twice gives
identical metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from equissl.datasets.base import ViewDataset
from equissl.datasets.contract import ActionSpace
from equissl.eval.features import FeatureSet
from equissl.eval.probes.backbone_mode import TrainModeBackbone
from equissl.eval.probes.protocol import FROZEN_EVAL_MODE, TRAIN_MODE, Reference, protocol_card
from equissl.progress import progress_bar
from equissl.registries import PROBES as PROBES  # where plugins written for 0.1 import it

#: Report rows of floors: the predictors that ignore the representation (a constant, the
#: majority class) and chance.
CONSTANT_ROW = "constant / majority"
CHANCE_ROW = "chance"
FLOOR_ROW_ORDER = (CONSTANT_ROW, CHANCE_ROW)


@dataclass(frozen=True)
class Floor:
    """Declares a metric a floor: the score of a predictor that ignores the representation.

    Args:
        of: the metric of the same probe it bounds (its column in ``results.md``), e.g.
            ``"r2_global"`` for ``constant_r2_global``.
        row: the report row it is shown in (:data:`CONSTANT_ROW` or :data:`CHANCE_ROW`;
            any other name gets a row of its own).
    """

    of: str
    row: str = CONSTANT_ROW


#: the floors of :func:`equissl.eval.metrics.regression_metrics` (constant predictor)
REGRESSION_FLOORS = {f"constant_{m}": Floor(m) for m in ("r2_global", "r2_sklearn", "mse")}
#: the floors of :func:`equissl.eval.metrics.classification_floors`
CLASSIFICATION_FLOORS = {
    "chance_top1": Floor("top1", CHANCE_ROW),
    "majority_top1": Floor("top1"),
    "majority_balanced_top1": Floor("balanced_top1"),
}


@dataclass
class ProbeResult:
    """Metrics of one probe on one part, its validation predictions (for plots), the plots
    it wrote (``{name: file name in the evaluation directory}``) and which of its metrics
    are floors (``{metric: Floor}``, e.g. ``{"constant_r2_global": Floor("r2_global")}``).

    Only the metrics declared in ``floors`` go to the report's floor rows, whatever their
    names (a metric ``mean_norm`` not declared is an ordinary column); the evaluation stage
    records the declaration in ``results.json["floors"]``. Every key of ``floors`` must be
    a key of ``metrics``.
    """

    metrics: dict[str, float]
    pred: Tensor
    target: Tensor
    plots: dict[str, str] = field(default_factory=dict)
    floors: dict[str, Floor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.floors = {k: f if isinstance(f, Floor) else Floor(*f) for k, f in self.floors.items()}

    def declared_floors(self) -> dict[str, Floor]:
        """The declared floors present in :attr:`metrics` (``ValueError`` naming any other)."""
        missing = sorted(set(self.floors) - set(self.metrics))
        if missing:
            raise ValueError(f"floors {missing} are not among the metrics {sorted(self.metrics)}")
        return dict(self.floors)


def floors_present(metrics: dict[str, float], *declared: dict[str, Floor]) -> dict[str, Floor]:
    """The floors of the ``declared`` tables whose metric is in ``metrics`` (helpers such as
    :func:`~equissl.eval.metrics.regression_metrics` return all of theirs; a probe that
    drops one does not declare it)."""
    return {k: f for table in declared for k, f in table.items() if k in metrics}


@dataclass
class EvalContext:
    """What a probe may use: cached features of both splits, the action space, classes,
    the frozen model (predictor probes) and the raw datasets (probes that need data)."""

    train: FeatureSet
    val: FeatureSet
    action_space: ActionSpace
    num_classes: int
    method: Any  # the frozen SSLMethod
    meta: dict[str, Any]  # the checkpoint's self-description
    datasets: dict[str, ViewDataset]
    device: torch.device
    out_dir: Path
    progress: bool = True
    sequence_views: tuple[int, ...] = ()  # eval.sequence_views (lengths M of sequence parts)
    # The evaluated data config (the checkpoint's with the command's overrides) and the
    # stage's cached extraction, for probes whose protocol needs other features than the two
    # splits' (another split, untransformed views, a fresh encoder):
    # ``features_of(dataset, baseline)`` with ``baseline`` "" for the checkpoint's model or
    # a name of ``equissl.eval.baselines.BASELINES`` (e.g. "untrained").
    data: dict[str, Any] = field(default_factory=dict)
    features_of: Callable[[ViewDataset, str], FeatureSet] | None = None
    # eval.backbone_mode ("eval": the cached features; "reference": probes whose protocol
    # reran the backbone in train() mode do so, see .backbone_mode) and the settings of the
    # stage's feature extraction it needs ({"views_per_object", "seed", "batch_size",
    # "num_workers"})
    backbone_mode: str = "eval"
    extraction: dict[str, Any] = field(default_factory=dict)


class Probe:
    """Base of every probe. ``name`` is its key under ``eval.probes`` (the result key).

    :meth:`run` receives a part name; ``ctx.train.part(name)`` is ``[N, V, D]``. Probes that
    also make sense on sequence representations (``"<part>@M<m>"``, ``[N, 1, D]``, for the
    lengths ``M`` of ``eval.sequence_views``) set :attr:`on_sequences`; probes that choose
    their parts otherwise override :meth:`parts`.
    """

    on_sequences: bool = False

    def __init__(self, name: str, cfg: dict[str, Any]) -> None:
        self.name = name
        self.cfg = cfg

    def sequence_views(self) -> tuple[int, ...]:
        """Sequence lengths this probe needs in the feature cache besides
        ``eval.sequence_views`` (methods with a sequence representation only)."""
        return ()

    def skip_reason(self, ctx: EvalContext) -> str | None:
        """Why this probe does not apply to this checkpoint and data (``None``: it applies)."""
        return None

    def parts(self, ctx: EvalContext, parts: list[str]) -> list[str]:
        """The parts to run on, given the named parts evaluated: those, and with
        :attr:`on_sequences` their sequence parts of the lengths in ``eval.sequence_views``
        (capped, as the cache is, at the views per object)."""
        if not self.on_sequences:
            return list(parts)
        v = ctx.train.views_per_object
        lengths = {min(int(m), v) for m in ctx.sequence_views}
        return [*parts, *sequence_parts(ctx.train.sequences, parts, lengths)]

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        raise NotImplementedError

    def reference(self) -> Reference | None:
        """The published protocol this probe's defaults follow (``None``: a measurement of
        equissl's own, which no paper reports)."""
        return None

    def card_fields(self, ctx: EvalContext) -> dict[str, Any]:
        """What this probe ran, as protocol-card fields (``head``, ``optimizer``, ``lr``,
        ``epochs``, ``batch_size``, ``samples``, ...; see :mod:`.protocol`)."""
        return {}

    def run_deviations(self, ctx: EvalContext) -> tuple[str, ...]:
        """Deviations from :meth:`reference` that depend on this checkpoint or data."""
        return ()

    def follows_train_mode(self, ctx: EvalContext) -> bool:
        """Whether this run reruns the backbone in ``train()`` mode: ``eval.backbone_mode``
        is ``reference`` and the protocol this probe follows did so."""
        ref = self.reference()
        return (
            ctx.backbone_mode == "reference"
            and ref is not None
            and ref.settings.get("backbone") == TRAIN_MODE
        )

    def train_mode_backbone(self, ctx: EvalContext, part: str) -> TrainModeBackbone | None:
        """The backbone run as the reference ran it for ``part`` (``None``: the cached
        features serve; always for sequence parts, whose aggregates are cached)."""
        if not self.follows_train_mode(ctx) or sequence_length(part) is not None:
            return None
        return TrainModeBackbone(
            ctx.method, ctx.datasets["train"], ctx.datasets["val"], ctx.extraction, part, ctx.device
        )

    def card(self, ctx: EvalContext) -> dict[str, Any]:
        """``results.json["protocols"][name]``: :meth:`card_fields`, the backbone mode and
        the splits, against :meth:`reference`."""
        own = self.card_fields(ctx)  # a probe's own fields win (one on other splits)
        defaults = {
            "backbone": lambda: TRAIN_MODE if self.follows_train_mode(ctx) else FROZEN_EVAL_MODE,
            "train_split": lambda: _split_name(ctx, "train"),
            "train_objects": lambda: ctx.train.num_objects,
            "test_split": lambda: _split_name(ctx, "val"),
            "test_objects": lambda: ctx.val.num_objects,
        }
        ran = {k: own[k] if k in own else get() for k, get in defaults.items()}
        ran.update(own)
        return protocol_card(self.reference(), ran, self.run_deviations(ctx))

    def summarise(self, ctx: EvalContext, results: dict[str, ProbeResult]) -> dict[str, str]:
        """Called once after :meth:`run` on every part (``results`` by part); returns the
        plots written across parts, ``{name: file name in ctx.out_dir}``."""
        return {}


def _split_name(ctx: EvalContext, key: str) -> str:
    return str(getattr(ctx.datasets.get(key), "split_name", key))


def sequence_length(part: str) -> tuple[str, int] | None:
    """``"inv@M3" -> ("inv", 3)``; ``None`` for a part that is not a sequence part."""
    base, sep, m = part.rpartition("@M")
    return (base, int(m)) if sep and m.isdigit() else None


def sequence_parts(sequences: Iterable[str], parts: list[str], lengths: Iterable[int]) -> list[str]:
    """The cached sequence parts ``"<part>@M<m>"`` of the named ``parts`` with ``m`` in
    ``lengths``, in cache order."""
    wanted = set(lengths)
    out = []
    for name in sequences:
        split = sequence_length(name)
        if split and split[0] in parts and split[1] in wanted:
            out.append(name)
    return out


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with the global torch RNG seeded (head initialisation), restoring it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def fit(
    model: nn.Module,
    sample_epoch: Callable[[torch.Generator], tuple[Tensor, Tensor]],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    cfg: dict[str, Any],
    device: torch.device,
    desc: str,
    progress: bool,
    inputs: Callable[[Tensor], Tensor] | None = None,
) -> nn.Module:
    """Adam on ``model`` for ``cfg["epochs"]`` epochs of ``sample_epoch(gen) -> (x, y)``,
    shuffled in mini-batches of ``cfg["batch_size"]``; sampling from a seeded generator.
    Each batch of ``x`` is cast to float32 (cached features may be stored as float16);
    with ``inputs``, ``x`` holds what ``inputs`` turns into the batch's features (view
    indices: :func:`view_features` of the cache, or a backbone run per batch,
    :class:`TrainModeBackbone`)."""
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    model.to(device).train()
    opt = torch.optim.Adam(
        model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"])
    )
    bs = int(cfg["batch_size"])
    for _ in progress_bar(
        range(int(cfg["epochs"])), desc=desc, unit="ep", disable=not progress, leave=False
    ):
        x, y = sample_epoch(gen)
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), bs):
            idx = order[start : start + bs]
            xb = x[idx] if inputs is None else inputs(x[idx])
            loss = loss_fn(model(xb.to(device, torch.float32)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    device: torch.device,
    bs: int = 4096,
    keep: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """``model`` (a head, or any function of a batch) on ``x`` in float32 batches of ``bs``
    rows (cached features may be stored as float16); the result on the CPU. ``keep``
    reduces each batch's output before it is gathered (``classes`` keeps the arg-max
    class of each row instead of its ``[bs, C]`` logits)."""
    out = None
    for i in range(0, len(x), bs):
        xb = x[i : i + bs]  # integer rows (view indices) stay as they are, on the CPU
        y = model(xb.to(device, torch.float32) if xb.is_floating_point() else xb)
        y = (y if keep is None else keep(y)).cpu()
        if out is None:
            out = y.new_empty((len(x), *y.shape[1:]))
        # filled in place: per-batch results kept alive between the batches' activations
        # would pin the heap they were freed into (+420 MB over 105 k pairs of a 1024-wide
        # MLP, measured), one allocation does not
        out[i : i + len(y)] = y
    if out is None:
        return model(x[:0].to(device, torch.float32) if x.is_floating_point() else x[:0]).cpu()
    return out


def view_features(x: Tensor) -> Callable[[Tensor], Tensor]:
    """Batch features from flat view indices into the cached part ``x [N, V, D]`` (view
    ``j`` of object ``o`` is ``o * V + j``): ``[B]`` indices give ``[B, D]``, ``[B, k]``
    give ``[B, k·D]`` (the views' features side by side). Probes draw indices per epoch and
    gather per batch, so no epoch's inputs are ever copied out of the memory-mapped cache
    at once (the same indices :class:`TrainModeBackbone` featurises in reference mode)."""
    flat = x.reshape(-1, x.shape[-1])

    def features(idx: Tensor) -> Tensor:
        return flat[idx].reshape(len(idx), -1)

    return features


def labelled_rows(labels: Tensor) -> Tensor:
    """``[N']`` indices of the objects with a known label (``>= 0``) among ``labels [N]``."""
    return (labels >= 0).nonzero().squeeze(1)


def labelled(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The objects of ``x [N, V, D]`` with a known label (``>= 0``). When every label is
    known (3DIEBench), ``x`` itself: the cached part stays memory-mapped and each epoch
    reads one view per object, instead of a copy of all ``N × V`` rows in RAM."""
    if bool((labels >= 0).all()):
        return x, labels
    rows = labelled_rows(labels)
    return x[rows], labels[rows]
