"""Exact neighbour search for the evaluation stage (DESIGN §5.2), with faiss.

Every neighbour search of the probes (k-NN classification, the predictor's MRR, Hit@k and
PRE) goes through this module. Searches are exact (no index is trained): faiss on the GPU
when the tensors live on a CUDA device and faiss sees a GPU (``faiss-gpu``), faiss on the
CPU otherwise. Metrics:

* ``"ip"``: inner product, largest first;
* ``"cosine"``: inner product of L2-normalised vectors, largest first;
* ``"l2"``: squared Euclidean distance, smallest first.

Ties are returned in faiss's order; with float embeddings they occur only for duplicated
vectors.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import faiss
import faiss.contrib.torch_utils  # noqa: F401  (faiss.knn / knn_gpu accept torch tensors)
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Metric = Literal["ip", "cosine", "l2"]
METRICS: tuple[str, ...] = ("ip", "cosine", "l2")
#: the SIE scripts normalise by ``‖x‖ + 1e-8``; F.normalize's ``max(‖x‖, eps)`` is the same
#: up to vectors of norm ~1e-8
NORM_EPS = 1e-8


@dataclass
class Neighbours:
    """Result of a search: ``scores [Q, k]`` (similarity, or squared distance for ``l2``)
    and ``index [Q, k]`` int64 rows of the bank, best first."""

    scores: Tensor
    index: Tensor


def faiss_metric(metric: Metric) -> int:
    if metric not in METRICS:
        raise ValueError(f"unknown neighbour metric {metric!r}; choose from {list(METRICS)}")
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def prepare(x: Tensor, metric: Metric) -> Tensor:
    """``x [N, D]`` as contiguous float32, L2-normalised for ``cosine``."""
    x = x.float()
    if metric == "cosine":
        x = F.normalize(x, dim=-1, eps=NORM_EPS)
    return x.contiguous()


def on_gpu(x: Tensor) -> bool:
    """Whether a search over ``x`` runs on the GPU: ``x`` is on CUDA and faiss has GPUs."""
    return x.is_cuda and faiss.get_num_gpus() > 0


@functools.cache
def gpu_resources() -> faiss.StandardGpuResources:
    """One faiss GPU resource object per process (its temporary memory is reused)."""
    return faiss.StandardGpuResources()


@torch.inference_mode()
def search(queries: Tensor, bank: Tensor, k: int, metric: Metric = "cosine") -> Neighbours:
    """The ``k`` nearest bank vectors of every query, exact.

    Args:
        queries: ``[Q, D]``.
        bank: ``[B, D]``, on the device of ``queries``.
        k: neighbours per query, capped at ``B``.
        metric: ``ip``, ``cosine`` or ``l2`` (see the module docstring).
    Returns:
        :class:`Neighbours` with ``[Q, min(k, B)]`` scores and bank rows, on the device of
        ``queries``.
    """
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(
            f"search needs queries [Q, D] and bank [B, D], got {tuple(queries.shape)} "
            f"and {tuple(bank.shape)}"
        )
    k = min(int(k), bank.shape[0])
    kind = faiss_metric(metric)
    device = queries.device
    q, b = prepare(queries, metric), prepare(bank.to(device), metric)
    if on_gpu(q):
        scores, index = faiss.knn_gpu(
            gpu_resources(), q, b, k, metric=kind, device=q.device.index or 0
        )
    else:
        scores, index = faiss.knn(q.cpu(), b.cpu(), k, metric=kind)
    return Neighbours(scores.to(device), index.to(device))


@torch.inference_mode()
def search_subsets(
    queries: Tensor, bank: Tensor, candidates: Tensor, metric: Metric = "cosine"
) -> Neighbours:
    """Sort each query's own candidate bank rows, exact (faiss ``*_by_idx``, on the CPU:
    faiss has no GPU version; with tens of candidates per query this is cheap).

    Args:
        queries: ``[Q, D]``.
        bank: ``[B, D]``.
        candidates: ``[Q, C]`` int64 rows of ``bank`` each query is compared with.
        metric: ``ip``, ``cosine`` or ``l2``.
    Returns:
        :class:`Neighbours` ``[Q, C]``: every candidate of each query, best first (``index``
        holds bank rows), on the device of ``queries``.
    """
    if candidates.ndim != 2 or candidates.shape[0] != queries.shape[0]:
        raise ValueError(
            f"candidates must be [Q, C] with Q={queries.shape[0]}, got {tuple(candidates.shape)}"
        )
    kind = faiss_metric(metric)
    q = prepare(queries, metric).cpu().numpy()
    b = prepare(bank, metric).cpu().numpy()
    subset = candidates.cpu().to(torch.int64).contiguous().numpy()
    (nq, d), (nb, _), c = q.shape, b.shape, subset.shape[1]
    scores = np.empty((nq, c), dtype=np.float32)
    index = np.empty((nq, c), dtype=np.int64)
    by_idx = faiss.knn_L2sqr_by_idx if kind == faiss.METRIC_L2 else faiss.knn_inner_products_by_idx
    ptr = faiss.swig_ptr
    # The stride of ``subset`` is passed explicitly: with faiss 1.15's Python default (-1)
    # every row after the first is read wrongly.
    by_idx(ptr(q), ptr(b), ptr(subset), d, nq, nb, c, c, ptr(scores), ptr(index), c)
    scores, index = torch.from_numpy(scores), torch.from_numpy(index)
    return Neighbours(scores.to(queries.device), index.to(queries.device))


def rank_of(
    queries: Tensor, bank: Tensor, candidates: Tensor, target: Tensor, metric: Metric = "cosine"
) -> Tensor:
    """1-based rank of bank row ``target[q]`` among the candidates of query ``q`` sorted by
    ``metric`` (SIE ``eval_MRR_Hk.py``: position in ``argsort(-similarity)`` plus one).

    Args:
        queries: ``[Q, D]``; bank ``[B, D]``; candidates ``[Q, C]`` bank rows (each row
            holding ``target[q]`` once); target ``[Q]`` bank rows.
    Returns:
        ``[Q]`` int64 ranks in ``[1, C]``.
    """
    found = search_subsets(queries, bank, candidates, metric).index == target.to(
        queries.device
    ).unsqueeze(1)
    if not bool(found.any(dim=1).all()):
        raise ValueError("every query's candidates must contain its target")
    return found.int().argmax(dim=1) + 1
