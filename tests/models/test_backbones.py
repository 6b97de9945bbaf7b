import pytest
import torch
from torch import nn

from equissl.models.backbones import build_backbone, stacked_channels
from equissl.registries import BACKBONES

RESNET18 = {"impl": "timm", "name": "resnet18", "cifar_stem": False, "zero_init_residual": True}


def test_image_backbone_pooled_and_feature_map():
    net = build_backbone(RESNET18, (3, 32, 32))
    assert net.num_features == 512 and net(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    big = build_backbone(RESNET18, (3, 256, 256)).eval()
    x = torch.randn(1, 3, 256, 256)
    fmap = big.feature_map(x)
    assert fmap.shape == (1, 512, 8, 8)  # the capsule heads' input at 256 px
    torch.testing.assert_close(big(x), fmap.mean((2, 3)))


def test_cifar_stem():
    net = build_backbone({**RESNET18, "cifar_stem": True}, (5, 16, 16))
    assert net.trunk.conv1.stride == (1, 1) and isinstance(net.trunk.maxpool, nn.Identity)
    assert net(torch.randn(2, 5, 16, 16)).shape == (2, 512)


def test_pde_views_choose_the_input_channels():
    assert stacked_channels((3, 16, 64)) == 3  # 1-D window (t, x, u) as a 2-D image
    assert stacked_channels((5, 16, 32, 32)) == 80  # NS: (t, x, y, vx, vy) x 16 frames
    ns = build_backbone(RESNET18, (5, 16, 32, 32))
    assert ns.trunk.conv1.in_channels == 80
    views = torch.randn(2, 5, 16, 32, 32)
    assert ns(views).shape == (2, 512)
    # channel-major stacking: input channel c*16 + t is channel c of frame t
    torch.testing.assert_close(ns.adapt(views)[:, 2 * 16 + 5], views[:, 2, 5])
    with pytest.raises(ValueError, match="built for views"):
        ns(torch.randn(2, 5, 8, 32, 32))
    with pytest.raises(ValueError, match="no 2-D backbone input"):
        stacked_channels((3, 4, 4, 4, 4))


def test_unknown_backbone_is_named():
    assert "timm" in BACKBONES
    with pytest.raises(ValueError, match="nosuchnet"):
        build_backbone({**RESNET18, "name": "nosuchnet"}, (3, 32, 32))


def test_input_norm_standardises_every_stacked_channel():
    plain = build_backbone(RESNET18, (3, 16, 64))
    assert not hasattr(plain, "input_norm")  # off by default: the state dict is unchanged
    net = build_backbone({**RESNET18, "input_norm": True}, (5, 4, 8, 8))
    scale = torch.arange(1.0, 6.0).view(1, 5, 1, 1, 1) ** 3  # channels 1 … 125 in size
    views = 10 + torch.randn(64, 5, 4, 8, 8) * scale
    x = net.adapt(views)  # [B, 20, 8, 8], training mode: batch statistics
    assert x.shape == (64, 20, 8, 8) and net.input_norm.num_features == 20
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(20), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3)), torch.ones(20), atol=1e-2, rtol=0)
    assert not any(p.requires_grad for p in net.input_norm.parameters())  # no affine
