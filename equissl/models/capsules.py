"""Capsule projector of EquiCaps (Konstantinou et al., ICCV 2025; AberdeenML/EquiCaps
``src/sr_capsnet.py``): primary capsules on a backbone's feature map and one self-routing
layer (SR-CapsNet, Hahn, Pyeon, Kim, NeurIPS 2019) whose kernel covers the whole map.

A capsule is an activation ``a ∈ (0, 1)`` and a pose of ``C`` values (a ``p × p`` matrix,
``C = p²``). Self-routing has no iterations: each input capsule ``i`` routes itself to the
output capsules ``j`` with ``r_ij = softmax_j(W2_i · u_i + b2_ij)``, votes ``W1_ij u_i`` for
their poses, and

    a_j = Σ_i a_i r_ij / Σ_i a_i,        pose_j = Σ_i (a_i r_ij / Σ_k a_k r_kj) W1_ij u_i.

Since ``Σ_j r_ij = 1``, the output activations sum to one over the outputs (and are all
``1/K`` at initialisation, where ``W2 = b2 = 0``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


class PrimaryCapsules(nn.Module):
    """Capsules from a feature map: 3×3 convolutions (no bias) to ``num_caps`` activation
    maps (BN, sigmoid) and ``num_caps × pose_dim`` pose maps (BN), as ``CapsNetNoStem``.

    Args:
        in_channels: ``D`` of the feature map (512 for a ResNet-18).
        num_caps: ``A``, capsule types per position (32).
        pose_dim: ``C``, values per pose (9 for 3×3, 16 for 4×4).
    Shapes: ``[B, D, h, w]`` -> activations ``[B, A, h, w]``, poses ``[B, A·C, h, w]``
    (channel ``a·C + c`` is value ``c`` of capsule ``a``).
    """

    def __init__(self, in_channels: int, num_caps: int, pose_dim: int) -> None:
        super().__init__()
        self.conv_act = nn.Conv2d(in_channels, num_caps, 3, padding=1, bias=False)
        self.conv_pose = nn.Conv2d(in_channels, num_caps * pose_dim, 3, padding=1, bias=False)
        self.bn_act = nn.BatchNorm2d(num_caps)
        self.bn_pose = nn.BatchNorm2d(num_caps * pose_dim)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        act = torch.sigmoid(self.bn_act(self.conv_act(features)))
        return act, self.bn_pose(self.conv_pose(features))


class SelfRouting(nn.Module):
    """One self-routing layer with the kernel the size of the whole ``h × w`` map (stride 1,
    no padding, one output position): ``N = h·w·A`` input capsules to ``K`` outputs.

    Args:
        num_in: ``N`` input capsules.
        num_out: ``K`` output capsules.
        in_dim, out_dim: pose widths ``C`` and ``D``.
    Parameters: pose transforms ``W1 [N, K, D, C]`` (normal, std √(2 / (K·D·C)): PyTorch's
    ``kaiming_normal_`` on the reference's ``[N, K·D, C]`` layout), routing weights
    ``W2 [N, K, C]`` and bias ``b2 [N, K]``, both zero-initialised (uniform routing at start).
    """

    def __init__(self, num_in: int, num_out: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.num_in, self.num_out, self.in_dim, self.out_dim = num_in, num_out, in_dim, out_dim
        std = math.sqrt(2.0 / (num_out * out_dim * in_dim))
        self.W1 = nn.Parameter(torch.randn(num_in, num_out, out_dim, in_dim) * std)
        self.W2 = nn.Parameter(torch.zeros(num_in, num_out, in_dim))
        self.b2 = nn.Parameter(torch.zeros(num_in, num_out))

    def routing(self, pose: Tensor) -> Tensor:
        """Routing coefficients ``r [B, N, K]`` (softmax over the outputs) of poses
        ``[B, N, C]``."""
        logits = torch.einsum("nkc,bnc->bnk", self.W2, pose) + self.b2
        return torch.softmax(logits, dim=-1)

    def forward(self, act: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        """``act [B, N]`` in (0, 1), ``pose [B, N, C]`` -> ``act [B, K]`` in (0, 1),
        ``pose [B, K, D]``."""
        r = self.routing(pose)
        ar = act.unsqueeze(-1) * r  # [B, N, K]
        ar_sum = ar.sum(dim=1)  # [B, K]
        votes = torch.einsum("nkdc,bnc->bnkd", self.W1, pose)  # [B, N, K, D]
        pose_out = torch.einsum("bnk,bnkd->bkd", ar / ar_sum.unsqueeze(1), votes)
        return ar_sum / act.sum(dim=1, keepdim=True), pose_out


class CapsuleProjector(nn.Module):
    """Primary capsules + one self-routing layer over the whole feature map (EquiCaps'
    projector, ``CapsNetNoStem``).

    Args:
        in_channels: ``D`` of the feature map.
        map_size: ``(h, w)`` of the feature map (8 × 8 for a ResNet-18 at 256 px).
        num_caps: capsules per primary position and output capsules (32, ``--mlp …-32``).
        pose_size: ``p``: poses are ``p × p`` matrices (3 or 4).
        activation_checkpoint: recompute the routing layer in the backward pass instead
            of storing its ``[B, N, K, p²]`` votes (the reference wraps it the same way).
    Shapes: ``[B, D, h, w]`` -> activations ``[B, K]`` in (0, 1), poses ``[B, K, p, p]``.
    """

    def __init__(
        self,
        in_channels: int,
        map_size: tuple[int, int],
        num_caps: int = 32,
        pose_size: int = 3,
        activation_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.num_caps, self.pose_size = num_caps, pose_size
        self.map_size = tuple(int(s) for s in map_size)
        pose_dim = pose_size * pose_size
        self.primary = PrimaryCapsules(in_channels, num_caps, pose_dim)
        num_in = self.map_size[0] * self.map_size[1] * num_caps
        self.routing = SelfRouting(num_in, num_caps, pose_dim, pose_dim)
        self.activation_checkpoint = activation_checkpoint

    def flatten(self, act: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        """Primary maps ``[B, A, h, w]``, ``[B, A·C, h, w]`` -> capsules ``[B, N]``,
        ``[B, N, C]`` ordered (position, type)."""
        b, a, h, w = act.shape
        if (h, w) != self.map_size:
            raise ValueError(f"capsule projector built for {self.map_size} maps, got {(h, w)}")
        pose = pose.view(b, a, -1, h * w).permute(0, 3, 1, 2).reshape(b, h * w * a, -1)
        return act.flatten(2).transpose(1, 2).reshape(b, h * w * a), pose

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        act, pose = self.flatten(*self.primary(features))
        if self.activation_checkpoint and self.training and torch.is_grad_enabled():
            act, pose = checkpoint(self.routing, act, pose, use_reentrant=False)
        else:
            act, pose = self.routing(act, pose)
        return act, pose.view(-1, self.num_caps, self.pose_size, self.pose_size)
