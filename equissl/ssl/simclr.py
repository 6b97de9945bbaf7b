"""SimCLR (Chen et al., ICML 2020) on two views of each object, as the SIE paper's baseline.

InfoNCE (lightly's ``NTXentLoss``) between the projected views, with the negatives
all-gathered across ranks: every other view of the global batch, 2N − 2 per anchor, as
the SIE repository's ``SimCLR.info_nce_loss`` over ``FullGatherLayer`` outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lightly.loss import NTXentLoss
from torch import Tensor

from equissl.config import MethodConfig
from equissl.datasets.base import DataSpec
from equissl.models.heads import projector
from equissl.registries import METHODS
from equissl.ssl.base import LossOutput, SSLMethod


@dataclass
class SimCLRConfig(MethodConfig):
    """SIE repository defaults: ``--mlp 2048-2048-2048`` (its ``Projector``: Linear-BN-ReLU
    twice, then Linear without bias), ``--simclr-temp 0.1``, Adam 1e-3, wd 1e-6."""

    projector: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    temperature: float = 0.1
    weights: dict[str, float] = field(default_factory=lambda: {"infonce": 1.0})


@METHODS.register("simclr", config=SimCLRConfig)
class SimCLR(SSLMethod):
    """SimCLR: backbone -> projector -> InfoNCE with all-gathered negatives."""

    terms = ("infonce",)

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.projector = projector(self.repr_dim, self.mcfg["projector"])
        self.criterion = NTXentLoss(
            temperature=float(self.mcfg["temperature"]), gather_distributed=True
        )

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        ra, rb = self.backbone(views[:, 0]), self.backbone(views[:, 1])
        return LossOutput({"infonce": self.criterion(self.projector(ra), self.projector(rb))}, ra)
