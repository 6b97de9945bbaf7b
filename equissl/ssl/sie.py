"""SIE: Split Invariant-Equivariant representations (Garrido, Najman, LeCun, ICML 2023).

The representation ``[B, 512]`` is split into an invariant part ``[:inv_dim]`` and an
equivariant part ``[inv_dim:]`` (the SIE code's layout). Each part has its own projector.
A hypernetwork predictor maps the equivariant embedding of view 1 through ``W(action)`` to
predict view 2's. Loss (SIE ``models.SIE.forward``)::

    sim·MSE(inv₁, inv₂) + equi_factor·sim·MSE(pred, equi₂)
    + std·½[v(Z₁) + v(Z₂)] + pred_std·½ v(pred) + cov·[c(Z₁) + c(Z₂)]

with ``Z = [inv ‖ equi]`` embeddings, ``v`` the VICReg variance hinge and ``c`` the
covariance penalty, both over the batch gathered across ranks. The coefficients are
``method.weights`` (equivariance = equi_factor × sim = 0.45 × 10 = 4.5). Variants are
configs: ``weights.pred_variance=0`` (SIENoVar), ``inv_dim=0`` (SIEOnlyEqui),
``action=[rotation, color]`` (SIERotColor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from equissl.config import MethodConfig
from equissl.datasets.base import DataSpec
from equissl.models.heads import HypernetPredictor, projector
from equissl.registries import METHODS
from equissl.ssl.base import LossOutput, SSLMethod
from equissl.ssl.losses import covariance_term, invariance_term, variance_term
from equissl.ssl.predictor import ProjectedPredictor

SIE_TERMS = ("invariance", "equivariance", "variance", "pred_variance", "covariance")


@dataclass
class SIEConfig(MethodConfig):
    """SIE, recipe of the README command of github.com/facebookresearch/SIE.

    512-d representation = ``inv_dim`` invariant + the rest equivariant; each part gets a
    projector scaled by its share of ``--mlp 2048-2048-2048`` (256 -> 1024-1024-1024).
    Weights: ``--sim-coeff 10``, ``--equi-factor 0.45`` (× sim = 4.5), ``--std-coeff 10``
    (also on the prediction), ``--cov-coeff 1`` (SIE main.py defaults).
    """

    inv_dim: int = 256
    projector: list[int] = field(default_factory=lambda: [1024, 1024, 1024])
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "invariance": 10.0,
            "equivariance": 4.5,
            "variance": 10.0,
            "pred_variance": 10.0,
            "covariance": 1.0,
        }
    )


@METHODS.register("sie", config=SIEConfig)
class SIE(ProjectedPredictor, SSLMethod):
    """SIE: split invariant / equivariant parts, hypernetwork predictor on the action."""

    terms = SIE_TERMS
    uses_action = True
    predictor_part = "equi"

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.inv_dim = int(self.mcfg["inv_dim"])
        self.equi_dim = self.repr_dim - self.inv_dim
        if not 0 <= self.inv_dim < self.repr_dim:
            raise ValueError(f"method.inv_dim={self.inv_dim} must lie in [0, {self.repr_dim})")
        dims = list(self.mcfg["projector"])
        self.projector_inv = projector(self.inv_dim, dims) if self.inv_dim > 0 else None
        self.projector_equi = projector(self.equi_dim, dims)
        self.predictor = HypernetPredictor(dims[-1], self.action.dim)

    @property
    def parts(self) -> dict[str, slice]:
        parts = {"full": slice(0, self.repr_dim), "equi": slice(self.inv_dim, self.repr_dim)}
        if self.inv_dim > 0:
            parts["inv"] = slice(0, self.inv_dim)
        return parts

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """Representation ``[B, D]``, invariant embedding (or None) and equivariant embedding."""
        r = self.backbone(x)
        inv = self.projector_inv(r[:, : self.inv_dim]) if self.projector_inv is not None else None
        return r, inv, self.projector_equi(r[:, self.inv_dim :])

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        action = self.relative_action(batch["latents"], 0, 1)
        r1, inv1, equi1 = self.embed(views[:, 0])
        _, inv2, equi2 = self.embed(views[:, 1])
        pred = self.predictor(equi1, action)
        return LossOutput(sie_terms(inv1, inv2, equi1, equi2, pred), r1)


def sie_terms(
    inv1: Tensor | None, inv2: Tensor | None, equi1: Tensor, equi2: Tensor, pred: Tensor
) -> dict[str, Tensor]:
    """Unweighted SIE terms from ``[B, E]`` embeddings of views 1 and 2 and the prediction
    ``[B, E]`` of ``equi2`` from ``equi1``; ``inv`` is ``None`` without an invariant part."""
    z1 = equi1 if inv1 is None else torch.cat((inv1, equi1), dim=1)
    z2 = equi2 if inv2 is None else torch.cat((inv2, equi2), dim=1)
    return {
        "invariance": invariance_term(inv1, inv2) if inv1 is not None else z1.new_zeros(()),
        "equivariance": invariance_term(pred, equi2),
        "variance": 0.5 * (variance_term(z1) + variance_term(z2)),
        "pred_variance": 0.5 * variance_term(pred),
        "covariance": covariance_term(z1) + covariance_term(z2),
    }
