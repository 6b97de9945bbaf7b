"""Quality of a method's predictor (SIE ``eval_MRR_Hk.py`` and ``eval_prediction_errors.py``).

For methods that predict a view's embedding from another view's embedding and the action
between them (:attr:`SSLMethod.predictor_part`): every evaluation view ``j`` of every
validation object is predicted from the object's view 0, ``p_j = predict(e_0, a(0→j))``,
with ``e`` the embeddings the predictor works in (the frozen method's projector applied to
the cached representations of its part; ``j = 0``, the identity action, included as in the
reference). Embeddings and predictions are L2-normalised (the reference's default; the
``normalize`` option is its ``--no-norm``).

* **MRR, Hit@k**: ``p_j`` ranked by similarity among the embeddings of the same object's
  views; ``rank`` = 1 + position of ``e_j``; MRR = mean 1/rank, Hit@k = fraction with
  rank ≤ k.
* **PRE** (data with a target of kind ``quaternion``, the first one, e.g. 3DIEBench's
  ``rotation``): the nearest neighbour ``n`` of ``p_j`` among every view's
  embedding of the split (``pre_bank: all`` adds the training split, the reference's
  "val-all"); error ``1 − (q_j · q_n)²`` from the absolute orientation quaternions of view
  ``j`` and of ``n``, averaged.

Results go under the predictor's part, e.g. ``equi/predictor/mrr`` for SIE; the probe
returns nothing for the other parts. No training, nothing random.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from equissl.config import ProbeConfig
from equissl.eval.features import FeatureSet
from equissl.eval.neighbours import build_index, rank_of, search
from equissl.eval.probes.base import EvalContext, Probe, ProbeResult
from equissl.eval.probes.protocol import Reference
from equissl.registries import PROBES

#: index of the scalar part in the action spaces' (x, y, z, w) quaternions
QUAT_W = 3
PRE_BANKS = ("split", "all")


@dataclass
class PredictorProbeConfig(ProbeConfig):
    """SIE ``eval_MRR_Hk.py`` / ``eval_prediction_errors.py``: cosine (normalised
    embeddings), Hit@{1, 2, 5, 10}, PRE against the split's own views."""

    hits: list[int] = field(default_factory=lambda: [1, 2, 5, 10])
    normalize: bool = True  # cosine similarity (False: raw inner product, the --no-norm runs)
    pre_bank: str = "split"  # PRE's neighbours: "split" (val-val) or "all" (train + val)
    batch_size: int = 4096  # representations embedded at once


def ranking_metrics(ranks: Tensor, hits: Sequence[int]) -> dict[str, float]:
    """``mrr`` = mean(1 / rank) and ``hit@k`` = mean(rank ≤ k) of 1-based ``ranks [Q]``."""
    r = ranks.double()
    return {
        "mrr": float((1.0 / r).mean()),
        **{f"hit@{k}": float((r <= k).double().mean()) for k in hits},
    }


def prediction_errors(quat_target_to_neighbour: Tensor) -> Tensor:
    """``1 − (q_t · q_n)²`` of each pair ``[Q]`` (float64), from the relative rotations
    ``q_t⁻¹ q_n [Q, 4]`` (x, y, z, w) whose scalar part is the dot product ``q_t · q_n``."""
    return 1.0 - quat_target_to_neighbour.double()[..., QUAT_W] ** 2


def prediction_error(quat_target_to_neighbour: Tensor) -> float:
    """PRE: the mean of :func:`prediction_errors` over the pairs."""
    return float(prediction_errors(quat_target_to_neighbour).mean())


@torch.inference_mode()
def embed(method: Any, reps: Tensor, device: torch.device, bs: int) -> Tensor:
    """The predictor's embeddings ``[N, V, E]`` of representations ``reps [N, V, D]``."""
    flat = reps.reshape(-1, reps.shape[-1])
    out = [
        method.prediction_embedding(flat[i : i + bs].to(device, torch.float32)).float()
        for i in range(0, len(flat), bs)
    ]
    return torch.cat(out).view(*reps.shape[:2], -1)


@torch.inference_mode()
def predictions(method: Any, emb: Tensor, latents: Tensor, bs: int) -> Tensor:
    """``[N, V, E]``: view ``j``'s embedding predicted from view 0's ``emb [N, V, E]`` and
    the method's action from view 0 to ``j`` (latents ``[N, V, P]``)."""
    n, v, e = emb.shape
    source = emb[:, :1].expand(n, v, e).reshape(-1, e)
    lat = latents.to(emb.device)
    action = method.action.relative(lat[:, :1].expand_as(lat), lat).reshape(n * v, -1)
    out = [method.predict(source[i : i + bs], action[i : i + bs]) for i in range(0, n * v, bs)]
    return torch.cat(out).float().view(n, v, e)


def predictor_metrics(
    pred: Tensor,
    emb: Tensor,
    hits: Sequence[int],
    normalize: bool = True,
) -> tuple[dict[str, float], Tensor]:
    """MRR and Hit@k of predictions ``pred [N, V, E]`` of the embeddings ``emb [N, V, E]``
    ranked among each object's ``V`` embeddings; also returns the ranks ``[N·V]``."""
    n, v, e = emb.shape
    metric = "cosine" if normalize else "ip"
    rows = torch.arange(n * v).view(n, v)
    candidates = rows.repeat_interleave(v, dim=0)  # query (o, j) -> its object's rows
    ranks = rank_of(pred.reshape(-1, e), emb.reshape(-1, e), candidates, rows.reshape(-1), metric)
    return ranking_metrics(ranks, hits), ranks


def pre_metric(
    pred: Tensor,
    target_latents: Tensor,
    bank: Tensor,
    bank_latents: Tensor,
    relative_rotation: Callable[[Tensor, Tensor], Tensor],
    normalize: bool = True,
) -> float:
    """PRE of predictions ``pred [Q, E]`` of views with latents ``target_latents [Q, P]``:
    nearest neighbour in ``bank [B, E]`` (latents ``bank_latents [B, P]``), error from the
    rotation ``relative_rotation(lat_target, lat_neighbour) -> [Q, 4]`` between them."""
    nn = search(pred, bank.to(pred.device), 1, "cosine" if normalize else "ip")
    neighbour = bank_latents[nn.index[:, 0].cpu()]
    return prediction_error(relative_rotation(target_latents, neighbour))


@PROBES.register("predictor", config=PredictorProbeConfig)
class PredictorProbe(Probe):
    """MRR, Hit@k and PRE of the method's action-conditioned predictor."""

    def reference(self) -> Reference:
        return Reference(
            "SIE (Garrido, Najman, LeCun, ICML 2023), github.com/facebookresearch/SIE "
            "eval_MRR_Hk.py, eval_prediction_errors.py",
            {"normalize": True},
        )

    def card_fields(self, ctx: EvalContext) -> dict[str, Any]:
        return {
            "head": "the method's own predictor (no training)",
            "normalize": bool(self.cfg["normalize"]),
            "pre_bank": str(self.cfg["pre_bank"]),
            "samples": "view 0 of each object predicted towards each of its views (view 0 "
            "included), ranked among that object's views; PRE: nearest neighbour in the bank",
        }

    def __init__(self, name: str, cfg: dict[str, Any]) -> None:
        super().__init__(name, cfg)
        if cfg["pre_bank"] not in PRE_BANKS:
            raise ValueError(
                f"eval.probes.{name}.pre_bank is {cfg['pre_bank']!r}; choose from {PRE_BANKS}"
            )

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if not getattr(ctx.method, "has_predictor", False):
            return (
                f"method {ctx.meta['config']['method']['name']} has no predictor of an "
                "embedding from another view's embedding and the action"
            )
        if ctx.val.views_per_object < 2:
            return "the predictor probe needs at least two views per object"
        return None

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        """Every object's predictions are made, ranked and searched chunk by chunk of
        objects: only the embeddings (the ranking's and PRE's bank) are held whole, never
        the ``[N, V, E]`` predictions."""
        method = ctx.method
        if part != method.predictor_part:
            return ProbeResult({}, torch.empty(0), torch.empty(0), floors={})
        cfg, bs = self.cfg, int(self.cfg["batch_size"])
        normalize = bool(cfg["normalize"])
        method.eval().to(ctx.device)
        emb = embed(method, ctx.val.parts[part], ctx.device, bs)
        n, v, e = emb.shape
        latents = ctx.val.latents
        quaternions = ctx.action_space.targets_of_kind("quaternion")
        index = bank_latents = None
        if quaternions:
            bank, bank_latents = self.pre_bank(ctx, part, emb, bs)
            index = build_index(bank, "cosine" if normalize else "ip")
            del bank  # the index holds the bank's one copy it searches
        ranks, errors = [], []
        per_chunk = max(1, bs // v)
        for start in range(0, n, per_chunk):
            objs = slice(start, min(n, start + per_chunk))
            pred = predictions(method, emb[objs], latents[objs], bs)
            ranks.append(predictor_metrics(pred, emb[objs], [], normalize)[1])
            if index is not None:
                nn = index.search(pred.reshape(-1, e), 1)
                neighbour = bank_latents[nn.index[:, 0].cpu()]
                target = latents[objs].reshape(-1, latents.shape[-1])
                relative = ctx.action_space.target(quaternions[0], target, neighbour)
                errors.append(prediction_errors(relative))
        rank = torch.cat(ranks)
        metrics = ranking_metrics(rank, list(cfg["hits"]))
        if errors:
            metrics["pre"] = float(torch.cat(errors).mean())
        return ProbeResult(metrics, rank, torch.ones_like(rank), floors={})  # no floors

    def pre_bank(
        self, ctx: EvalContext, part: str, val_emb: Tensor, bs: int
    ) -> tuple[Tensor, Tensor]:
        """PRE's bank ``[B, E]`` and its latents ``[B, P]``: the val views, plus the
        training views with ``pre_bank: all``."""
        splits: list[tuple[Tensor, FeatureSet]] = [(val_emb, ctx.val)]
        if self.cfg["pre_bank"] == "all":
            splits.insert(0, (embed(ctx.method, ctx.train.parts[part], ctx.device, bs), ctx.train))
        bank = torch.cat([e.reshape(-1, e.shape[-1]) for e, _ in splits])
        lats = torch.cat([fs.latents.reshape(-1, fs.latents.shape[-1]) for _, fs in splits])
        return bank, lats
