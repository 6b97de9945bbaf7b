"""Weighted k-NN classification on frozen features (Wu et al. 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination"; the k-NN evaluation of DINO's
``eval_knn.py`` and solo-learn's ``WeightedKNNClassifier``).

The bank is every cached view of every labelled training object, the queries every view
of every labelled validation object. Each query's ``k`` nearest bank views by cosine
similarity ``s`` vote for their class with weight ``exp(s / T)``; the class with the
largest total wins. Nothing is trained, so nothing is random (``index: ivf`` trains an
approximate index, seeded by the probe's ``seed``). Beside ``top1`` and
``balanced_top1``, their floors on the same queries: ``chance_top1``, ``majority_top1`` and
``majority_balanced_top1`` (always the bank's most frequent class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from equissl.config import ProbeConfig
from equissl.eval.metrics import balanced_top1, classes, classification_floors, top1
from equissl.eval.neighbours import EXACT, IndexSpec, build_index
from equissl.eval.probes.base import (
    CLASSIFICATION_FLOORS,
    EvalContext,
    Probe,
    ProbeResult,
    labelled,
    predict,
)
from equissl.eval.probes.protocol import Reference
from equissl.registries import PROBES
from equissl.scores import knn_vote


@dataclass
class KNNProbeConfig(ProbeConfig):
    """solo-learn ``WeightedKNNClassifier`` defaults: k = 20, T = 0.07, cosine (DINO's
    ``eval_knn.py`` also uses T = 0.07 and reports k = 20 among 10/20/100/200)."""

    k: int = 20
    temperature: float = 0.07
    bank_views: int = 0  # views per training object in the bank (0: every cached view)
    query_views: int = 0  # views per validation object queried (0: every cached view)
    query_batch: int = 8192  # queries searched at once (bounds the vote's memory)
    # Neighbour search (equissl.eval.neighbours.IndexSpec): "flat" exact, the protocol;
    # "ivf" approximate (inverted file: nlist lists, 0 = √bank; nprobe scanned per query;
    # k-means on train_points bank views, 0 = 64 per list)
    index: str = "flat"
    nlist: int = 0
    nprobe: int = 32
    train_points: int = 0


def index_spec(cfg: Any, where: str) -> IndexSpec:
    """The :class:`IndexSpec` of a probe config's ``index``, ``nlist``, ``nprobe`` and
    ``train_points`` (seeded by its ``seed``); ``where`` names the config in the error."""
    try:
        return IndexSpec(
            kind=cfg["index"],
            nlist=cfg["nlist"],
            nprobe=cfg["nprobe"],
            train_points=cfg["train_points"],
            seed=int(cfg["seed"]),
        )
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def knn_classify(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    k: int,
    temperature: float,
    query_batch: int = 8192,
    spec: IndexSpec = EXACT,
    keep: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Weighted k-NN class scores ``[Q, C]`` of ``queries [Q, D]`` against ``bank [B, D]``
    with labels ``bank_labels [B]`` (cosine similarity, faiss search through ``spec``, the
    index built once). Neighbours an ``ivf`` search could not fill (score ``-inf``) get no
    vote. ``keep`` reduces each query batch's scores before they are gathered (``classes``:
    ``[Q]`` predicted class ids)."""
    bank_labels = bank_labels.to(bank.device)
    index = build_index(bank, "cosine", spec)

    def vote(q: Tensor) -> Tensor:
        nn = index.search(q, k)
        return knn_vote(nn.scores, bank_labels[nn.index], num_classes, temperature)

    return predict(vote, queries, queries.device, query_batch, keep)


def first_views(x: Tensor, count: int) -> Tensor:
    """The first ``count`` views (all if 0) of ``x [N, V, D]``, flattened to ``[N·V', D]``."""
    x = x[:, :count] if count > 0 else x
    return x.reshape(-1, x.shape[-1])


@PROBES.register("knn", config=KNNProbeConfig)
class KNNProbe(Probe):
    """Weighted k-NN (cosine, ``exp(s/T)`` votes): top-1 and class-balanced top-1."""

    on_sequences = True

    def reference(self) -> Reference:
        return Reference(
            "solo-learn WeightedKNNClassifier (k = 20, T = 0.07, cosine; DINO eval_knn.py)",
            {"k": 20, "temperature": 0.07},
        )

    def card_fields(self, ctx: EvalContext) -> dict[str, Any]:
        return {
            "head": "weighted k-NN vote (cosine, exp(s/T)), no training",
            "k": int(self.cfg["k"]),
            "temperature": float(self.cfg["temperature"]),
            "index": str(self.cfg["index"]),
            "samples": f"bank: {int(self.cfg['bank_views']) or 'every cached'} view(s) per "
            f"training object; queries: {int(self.cfg['query_views']) or 'every cached'} "
            "view(s) per test object",
        }

    def __init__(self, name: str, cfg: dict[str, Any]) -> None:
        super().__init__(name, cfg)
        self.spec = index_spec(cfg, f"eval.probes.{name}")

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if ctx.num_classes <= 1 or not bool((ctx.train.labels >= 0).any()):
            return "the data carry no class labels"
        return None

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        cfg = self.cfg
        # every label known (3DIEBench): the memory-mapped parts, no copy of them
        train_x, train_labels = labelled(ctx.train.part(part), ctx.train.labels)
        val_x, val_labels = labelled(ctx.val.part(part), ctx.val.labels)
        bank = first_views(train_x, int(cfg["bank_views"]))
        queries = first_views(val_x, int(cfg["query_views"]))
        bank_labels = train_labels.repeat_interleave(len(bank) // len(train_x))
        labels = val_labels.repeat_interleave(len(queries) // len(val_x))
        pred = knn_classify(
            bank.to(ctx.device),
            bank_labels,
            queries.to(ctx.device),
            ctx.num_classes,
            int(cfg["k"]),
            float(cfg["temperature"]),
            int(cfg["query_batch"]),
            self.spec,
            keep=classes,  # [Q] class ids, not [Q, C] scores
        )
        return ProbeResult(
            {
                "top1": top1(pred, labels),
                "balanced_top1": balanced_top1(pred, labels),
                **classification_floors(bank_labels, labels, ctx.num_classes),
            },
            pred,
            labels,
            floors=dict(CLASSIFICATION_FLOORS),
        )
