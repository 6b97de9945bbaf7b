"""Heads shared by methods: VICReg/SIE projectors and the SIE hypernetwork predictor."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightly.models.modules.heads import ProjectionHead
from torch import Tensor, nn


def projector(in_dim: int, dims: Sequence[int]) -> nn.Module:
    """VICReg-style expander: (Linear-BN-ReLU) for each hidden width, then Linear without bias.

    ``projector(256, [1024, 1024, 1024])`` is SIE's 256→1024→1024→1024 head.
    Input ``[B, in_dim]``, output ``[B, dims[-1]]``.
    """
    if not dims:
        raise ValueError("a projector needs at least one output width")
    widths = [in_dim, *dims]
    blocks: list[tuple] = [
        (widths[i], widths[i + 1], nn.BatchNorm1d(widths[i + 1]), nn.ReLU(inplace=True))
        for i in range(len(widths) - 2)
    ]
    blocks.append((widths[-2], widths[-1], None, None, False))
    return ProjectionHead(blocks)


class HypernetPredictor(nn.Module):
    """SIE's predictor: a matrix that depends linearly on the action, applied to ``z``.

    ``W(a) = Σ_k a_k B_k`` with learnt ``B_k ∈ R^{D×D}`` (a bias-free linear hypernetwork),
    and the prediction is ``W(a) · z``. Instead of materialising ``W(a)`` per sample
    (``B × D × D`` floats, 4 GiB at B = D = 1024) we compute ``B_k z`` for all ``k`` and mix
    them with ``a`` — the same function with ``B × A × D`` memory.

    Args:
        dim: ``D``, width of ``z`` (and of the prediction).
        action_dim: ``A``, width of the action (4 for a quaternion, 6 for RotColor).
    Shapes: ``z [B, D]``, ``action [B, A]`` -> ``[B, D]``.
    """

    def __init__(self, dim: int, action_dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.action_dim = action_dim
        # Same parametrisation as a bias-free nn.Linear(action_dim, dim * dim).
        self.hypernet = nn.Linear(action_dim, dim * dim, bias=False)

    def matrix(self, action: Tensor) -> Tensor:
        """``W(a)`` as ``[B, D, D]`` (rows index the output) — for tests and analysis."""
        return self.hypernet(action).view(-1, self.dim, self.dim)

    def forward(self, z: Tensor, action: Tensor) -> Tensor:
        basis = self.hypernet.weight.view(self.dim, self.dim, self.action_dim)  # [out, in, A]
        per_k = torch.einsum("oik,bi->bko", basis, z)  # [B, A, D]
        return torch.einsum("bko,bk->bo", per_k, action.to(z.dtype))
