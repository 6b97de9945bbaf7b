"""EquiMod (Devillers & Lefort, ICLR 2023), VICReg flavour — the SIE paper's new
VICReg-based version (SIE ``src/models.py`` class ``VICRegEquiMod``).

Two full-width projectors from the whole representation. The invariant embeddings get
VICReg; the equivariant ones get VICReg with the invariance MSE taken between the
hypernetwork's prediction ``W(action)·equi₁`` and ``equi₂``. Variance and covariance are
those of each projector's own embeddings of both views (not of the prediction), over the
batch gathered across ranks::

    [sim·MSE(inv₁, inv₂) + std·½[v(inv₁) + v(inv₂)] + cov·[c(inv₁) + c(inv₂)]]
    + equi_factor·[sim·MSE(pred, equi₂) + std·½[v(equi₁) + v(equi₂)] + cov·[c(equi₁) + c(equi₂)]]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from equissl.config import MethodConfig
from equissl.datasets.base import DataSpec
from equissl.models.heads import HypernetPredictor, projector
from equissl.registries import METHODS
from equissl.ssl.base import LossOutput, SSLMethod
from equissl.ssl.losses import covariance_term, invariance_term, variance_term
from equissl.ssl.predictor import ProjectedPredictor
from equissl.ssl.vicreg import vicreg_terms

EQUIMOD_VICREG_TERMS = (
    "invariance",
    "variance",
    "covariance",
    "equivariance",
    "equi_variance",
    "equi_covariance",
)


def equimod_vicreg_terms(
    inv1: Tensor, inv2: Tensor, equi1: Tensor, equi2: Tensor, pred: Tensor
) -> dict[str, Tensor]:
    """Unweighted terms from the ``[B, E]`` invariant and equivariant embeddings of views 1
    and 2 and the prediction ``[B, E]`` of ``equi2`` from ``equi1``."""
    return {
        **vicreg_terms(inv1, inv2),
        "equivariance": invariance_term(pred, equi2),
        "equi_variance": 0.5 * (variance_term(equi1) + variance_term(equi2)),
        "equi_covariance": covariance_term(equi1) + covariance_term(equi2),
    }


@dataclass
class EquiModVICRegConfig(MethodConfig):
    """SIE ``VICRegEquiMod``: ``projector_inv`` and ``projector_equi`` both ``--mlp
    2048-2048-2048`` from the 512-d representation, linear hypernetwork predictor on the
    2048-d equivariant embedding; ``loss = loss_inv + λ·loss_equi`` with ``--sim-coeff 10
    --std-coeff 10 --cov-coeff 1`` inside each and EquiMod's own λ = 1 (``--lmbd=1.0`` in all
    four of the EquiMod authors' released scripts; SIE's README gives no EquiMod value, its
    ``--equi-factor 0.45`` is SIE's own), so the equivariant weights are 1 × (10, 10, 1)."""

    projector: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "invariance": 10.0,
            "variance": 10.0,
            "covariance": 1.0,
            "equivariance": 10.0,
            "equi_variance": 10.0,
            "equi_covariance": 1.0,
        }
    )


@METHODS.register("equimod_vicreg", config=EquiModVICRegConfig)
class EquiModVICReg(ProjectedPredictor, SSLMethod):
    """EquiMod (VICReg): VICReg on an invariant head + on a predicted equivariant head."""

    terms = EQUIMOD_VICREG_TERMS
    uses_action = True
    predictor_part = "full"

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        dims = list(self.mcfg["projector"])
        self.projector_inv = projector(self.repr_dim, dims)
        self.projector_equi = projector(self.repr_dim, dims)
        self.predictor = HypernetPredictor(dims[-1], self.action.dim)

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        action = self.relative_action(batch["latents"], 0, 1)
        r1, r2 = self.backbone(views[:, 0]), self.backbone(views[:, 1])
        equi1, equi2 = self.projector_equi(r1), self.projector_equi(r2)
        pred = self.predictor(equi1, action)
        terms = equimod_vicreg_terms(
            self.projector_inv(r1), self.projector_inv(r2), equi1, equi2, pred
        )
        return LossOutput(terms, r1)
