"""SEN-style baseline of the SIE paper: InfoNCE between the predicted and the actual
embedding of view 2 (SIE ``src/models.py`` classes ``SimCLROnlyEqui`` and, with
``method.action=[rotation, color]``, ``SimCLROnlyEquiRotColor``).

One projector from the whole representation; a hypernetwork predictor maps view 1's
embedding through ``W(action)``; the prediction is the anchor and view 2's embedding the
positive, every other prediction and embedding of the global batch a negative::

    InfoNCE(pred(z₁, a), z₂)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lightly.loss import NTXentLoss
from torch import Tensor, nn

from equissl.config import MethodConfig
from equissl.datasets.base import DataSpec
from equissl.models.heads import HypernetPredictor, projector
from equissl.registries import METHODS
from equissl.ssl.base import LossOutput, SSLMethod
from equissl.ssl.predictor import ProjectedPredictor

SEN_TERMS = ("equi_infonce",)


def sen_terms(criterion: nn.Module, pred: Tensor, equi2: Tensor) -> dict[str, Tensor]:
    """Unweighted term: InfoNCE (``criterion``, negatives gathered across ranks) between the
    ``[B, E]`` prediction of view 2's embedding and that embedding ``[B, E]``."""
    return {"equi_infonce": criterion(pred, equi2)}


@dataclass
class SENConfig(MethodConfig):
    """SIE ``SimCLROnlyEqui`` with the SIE main.py defaults: ``--mlp 2048-2048-2048`` (one
    projector from the 512-d representation), a linear hypernetwork predictor on the
    2048-d embedding (``--predictor-type hypernetwork --hypernetwork linear``), ``--simclr-temp
    0.1``; the loss is the InfoNCE alone (weight 1)."""

    projector: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    temperature: float = 0.1
    weights: dict[str, float] = field(default_factory=lambda: {"equi_infonce": 1.0})


@METHODS.register("sen", config=SENConfig)
class SEN(ProjectedPredictor, SSLMethod):
    """SEN: InfoNCE between the action-conditioned prediction and view 2's embedding."""

    terms = SEN_TERMS
    uses_action = True
    predictor_part = "full"

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        dims = list(self.mcfg["projector"])
        self.projector_equi = projector(self.repr_dim, dims)
        self.predictor = HypernetPredictor(dims[-1], self.action.dim)
        self.criterion = NTXentLoss(
            temperature=float(self.mcfg["temperature"]), gather_distributed=True
        )

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        action = self.relative_action(batch["latents"], 0, 1)
        r1, r2 = self.backbone(views[:, 0]), self.backbone(views[:, 1])
        pred = self.predictor(self.projector_equi(r1), action)
        return LossOutput(sen_terms(self.criterion, pred, self.projector_equi(r2)), r1)
