"""The backbone extension point (docs/extending.md, "A backbone"): a registry of encoders
built for the view shape the dataset declares.

Every backbone is a :class:`Backbone`: ``forward(views [B, *view_shape]) -> [B, D]`` pooled
features, ``feature_map(views) -> [B, D, h, w]`` for heads that need the map (``[B, 512, 8, 8]``
for a ResNet-18 at 256 px). Views of shape ``[C, H, W]`` (images; 1-D PDE windows
``[C, T, X]`` seen as a 2-D image) go in as they are; ``[C, T, X, Y]`` (2-D PDE windows) go
in with the frames stacked as input channels, channel-major (``C × T``: 5 × 16 = 80 for the
Lie-symmetry paper's Navier–Stokes encoder).

A new backbone family is one function registered with its config schema::

    @BACKBONES.register("mynet", config=MyNetConfig)
    def mynet(cfg: dict, in_chans: int) -> tuple[nn.Module, int]: ...

returning a trunk that maps ``[B, in_chans, H, W]`` to a feature map and its width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import timm
from torch import Tensor, nn

from equissl.config import BackboneConfig
from equissl.registries import BACKBONES as BACKBONES  # where plugins written for 0.1 import it

TrunkBuilder = Callable[[dict[str, Any], int], tuple[nn.Module, int]]


def stacked_channels(view_shape: Sequence[int]) -> int:
    """Input channels of the 2-D trunk for one view of ``view_shape``."""
    if len(view_shape) == 3:  # [C, H, W] (or a 1-D PDE window [C, T, X])
        return int(view_shape[0])
    if len(view_shape) == 4:  # [C, T, X, Y]: frames as channels
        return int(view_shape[0] * view_shape[1])
    raise ValueError(
        f"no 2-D backbone input for views of shape {list(view_shape)}; "
        "expected [C, H, W], [C, T, X] or [C, T, X, Y]"
    )


class Backbone(nn.Module):
    """A 2-D trunk behind the input adapter its view shape needs.

    Args:
        trunk: module with ``forward_features([B, C', H, W]) -> [B, D, h, w]``.
        num_features: ``D``.
        view_shape: one view's shape as the dataset declares it.
        input_norm: standardise every input channel of the trunk (``C'``) by batch statistics
            (running ones in ``eval()``) — a ``BatchNorm2d`` without affine parameters.
    """

    def __init__(
        self,
        trunk: nn.Module,
        num_features: int,
        view_shape: Sequence[int],
        input_norm: bool = False,
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.num_features = int(num_features)
        self.view_shape = tuple(int(s) for s in view_shape)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if input_norm:  # absent otherwise, so existing checkpoints keep their state dict
            self.input_norm = nn.BatchNorm2d(stacked_channels(view_shape), affine=False)

    def adapt(self, views: Tensor) -> Tensor:
        """``[B, *view_shape]`` -> ``[B, C', H, W]`` (frames stacked as channels in 2-D PDE)."""
        if views.shape[1:] != self.view_shape:
            raise ValueError(
                f"backbone built for views {list(self.view_shape)}, got {list(views.shape[1:])}"
            )
        x = views.flatten(1, 2) if len(self.view_shape) == 4 else views
        return self.input_norm(x) if hasattr(self, "input_norm") else x

    def feature_map(self, views: Tensor) -> Tensor:
        """``[B, D, h, w]`` before global pooling."""
        return self.trunk.forward_features(self.adapt(views))

    def pool_map(self, features: Tensor) -> Tensor:
        """``[B, D, h, w]`` feature map -> pooled ``[B, D]`` (the trunk's own head when it
        has one, as timm's)."""
        if hasattr(self.trunk, "forward_head"):
            return self.trunk.forward_head(features, pre_logits=True)
        return self.pool(features).flatten(1)

    def forward(self, views: Tensor) -> Tensor:
        """Pooled features ``[B, D]``: :meth:`pool_map` of :meth:`feature_map`."""
        return self.pool_map(self.feature_map(views))


@dataclass
class TimmBackboneConfig(BackboneConfig):
    """Any timm model, randomly initialised (weights are never downloaded)."""

    name: str = "resnet18"  # timm model name: resnet18, resnet50, vit_small_patch16_224, ...
    cifar_stem: bool = False  # ResNets: 3×3/1 stem, no max-pool (small images)
    zero_init_residual: bool = True  # zero the last BN of each residual block (as SIE)
    # standardise each input channel (BatchNorm without affine) before the trunk: PDE views
    # stack coordinates (t ≈ 11 ± 4) with fields (Burgers u ≈ 0 ± 0.06); any backbone schema
    # may declare it, build_backbone reads it
    input_norm: bool = False


@BACKBONES.register("timm", config=TimmBackboneConfig)
def timm_trunk(cfg: dict[str, Any], in_chans: int) -> tuple[nn.Module, int]:
    """A timm model without classifier; ``cifar_stem`` swaps a ResNet's stem for 3×3/1."""
    name = cfg["name"]
    kwargs = {"zero_init_last": cfg["zero_init_residual"]} if name.startswith("resnet") else {}
    try:
        model = timm.create_model(
            name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs
        )
    except RuntimeError as err:
        raise ValueError(f"unknown backbone {name!r} (backbone.name): {err}") from err
    if cfg.get("cifar_stem"):
        if not (hasattr(model, "conv1") and hasattr(model, "maxpool")):
            raise ValueError(f"cifar_stem is only defined for ResNets, not {name!r}")
        model.conv1 = nn.Conv2d(in_chans, model.conv1.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    return model, int(model.num_features)


def build_backbone(cfg: dict[str, Any], view_shape: Sequence[int]) -> Backbone:
    """The registered backbone ``cfg["impl"]`` for views of ``view_shape``."""
    trunk, width = BACKBONES.get(cfg["impl"])(cfg, stacked_channels(view_shape))
    return Backbone(trunk, width, view_shape, bool(cfg.get("input_norm", False)))
