"""Collapse monitors of pretraining.

RankMe (Garrido, Balestriero, Najman, LeCun, ICML 2023), the effective rank of a batch of
representations,

    RankMe(Z) = exp(−Σₖ pₖ log pₖ),  pₖ = σₖ / Σⱼ σⱼ + ε,

with σ the singular values of ``Z [B, D]``: about ``min(B, D)`` for a representation that
uses every direction, 1 for a collapsed one (every row equal up to scale).

The per-dimension standard deviation of ``Z`` (:func:`dimension_std`): a dimension whose
std falls to 0 carries nothing (dimensional collapse); all of them at 0 is complete collapse.
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


@torch.no_grad()
def dimension_std(z: Tensor) -> tuple[float, float]:
    """``(min, mean)`` over the dimensions of ``z [N, D]`` of each dimension's standard
    deviation over the rows (float32, unbiased; ``N >= 2``)."""
    std = z.detach().float().std(dim=0)
    return float(std.min()), float(std.mean())
