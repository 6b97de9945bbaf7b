"""VICRegPartInv: VICReg whose invariance term covers only part of the embedding (the SIE
paper's baseline, SIE ``src/models.py`` class ``VICRegPartInv``).

The representation is not split. The projector's 2048-d embedding is: the first
``D − equi_dim`` dims pulled together across views by the MSE, the last ``equi_dim``
(``--equi``, 256) left free to vary with the transformation. Variance and covariance cover
the whole embedding, over the batch gathered across ranks::

    sim·MSE(z₁[:, :D−e], z₂[:, :D−e]) + std·½[v(z₁) + v(z₂)] + cov·[c(z₁) + c(z₂)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from equissl.config import MethodConfig
from equissl.datasets.base import DataSpec
from equissl.models.heads import projector
from equissl.registries import METHODS
from equissl.ssl.base import LossOutput, SSLMethod
from equissl.ssl.losses import covariance_term, invariance_term, variance_term

PARTINV_TERMS = ("invariance", "variance", "covariance")


def partinv_terms(za: Tensor, zb: Tensor, inv_dim: int) -> dict[str, Tensor]:
    """Unweighted VICRegPartInv terms of two ``[B, D]`` embeddings: the MSE over the first
    ``inv_dim`` dims only; variance (mean of the two views' hinges) and covariance (their
    sum) over all ``D`` dims and the global batch."""
    return {
        "invariance": invariance_term(za[:, :inv_dim], zb[:, :inv_dim]),
        "variance": 0.5 * (variance_term(za) + variance_term(zb)),
        "covariance": covariance_term(za) + covariance_term(zb),
    }


@dataclass
class VICRegPartInvConfig(MethodConfig):
    """SIE ``VICRegPartInv`` with the SIE main.py defaults / README command: ``--mlp
    2048-2048-2048`` (one projector from the whole 512-d representation), ``--equi 256``
    (here ``equi_dim``: trailing *embedding* dims without invariance, so the MSE covers
    dims [0:1792]), ``--sim-coeff 10``, ``--std-coeff 10``, ``--cov-coeff 1``."""

    projector: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    equi_dim: int = 256
    weights: dict[str, float] = field(
        default_factory=lambda: {"invariance": 10.0, "variance": 10.0, "covariance": 1.0}
    )


@METHODS.register("vicreg_partinv", config=VICRegPartInvConfig)
class VICRegPartInv(SSLMethod):
    """VICReg with the invariance MSE on the leading ``D − equi_dim`` embedding dims only."""

    terms = PARTINV_TERMS

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        dims = list(self.mcfg["projector"])
        self.equi_dim = int(self.mcfg["equi_dim"])
        self.inv_dim = dims[-1] - self.equi_dim
        if not 0 < self.inv_dim <= dims[-1]:
            raise ValueError(
                f"method.equi_dim={self.equi_dim} must lie in [0, {dims[-1]}) "
                f"(the embedding width, method.projector[-1])"
            )
        self.projector = projector(self.repr_dim, dims)

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        ra, rb = self.backbone(views[:, 0]), self.backbone(views[:, 1])
        terms = partinv_terms(self.projector(ra), self.projector(rb), self.inv_dim)
        return LossOutput(terms, ra)
