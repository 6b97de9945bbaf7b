"""Collapse monitor of pretraining: RankMe (Garrido, Balestriero, Najman, LeCun, ICML 2023),
the effective rank of a batch of representations,

    RankMe(Z) = exp(−Σₖ pₖ log pₖ),  pₖ = σₖ / Σⱼ σⱼ + ε,

with σ the singular values of ``Z [B, D]``: about ``min(B, D)`` for a representation that
uses every direction, 1 for a collapsed one (every row equal up to scale).
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-7  # the paper's ε


@torch.no_grad()
def rankme(z: Tensor) -> Tensor:
    """RankMe of ``z [B, D]`` (float32 SVD whatever the input dtype); a 0-d tensor."""
    s = torch.linalg.svdvals(z.detach().float())
    p = s / s.sum().clamp_min(1e-12) + EPS
    return torch.exp(-(p * p.log()).sum())
