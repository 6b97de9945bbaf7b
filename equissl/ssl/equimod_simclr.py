"""EquiMod (Devillers & Lefort, ICLR 2023), SimCLR flavour, as the SIE paper's baseline
(SIE ``src/models.py`` classes ``SimCLREquiMod`` and, with
``method.action=[rotation, color]``, ``SimCLREquiModRotColor``).

Two full-width projectors from the whole representation: an invariant one whose embeddings
of the two views are contrasted (SimCLR), and an equivariant one whose view-1 embedding is
mapped by the hypernetwork predictor ``W(action)`` and contrasted with view 2's::

    InfoNCE(inv₁, inv₂) + equi_factor·InfoNCE(pred(equi₁, a), equi₂)

both with the negatives of the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from equissl.config import MethodConfig
from equissl.datasets.base import DataSpec
from equissl.models.heads import projector
from equissl.registries import METHODS
from equissl.ssl.base import LossOutput
from equissl.ssl.sen import SEN, sen_terms

EQUIMOD_SIMCLR_TERMS = ("infonce", "equi_infonce")


def equimod_simclr_terms(
    criterion: nn.Module, inv1: Tensor, inv2: Tensor, pred: Tensor, equi2: Tensor
) -> dict[str, Tensor]:
    """Unweighted terms from ``[B, E]`` invariant embeddings of both views, the prediction
    of view 2's equivariant embedding and that embedding (negatives gathered across ranks)."""
    return {"infonce": criterion(inv1, inv2), **sen_terms(criterion, pred, equi2)}


@dataclass
class EquiModSimCLRConfig(MethodConfig):
    """SIE ``SimCLREquiMod``: ``projector_inv`` and ``projector_equi`` both ``--mlp
    2048-2048-2048`` from the 512-d representation, linear hypernetwork predictor,
    ``--simclr-temp 0.1``; ``loss = loss_inv + λ·loss_equi`` with EquiMod's own λ = 1
    (``--lmbd=1.0`` in all four of the EquiMod authors' released scripts; SIE's
    ``SimCLREquiModRotColor`` also adds the two unweighted). SIE's README gives no EquiMod
    value: its ``--equi-factor 0.45`` is SIE's own (docs/protocols.md)."""

    projector: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    temperature: float = 0.1
    weights: dict[str, float] = field(default_factory=lambda: {"infonce": 1.0, "equi_infonce": 1.0})


@METHODS.register("equimod_simclr", config=EquiModSimCLRConfig)
class EquiModSimCLR(SEN):
    """EquiMod (SimCLR): invariant InfoNCE + InfoNCE of the action-conditioned prediction."""

    terms = EQUIMOD_SIMCLR_TERMS

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)  # projector_equi, predictor, criterion
        self.projector_inv = projector(self.repr_dim, list(self.mcfg["projector"]))

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        action = self.relative_action(batch["latents"], 0, 1)
        r1, r2 = self.backbone(views[:, 0]), self.backbone(views[:, 1])
        pred = self.predictor(self.projector_equi(r1), action)
        terms = equimod_simclr_terms(
            self.criterion,
            self.projector_inv(r1),
            self.projector_inv(r2),
            pred,
            self.projector_equi(r2),
        )
        return LossOutput(terms, r1)
