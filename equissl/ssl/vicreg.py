"""VICReg (Bardes, Ponce, LeCun, ICLR 2022) on two views of each object."""

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


@dataclass
class VICRegConfig(MethodConfig):
    """VICReg on 3DIEBench as the SIE paper's baseline (SIE main.py defaults: --mlp
    2048-2048-2048, --sim-coeff 10, --std-coeff 10, --cov-coeff 1, Adam 1e-3, wd 1e-6)."""

    projector: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    weights: dict[str, float] = field(
        default_factory=lambda: {"invariance": 10.0, "variance": 10.0, "covariance": 1.0}
    )


@METHODS.register("vicreg", config=VICRegConfig)
class VICReg(SSLMethod):
    """VICReg: backbone -> projector -> invariance, variance, covariance between 2 views."""

    terms = ("invariance", "variance", "covariance")

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.projector = projector(self.repr_dim, self.mcfg["projector"])

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        ra, rb = self.backbone(views[:, 0]), self.backbone(views[:, 1])
        return LossOutput(vicreg_terms(self.projector(ra), self.projector(rb)), ra)
