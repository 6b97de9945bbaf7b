"""SimCLR + AugSelf (Lee et al., NeurIPS 2021) as the SIE paper's baseline (SIE
``src/models.py`` classes ``SimCLRAugSelf`` and, with ``method.action=[rotation, color]``,
``SimCLRAugSelfRotColor``).

SimCLR's InfoNCE between the projected views, plus an MLP on the two *backbone*
representations ``[r₁ ‖ r₂]`` that regresses the action from view 1 to view 2 (MSE)::

    InfoNCE(z₁, z₂) + ec_weight·MSE(MLP([r₁ ‖ r₂]), a)

The regression's gradient reaches the backbone (the reference does not detach).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss
from torch import Tensor, nn

from equissl.config import MethodConfig
from equissl.datasets.base import DataSpec
from equissl.models.heads import projector
from equissl.registries import METHODS
from equissl.ssl.base import LossOutput, SSLMethod

AUGSELF_TERMS = ("infonce", "action")


def action_regressor(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """(Linear-ReLU) per hidden width, then Linear to ``out_dim`` (all with bias, no BN,
    as the reference's ``predictor``). ``[B, in_dim]`` -> ``[B, out_dim]``."""
    widths = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], out_dim))
    return nn.Sequential(*layers)


def augself_terms(
    criterion: nn.Module, za: Tensor, zb: Tensor, action_pred: Tensor, action: Tensor
) -> dict[str, Tensor]:
    """Unweighted terms: InfoNCE of the ``[B, E]`` embeddings (``criterion``, negatives
    gathered across ranks) and the MSE of the predicted ``[B, A]`` action (per rank)."""
    return {
        "infonce": criterion(za, zb),
        "action": F.mse_loss(action_pred, action.to(action_pred.dtype)),
    }


@dataclass
class SimCLRAugSelfConfig(MethodConfig):
    """SIE ``SimCLRAugSelf`` with the SIE main.py defaults: ``--mlp 2048-2048-2048``,
    ``--simclr-temp 0.1``, ``--ec-weight 1``. The action regressor's hidden widths are
    ``action_hidden``; ``None`` is the reference's ``[2·D, 2·D]`` for a ``D``-d
    representation (1024-1024 on ResNet-18: 1024 → 1024 → 1024 → A)."""

    projector: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    temperature: float = 0.1
    action_hidden: list[int] | None = None
    weights: dict[str, float] = field(default_factory=lambda: {"infonce": 1.0, "action": 1.0})


@METHODS.register("simclr_augself", config=SimCLRAugSelfConfig)
class SimCLRAugSelf(SSLMethod):
    """SimCLR + an MLP on ``[r₁ ‖ r₂]`` regressing the relative action (AugSelf)."""

    terms = AUGSELF_TERMS
    uses_action = True

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.projector = projector(self.repr_dim, self.mcfg["projector"])
        hidden = self.mcfg.get("action_hidden")
        hidden = [2 * self.repr_dim] * 2 if hidden is None else list(hidden)
        self.action_head = action_regressor(2 * self.repr_dim, hidden, self.action.dim)
        self.criterion = NTXentLoss(
            temperature=float(self.mcfg["temperature"]), gather_distributed=True
        )

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        action = self.relative_action(batch["latents"], 0, 1)
        ra, rb = self.backbone(views[:, 0]), self.backbone(views[:, 1])
        pred = self.action_head(torch.cat((ra, rb), dim=1))
        terms = augself_terms(self.criterion, self.projector(ra), self.projector(rb), pred, action)
        return LossOutput(terms, ra)
