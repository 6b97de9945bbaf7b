"""The ResNet of the SIE reference code (facebookresearch/SIE, ``src/resnet.py``), the
backbone of every run in the SIE paper; ``backbone=resnet18_sie``.

It differs from torchvision's / timm's ResNet in four ways, all reproduced here:

* **Fixed asymmetric padding** instead of symmetric ``padding=``: ``(2, 3)`` rows/columns
  (before, after) ahead of the 7×7/2 stem convolution, ``(0, 1)`` ahead of the 3×3/2
  max-pool and ahead of every strided 3×3 convolution. On even sides this is exactly
  TensorFlow's ``"same"`` padding (output ``n / 2``); on odd sides it is not (TF would pad
  ``(3, 3)`` / ``(1, 1)`` and give ``(n + 1) / 2``; this gives ``(n − 1) / 2``). So the
  stem and pool map a side ``n`` to ``⌊n / 4⌋`` (timm: ``⌈n / 4⌉``): 257 px gives an 8×8
  map where timm's ResNet gives 9×9. A strided *block* on an odd side cannot add its
  shortcut (the 1×1/2 shortcut keeps ``(n + 1) / 2`` positions), which is an error in the
  reference as here; sides with ``⌊n / 4⌋`` divisible by 8 (256, 257, 288) avoid it.
* **Max-pool padding filled with −1e4** (not −inf; the reference's choice, finite in fp16).
  The pool follows a ReLU, so the filler never wins a window.
* **The stride sits on the block's second 3×3 convolution** (timm and torchvision put it on
  the first).
* **A 1×1 conv + BN shortcut on the first block of every stage, layer1 included**, where the
  shapes would allow an identity (4,224 parameters more than timm's ResNet-18).

Initialisation as the reference: Kaiming-normal (fan-out, ReLU) convolutions, BN weight 1 and
bias 0, and with ``zero_init_residual`` (SIE's models pass ``True``) the residual branch's
last BN weight set to 0. BN keeps PyTorch's defaults (eps 1e-5, momentum 0.1). Module names
follow the reference's (``conv1``, ``layer1.0.downsample.0``, ...), so its
``final_weights.pth`` loads with ``load_state_dict``.

Shapes (ResNet-18, 256 px): ``[B, C, 256, 256]`` -> stem ``[B, 64, 128, 128]`` -> pool
``[B, 64, 64, 64]`` -> layer1..4 ``[B, 64|128|256|512, 64|32|16|8, …]``; the feature map is
``[B, 512, 8, 8]`` and the pooled representation ``[B, 512]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from equissl.config import BackboneConfig
from equissl.registries import BACKBONES

STEM_PAD = (2, 3, 2, 3)  # F.pad order: (left, right, top, bottom)
POOL_PAD = (0, 1, 0, 1)
STRIDED_PAD = (0, 1, 0, 1)
POOL_FILL = -1e4


class SIEBasicBlock(nn.Module):
    """Two 3×3 convolutions with the stride on the second, and an optional 1×1 shortcut.

    Args:
        in_chans: input channels ``C``.
        out_chans: output channels ``C'``.
        stride: 1 or 2, applied by ``conv2`` (after ``(0, 1)`` padding) and the shortcut.
        shortcut: a 1×1 conv + BN projection instead of the identity.

    ``[B, C, H, W] -> [B, C', H', W']`` with ``H' = H`` (stride 1) or ``⌊(H − 1) / 2⌋ + 1``
    (stride 2: ``H / 2`` for even ``H``).
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int, shortcut: bool) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"SIE ResNet blocks take stride 1 or 2, not {stride}")
        if not shortcut and (stride != 1 or in_chans != out_chans):
            raise ValueError("an identity shortcut needs stride 1 and equal channels")
        self.stride = stride
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chans)
        # stride 2: the padding is applied explicitly in forward, (0, 1) on each side pair
        self.conv2 = nn.Conv2d(
            out_chans, out_chans, 3, stride=stride, padding=1 if stride == 1 else 0, bias=False
        )
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if shortcut:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_chans),
            )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 2 and (x.shape[-2] % 2 or x.shape[-1] % 2):
            raise ValueError(
                f"the SIE ResNet's stride-2 blocks need even sides, got {x.shape[-2]}×"
                f"{x.shape[-1]} (views whose side n has n // 4 divisible by 8 fit, e.g. 256)"
            )
        out = self.relu(self.bn1(self.conv1(x)))
        if self.stride == 2:
            out = F.pad(out, STRIDED_PAD)
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNetSIE(nn.Module):
    """The SIE reference ResNet with basic blocks (ResNet-18: ``layers=(2, 2, 2, 2)``).

    Args:
        in_chans: input channels (3 for images; the reference hard-codes 3).
        layers: blocks per stage; stage ``i`` has ``64·2^i`` channels, stride 2 from stage 2.
        zero_init_residual: zero the weight of each block's ``bn2``.

    ``forward_features([B, in_chans, H, W]) -> [B, 512, h, w]``; ``forward`` pools it to
    ``[B, 512]`` as the reference's ``forward`` does.
    """

    def __init__(
        self,
        in_chans: int = 3,
        layers: Sequence[int] = (2, 2, 2, 2),
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"backbone.layers must be 4 positive block counts, got {layers}")
        width = 64
        self.conv1 = nn.Conv2d(in_chans, width, 7, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=0)
        stages = []
        in_chans_stage = width
        for i, blocks in enumerate(layers):
            out = width * 2**i
            stride = 1 if i == 0 else 2
            stage = [SIEBasicBlock(in_chans_stage, out, stride, shortcut=True)]
            stage += [SIEBasicBlock(out, out, 1, shortcut=False) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            in_chans_stage = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = in_chans_stage
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, SIEBasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, 512, h, w]`` (``h = H / 32`` for ``H`` divisible by 32)."""
        x = self.relu(self.bn1(self.conv1(F.pad(x, STEM_PAD))))
        x = self.maxpool(F.pad(x, POOL_PAD, value=POOL_FILL))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        """Globally average-pooled features ``[B, 512]``."""
        return self.forward_features(x).mean((2, 3))


@dataclass
class ResNetSIEConfig(BackboneConfig):
    """The SIE reference ResNet (src/resnet.py): ``layers`` [2, 2, 2, 2] is its resnet18."""

    layers: list[int] = field(default_factory=lambda: [2, 2, 2, 2])  # resnet34: [3, 4, 6, 3]
    zero_init_residual: bool = True  # SIE's models build it with zero_init_residual=True


@BACKBONES.register("resnet_sie", config=ResNetSIEConfig)
def resnet_sie(cfg: dict[str, Any], in_chans: int) -> tuple[nn.Module, int]:
    """SIE's ResNet with basic blocks for ``in_chans`` input channels; 512 features."""
    trunk = ResNetSIE(in_chans, list(cfg["layers"]), bool(cfg["zero_init_residual"]))
    return trunk, trunk.num_features
