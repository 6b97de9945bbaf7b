"""Loss terms shared by methods, with batch statistics gathered across ranks.

The VICReg variance term is lightly's ``variance_loss`` (mean of ``relu(1 − sqrt(Var + 1e-4))``
per dimension). The covariance term is the same formula as lightly's ``covariance_loss``
(squared off-diagonal covariances summed, divided by the dimension; checked against it in
the tests) computed as ``Σ cov² − Σ diag²``: lightly indexes the off-diagonal entries with a
boolean mask, which costs ~15 % of a CPU training step at D = 2048. Every term is computed in
float32 with autocast off (:func:`float32`): under ``bf16-mixed`` the covariance matmul would
run in bf16, whose 8-bit mantissa resolves ``Σ cov² ≈ D`` only to steps of ~D/128 — larger
than the off-diagonal sum the term measures. They are applied to embeddings
all-gathered over every process (with gradients), so a 2-rank run computes the same value
as one process on the concatenated batch. The mean-entropy term (MEMAX) takes its batch
mean over the gathered batch in the same way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightly.loss.vicreg_loss import variance_loss
from lightly.utils.dist import gather
from torch import Tensor


def float32(term: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run a loss term with autocast disabled, on float32 copies of its half-precision tensor
    arguments (float32 and float64 inputs pass unchanged)."""

    @functools.wraps(term)
    def wrapper(*tensors: Tensor) -> Tensor:
        with torch.autocast(tensors[0].device.type, enabled=False):
            return term(
                *(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)
            )

    return wrapper


def gather_cat(x: Tensor) -> Tensor:
    """Concatenate ``x [B, ...]`` from every rank along dim 0 (autograd-aware); no-op alone."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return torch.cat(gather(x), dim=0)
    return x


@float32
def invariance_term(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error between ``[B, D]`` embeddings (per rank, as the references)."""
    return F.mse_loss(a, b)


@float32
def variance_term(x: Tensor) -> Tensor:
    """VICReg variance hinge of ``x [B, D]`` over the global batch."""
    return variance_loss(gather_cat(x))


@float32
def covariance_term(x: Tensor) -> Tensor:
    """VICReg covariance penalty of ``x [B, D]`` over the global batch."""
    x = gather_cat(x)
    x = x - x.mean(dim=0)
    cov = (x.T @ x) / (x.shape[0] - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / x.shape[1]


@float32
def mean_entropy_term(probs: Tensor) -> Tensor:
    """Mean-entropy maximisation (MEMAX; PAWS, MSN, EquiCaps) of ``probs [B, K]`` in (0, 1):
    ``log K − H(p̄)`` with ``p̄`` the mean over the global batch and
    ``H(p̄) = −Σ_k p̄_k log p̄_k`` (the capsule activations need not sum to one)."""
    mean = gather_cat(probs).mean(dim=0)
    return (mean * torch.log(mean)).sum() + math.log(mean.shape[0])
