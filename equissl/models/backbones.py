"""Backbones from timm (DESIGN §4), returning pooled features ``[B, D]``."""

from __future__ import annotations

import timm
from torch import nn


def build_backbone(
    name: str = "resnet18",
    in_chans: int = 3,
    cifar_stem: bool = False,
    zero_init_residual: bool = True,
) -> tuple[nn.Module, int]:
    """A randomly initialised timm model without classifier, and its feature width.

    Args:
        name: any timm model name (``resnet18``, ``resnet50``, ``vit_small_patch16_224``…).
            Weights are never downloaded.
        in_chans: input channels (3 for images; channels × frames for PDE windows).
        cifar_stem: for ResNets on small images, replace the 7×7/2 conv + max-pool stem by a
            3×3/1 conv (CIFAR-style), keeping spatial resolution early.
        zero_init_residual: zero the last BN of each residual block (as the SIE code).

    Returns:
        ``(module mapping [B, in_chans, H, W] -> [B, D], D)``.
    """
    kwargs = {"zero_init_last": zero_init_residual} if name.startswith("resnet") else {}
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans,
                                  **kwargs)
    except RuntimeError as err:
        raise ValueError(f"unknown backbone {name!r}: {err}") from err
    if cifar_stem:
        if not (hasattr(model, "conv1") and hasattr(model, "maxpool")):
            raise ValueError(f"cifar_stem is only defined for ResNets, not {name!r}")
        model.conv1 = nn.Conv2d(in_chans, model.conv1.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    return model, int(model.num_features)
