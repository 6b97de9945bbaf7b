"""backbone=resnet18_sie: the ResNet-18 of the SIE reference code (src/resnet.py).

Expected numbers are worked out by hand from the reference's architecture below; nothing
here imports the reference.
"""

import math

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from equissl.models.backbones import build_backbone
from equissl.models.resnet_sie import (
    POOL_FILL,
    POOL_PAD,
    STEM_PAD,
    STRIDED_PAD,
    ResNetSIE,
)
from equissl.registries import BACKBONES

SIE18 = {"impl": "resnet_sie", "layers": [2, 2, 2, 2], "zero_init_residual": True}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def tf_same_pads(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one side ``n``: output ``⌈n / stride⌉``, total padding
    ``max((out − 1)·stride + kernel − n, 0)``, the odd pixel after."""
    out = math.ceil(n / stride)
    total = max((out - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


def test_parameter_count_by_hand():
    # conv k×k in→out: k²·in·out (no bias); BN c: 2c (weight, bias).
    stem = 7 * 7 * 3 * 64 + 2 * 64  # 9,408 + 128

    def stage(cin: int, cout: int) -> int:
        first = 9 * cin * cout + 9 * cout * cout + 2 * 2 * cout  # two 3×3 convs + 2 BN
        shortcut = cin * cout + 2 * cout  # 1×1 conv + BN, on every stage's first block
        second = 2 * 9 * cout * cout + 2 * 2 * cout
        return first + shortcut + second

    stages = [stage(64, 64), stage(64, 128), stage(128, 256), stage(256, 512)]
    assert stages == [152_192, 525_568, 2_099_712, 8_393_728]
    assert stem + sum(stages) == 11_180_736
    assert n_params(ResNetSIE()) == 11_180_736
    # timm's ResNet-18 (no classifier) lacks only layer1's shortcut: 64·64 + 2·64 = 4,224
    timm18 = timm.create_model("resnet18", pretrained=False, num_classes=0)
    assert n_params(timm18) == 11_180_736 - 4_224 == 11_176_512


def test_shapes_at_256_px():
    # 256 +5 pad -> 7×7/2: ⌊(261 − 7)/2⌋ + 1 = 128; +1 pad -> 3×3/2 pool: ⌊(129 − 3)/2⌋ + 1
    # = 64; layer1 keeps 64; each strided stage: ⌊(n + 1 − 3)/2⌋ + 1 = n/2 -> 32, 16, 8.
    net = ResNetSIE().eval()
    seen = {}
    for name in ("maxpool", "layer1", "layer2", "layer3", "layer4", "bn1"):
        getattr(net, name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape))
        )
    x = torch.randn(2, 3, 256, 256)
    fmap = net.forward_features(x)
    assert seen == {
        "bn1": (2, 64, 128, 128),
        "maxpool": (2, 64, 64, 64),
        "layer1": (2, 64, 64, 64),
        "layer2": (2, 128, 32, 32),
        "layer3": (2, 256, 16, 16),
        "layer4": (2, 512, 8, 8),
    }
    assert fmap.shape == (2, 512, 8, 8)
    backbone = build_backbone(SIE18, (3, 256, 256)).eval()
    assert backbone.num_features == 512
    torch.testing.assert_close(backbone(x), backbone.feature_map(x).mean((2, 3)))


def test_differs_from_timm_where_the_reference_does():
    ours = ResNetSIE()
    timm18 = timm.create_model("resnet18", pretrained=False, num_classes=0)
    # a projection shortcut in layer1, where timm keeps the identity
    assert ours.layer1[0].downsample is not None and timm18.layer1[0].downsample is None
    assert ours.layer1[1].downsample is None
    # the stride on the block's second conv (timm: on the first), without built-in padding
    assert ours.layer2[0].conv1.stride == (1, 1) and ours.layer2[0].conv2.stride == (2, 2)
    assert ours.layer2[0].conv2.padding == (0, 0)
    assert timm18.layer2[0].conv1.stride == (2, 2)
    assert ours.conv1.padding == (0, 0) and ours.maxpool.padding == 0
    # even sides: both give n / 32; odd: stem and pool give ⌊n/4⌋ here, ⌈n/4⌉ in timm.
    # 257 -> ⌊257/4⌋ = 64 -> 8×8 here; timm: 129 -> 65 -> 33 -> 17 -> 9.
    for side, ours_side, timm_side in ((64, 2, 2), (257, 8, 9), (97, 3, 4)):
        x = torch.randn(1, 3, side, side)
        assert ours.eval().forward_features(x).shape[-1] == ours_side
        assert timm18.eval().forward_features(x).shape[-1] == timm_side
    # 255 -> 63 after the pool: the first strided block meets an odd side (an error in the
    # reference too, where the 1×1/2 shortcut keeps 32 positions and the main path 31)
    with pytest.raises(ValueError, match="need even sides, got 63×63"):
        ours.forward_features(torch.randn(1, 3, 255, 255))


def test_padding_is_tf_same_on_even_sides():
    for n in (4, 8, 64, 128, 256):
        assert tf_same_pads(n, 7, 2) == STEM_PAD[:2] == STEM_PAD[2:]  # (2, 3)
        for pads in (POOL_PAD, STRIDED_PAD):
            assert tf_same_pads(n, 3, 2) == pads[:2] == pads[2:]  # (0, 1)
    # odd sides: TF pads symmetrically (one output more); the reference keeps its fixed pads
    assert tf_same_pads(257, 7, 2) == (3, 3) and tf_same_pads(63, 3, 2) == (1, 1)

    # hand-made 4×4 input, 3×3/2 conv: "same" windows start at rows/cols 0 and 2 (centres
    # 1 and 3, the window at 2 reaching the padded row 4)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    corner = torch.zeros(1, 1, 3, 3)
    corner[..., 0, 0] = 1  # picks each window's top-left pixel
    centre = torch.zeros(1, 1, 3, 3)
    centre[..., 1, 1] = 1
    ones = torch.ones(1, 1, 3, 3)
    padded = F.pad(x, STRIDED_PAD)
    torch.testing.assert_close(F.conv2d(padded, corner, stride=2)[0, 0], x[0, 0, ::2, ::2])
    assert F.conv2d(padded, centre, stride=2)[0, 0].tolist() == [[5, 7], [13, 15]]
    # bottom-right window: rows 2-3 × cols 2-3 and the zero padding: 10 + 11 + 14 + 15
    assert F.conv2d(padded, ones, stride=2)[0, 0, 1, 1] == 50
    # symmetric padding=1 (timm) centres the windows on 0 and 2 instead
    assert F.conv2d(x, centre, stride=2, padding=1)[0, 0].tolist() == [[0, 2], [8, 10]]


def test_the_trunk_pads_as_the_reference():
    net = ResNetSIE().eval()
    inputs = {}
    for name, module in (
        ("conv1", net.conv1),
        ("maxpool", net.maxpool),
        ("layer2.0.conv2", net.layer2[0].conv2),
        ("layer1.0.conv2", net.layer1[0].conv2),
    ):
        module.register_forward_pre_hook(
            lambda m, args, name=name: inputs.__setitem__(name, args[0].clone())
        )
    net.forward_features(torch.randn(1, 3, 64, 64) + 5)  # no zeros in the image itself
    stem = inputs["conv1"]  # 64 + 2 + 3
    assert stem.shape[-2:] == (69, 69)
    assert (stem[..., :2, :] == 0).all() and (stem[..., -3:, :] == 0).all()
    assert (stem[..., 2:-3, 2:-3] != 0).all()
    pool = inputs["maxpool"]  # 32 + 1, the extra row and column filled with -1e4
    assert pool.shape[-2:] == (33, 33)
    assert (pool[..., -1, :] == POOL_FILL).all() and (pool[..., :, -1] == POOL_FILL).all()
    assert (pool[..., :-1, :-1] >= 0).all()  # after the ReLU: the filler never wins
    assert inputs["layer2.0.conv2"].shape[-2:] == (17, 17)  # 16 + 1 before the 3×3/2
    assert inputs["layer1.0.conv2"].shape[-2:] == (16, 16)  # stride 1: padding=1 inside
    # a window of the pool that holds only negatives still ignores the filler
    neg = F.max_pool2d(F.pad(-torch.ones(1, 1, 4, 4), POOL_PAD, value=POOL_FILL), 3, 2)
    assert (neg == -1).all()


def test_initialisation_as_the_reference():
    net = ResNetSIE()
    for block in (*net.layer1, *net.layer2, *net.layer3, *net.layer4):
        assert (block.bn2.weight == 0).all() and (block.bn1.weight == 1).all()
    assert (net.layer1[0].downsample[1].weight == 1).all()  # shortcut BN is not zeroed
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert (m.eps, m.momentum) == (1e-5, 0.1) and (m.bias == 0).all()
    # Kaiming normal, fan-out: std sqrt(2 / (out · k²)); layer4's 3×3 convs are large
    w = net.layer4[1].conv1.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    assert not (ResNetSIE(zero_init_residual=False).layer1[0].bn2.weight == 0).any()


def test_registered_family_and_reference_names():
    assert "resnet_sie" in BACKBONES
    ns = build_backbone(SIE18, (5, 16, 32, 32))  # frames stacked as 80 input channels
    assert ns.trunk.conv1.in_channels == 80 and ns(torch.randn(2, 5, 16, 32, 32)).shape == (2, 512)
    # the reference's parameter names: its final_weights.pth loads as it is
    keys = set(ResNetSIE().state_dict())
    assert {"conv1.weight", "layer1.0.downsample.0.weight", "layer4.1.bn2.running_var"} <= keys
    assert not any(k.startswith(("fc.", "avgpool")) for k in keys)
    deeper = build_backbone({**SIE18, "layers": [3, 4, 6, 3]}, (3, 64, 64))
    assert len(deeper.trunk.layer3) == 6
    with pytest.raises(ValueError, match="4 positive block counts"):
        ResNetSIE(layers=[2, 2, 2])
