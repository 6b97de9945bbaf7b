"""Parts defined outside equissl, as a user would write them (``docs/extending.md``).

``tests/test_extension_points.py`` copies this file into a temporary folder as the module
``toy_equissl_method`` and names it in ``EQUISSL_PLUGINS`` for the console scripts; the
in-process tests import it as ``tests.toy_parts``. It registers:

* the method ``toy`` (one loss term, 2 to 4 views) and ``toy_ema`` (an EMA target head);
* the backbone ``tiny_cnn`` (a two-layer CNN, fast on CPU);
* the probe ``feature_norm`` (mean norm of each part's features).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equissl.config import BackboneConfig, MethodConfig, ProbeConfig
from equissl.datasets.base import DataSpec
from equissl.eval.probes.base import EvalContext, Probe, ProbeResult
from equissl.models.ema import momentum_copy
from equissl.registries import BACKBONES, METHODS, PROBES
from equissl.ssl.base import LossOutput, SSLMethod


# ----------------------------------------------------------------------------- method
@dataclass
class ToyConfig(MethodConfig):
    """Toy method: cosine alignment of every view's projection with the first view's."""

    dim: int = 16  # projection width
    weights: dict[str, float] = field(default_factory=lambda: {"align": 1.0})


@METHODS.register("toy", config=ToyConfig)
class Toy(SSLMethod):
    """Toy: align the projections of 2 to 4 views of each object (one loss term)."""

    terms = ("align",)
    num_views_range = (2, 4)

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.head = nn.Linear(self.repr_dim, int(self.mcfg["dim"]))

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]  # [B, V, *view_shape]
        reps = [self.backbone(views[:, v]) for v in range(views.shape[1])]
        z0 = self.head(reps[0])
        align = torch.stack(
            [1 - F.cosine_similarity(z0, self.head(r)).mean() for r in reps[1:]]
        ).mean()
        return LossOutput({"align": align}, reps[0])


@METHODS.register("toy_ema", config=ToyConfig)
class ToyEMA(Toy):
    """Toy with an EMA target head (``momentum_pairs``): the second views' projections
    come from the target, as in BYOL."""

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.target_head = momentum_copy(self.head)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.head, self.target_head)]

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        r0, r1 = self.backbone(views[:, 0]), self.backbone(views[:, 1])
        with torch.no_grad():
            target = self.target_head(r1)
        align = 1 - F.cosine_similarity(self.head(r0), target).mean()
        return LossOutput({"align": align}, r0)


# --------------------------------------------------------------------------- backbone
@dataclass
class TinyCNNConfig(BackboneConfig):
    """A two-layer CNN (tests and examples only)."""

    width: int = 16


class TinyTrunk(nn.Module):
    """``[B, C, H, W] -> [B, width, H/4, W/4]`` (``forward_features``, as timm trunks)."""

    def __init__(self, in_chans: int, width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.layers(x)


@BACKBONES.register("tiny_cnn", config=TinyCNNConfig)
def tiny_cnn(cfg: dict[str, Any], in_chans: int) -> tuple[nn.Module, int]:
    """Two strided 3×3 convolutions; ``in_chans`` comes from the dataset's view shape."""
    width = int(cfg["width"])
    return TinyTrunk(in_chans, width), width


# ------------------------------------------------------------------------------ probe
@dataclass
class FeatureNormProbeConfig(ProbeConfig):
    """Mean L2 norm of a part's validation features (no training)."""

    scale: float = 1.0


@PROBES.register("feature_norm", config=FeatureNormProbeConfig)
class FeatureNormProbe(Probe):
    """Mean feature norm per part (a probe without training, for tests and examples)."""

    def skip_reason(self, ctx: EvalContext) -> str | None:
        return None if len(ctx.val.parts["full"]) else "no validation objects"

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        x = ctx.val.parts[part]  # [N, V, D]
        norms = x.norm(dim=-1).flatten() * float(self.cfg["scale"])
        return ProbeResult({"mean_norm": float(norms.mean())}, norms, norms)
