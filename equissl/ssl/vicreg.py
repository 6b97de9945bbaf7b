"""VICReg (Bardes, Ponce, LeCun, ICLR 2022) on two views of each object."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from equissl.datasets.contract import ActionSpace
from equissl.models.heads import projector
from equissl.ssl.base import METHODS, SSLMethod
from equissl.ssl.losses import covariance_term, invariance_term, variance_term


def vicreg_terms(za: Tensor, zb: Tensor) -> dict[str, Tensor]:
    """Unweighted VICReg terms of two ``[B, D]`` embeddings (statistics over all ranks).

    ``variance`` is the mean of the two views' hinges, ``covariance`` their sum — the
    convention of the VICReg and SIE reference code.
    """
    return {
        "invariance": invariance_term(za, zb),
        "variance": 0.5 * (variance_term(za) + variance_term(zb)),
        "covariance": covariance_term(za) + covariance_term(zb),
    }


@METHODS.register("vicreg")
class VICReg(SSLMethod):
    """Backbone -> projector (config ``projector`` widths) -> VICReg loss between views 0, 1."""

    def __init__(self, config: dict[str, Any], action_space: ActionSpace, num_classes: int = 0):
        super().__init__(config, action_space, num_classes)
        self.projector = projector(self.repr_dim, self.mcfg["projector"])

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        views = batch["views"]
        ra, rb = self.backbone(views[:, 0]), self.backbone(views[:, 1])
        terms = vicreg_terms(self.projector(ra), self.projector(rb))
        m = self.mcfg
        terms["loss"] = (m["sim_coeff"] * terms["invariance"] + m["std_coeff"] * terms["variance"]
                         + m["cov_coeff"] * terms["covariance"])
        return terms, ra
