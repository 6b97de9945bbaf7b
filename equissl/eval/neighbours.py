"""Neighbour search for the evaluation stage (docs/retrieval.md), with faiss.

Every neighbour search of the probes (k-NN classification, the predictor's MRR, Hit@k and
PRE) goes through this module: faiss on the GPU when the tensors live on a CUDA device and
faiss sees a GPU (``faiss-gpu``), faiss on the CPU otherwise. Searches over a bank are
exact by default; :class:`IndexSpec` names the index (:data:`INDEXES`):

* ``"flat"``: exact search (no index is trained), the published protocols;
* ``"ivf"``: approximate search through an inverted file (``IndexIVFFlat``, Jégou et al.
  2011; faiss ``index_factory("IVF<nlist>,Flat")``): k-means on a bounded subsample of the
  bank splits it into ``nlist`` lists, and each query scans only the ``nprobe`` lists of its
  nearest centroids. ``nprobe >= nlist`` scans every list and is exact again.

Sorting each query's own candidates (:func:`search_subsets`, the MRR ranking among one
object's views) is always exact. Metrics:

* ``"ip"``: inner product, largest first;
* ``"cosine"``: inner product of L2-normalised vectors, largest first;
* ``"l2"``: squared Euclidean distance, smallest first.

Ties are returned in faiss's order; with float embeddings they occur only for duplicated
vectors. An ``ivf`` search that finds fewer than ``k`` bank vectors in its ``nprobe`` lists
pads its row with index ``-1`` and score ``-inf`` (``+inf`` for ``l2``).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Literal

import faiss
import faiss.contrib.torch_utils  # noqa: F401  (faiss.knn / knn_gpu accept torch tensors)
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# NORM_EPS: the SIE scripts normalise by ``‖x‖ + 1e-8``; F.normalize's ``max(‖x‖, eps)`` is
# the same up to vectors of norm ~1e-8 (one constant with the monitor's exact search)
from equissl.scores import NORM_EPS as NORM_EPS

Metric = Literal["ip", "cosine", "l2"]
METRICS: tuple[str, ...] = ("ip", "cosine", "l2")


INDEXES: tuple[str, ...] = ("flat", "ivf")
#: faiss's k-means needs 39 training points per centroid; ``train_points`` = 0 takes 64
MIN_POINTS_PER_LIST = 39
POINTS_PER_LIST = 64


@dataclass(frozen=True)
class IndexSpec:
    """How a bank is searched (see the module docstring).

    For ``ivf``: ``nlist`` inverted lists (0: ``√B`` for a bank of ``B`` vectors), at most
    one per 39 bank vectors; k-means on ``train_points`` bank vectors (0: 64 per list)
    drawn with ``seed``, which also seeds faiss's k-means, so a search is repeatable;
    ``nprobe`` lists scanned per query (capped at ``nlist``). ``flat`` ignores them.

    ``√B`` rather than faiss's guideline ``4·√N … 16·√N`` (made for millions of vectors,
    where search dominates): an evaluation builds its index every time, and at 100 k × 256
    the build of ``4·√B`` lists cost more than the exact search it replaces
    (``bench/faiss_knn.py``).
    """

    kind: str = "flat"
    nlist: int = 0
    nprobe: int = 32
    train_points: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INDEXES:
            raise ValueError(f"unknown neighbour index {self.kind!r}; choose from {list(INDEXES)}")
        for name, low in (("nlist", 0), ("nprobe", 1), ("train_points", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"index option {name} must be an integer >= {low}, got {value!r}")

    def lists(self, bank_size: int) -> int:
        """Inverted lists for a bank of ``bank_size`` vectors (see the class docstring)."""
        wanted = self.nlist or round(math.sqrt(bank_size))
        return max(1, min(wanted, bank_size // MIN_POINTS_PER_LIST))

    def training_size(self, bank_size: int, nlist: int) -> int:
        """Bank vectors the k-means is trained on."""
        return min(bank_size, self.train_points or POINTS_PER_LIST * nlist)


EXACT = IndexSpec()


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


class BankIndex:
    """A bank prepared for repeated searches: build once, search query chunks.

    Args:
        bank: ``[B, D]``; searched on its own device (see :func:`on_gpu`).
        metric: ``ip``, ``cosine`` or ``l2`` (see the module docstring).
        spec: the index (:class:`IndexSpec`).
    """

    def __init__(self, bank: Tensor, metric: Metric, spec: IndexSpec) -> None:
        if bank.ndim != 2:
            raise ValueError(f"the bank must be [B, D], got {tuple(bank.shape)}")
        self.kind = faiss_metric(metric)
        self.metric, self.spec = metric, spec
        self.size, self.dim = bank.shape
        self.device = bank.device

    @torch.inference_mode()
    def search(self, queries: Tensor, k: int) -> Neighbours:
        """The ``k`` nearest bank vectors of every query ``[Q, D]`` (``k`` capped at ``B``):
        :class:`Neighbours` ``[Q, min(k, B)]`` on the device of ``queries``."""
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(
                f"search needs queries [Q, D] and bank [B, D], got {tuple(queries.shape)} "
                f"and {(self.size, self.dim)}"
            )
        k = min(int(k), self.size)
        q = prepare(queries.to(self.device), self.metric)
        scores, index = self._search(q, k)
        # faiss pads with ∓FLT_MAX, or ∓inf, depending on the index and device
        empty = float("inf") if self.kind == faiss.METRIC_L2 else float("-inf")
        scores = scores.masked_fill(index < 0, empty)
        return Neighbours(scores.to(queries.device), index.to(queries.device))

    def _search(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class FlatIndex(BankIndex):
    """Exact search: every query against every bank vector (faiss ``knn`` / ``knn_gpu``)."""

    def __init__(self, bank: Tensor, metric: Metric, spec: IndexSpec) -> None:
        super().__init__(bank, metric, spec)
        self.bank = prepare(bank, metric)

    def _search(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        if on_gpu(q):
            dev = q.device.index or 0
            return faiss.knn_gpu(gpu_resources(), q, self.bank, k, metric=self.kind, device=dev)
        return faiss.knn(q.cpu(), self.bank.cpu(), k, metric=self.kind)


class IVFIndex(BankIndex):
    """Inverted-file search (``IVF<nlist>,Flat``): k-means on at most ``train_points`` bank
    vectors drawn with ``seed``, every bank vector added to its centroid's list, ``nprobe``
    lists scanned per query. Trained and searched on the GPU when :func:`on_gpu`.

    On the CPU the lists are scanned list by list rather than query by query (faiss's
    ``contrib.big_batch_search`` scheme): every query probing a list is compared with it in
    one BLAS product (numpy's ``@``), and a faiss ``ResultHeap`` keeps the best ``k`` of each
    query's rows. The neighbours are those of ``index.search``; a batch of evaluation
    queries runs several times faster, as ``index.search`` scans each list once per query
    with no matrix product, and 1.8x faster than per-list faiss ``knn`` calls (their own
    product and heap, ``bench/results/faiss_knn_cpu.txt``). On the CPU the lists live here
    (:meth:`file_into_lists`), not in faiss, which holds the trained centroids only.
    """

    ADD_CHUNK = 65536  # bank vectors prepared (and filed into lists) at once

    def __init__(self, bank: Tensor, metric: Metric, spec: IndexSpec) -> None:
        super().__init__(bank, metric, spec)
        b, d = bank.shape
        self.nlist = spec.lists(b)
        g = torch.Generator().manual_seed(spec.seed)
        sample = torch.randperm(b, generator=g)[: spec.training_size(b, self.nlist)]
        self.gpu = on_gpu(bank)
        bank = bank if self.gpu else bank.cpu()
        index = faiss.index_factory(d, f"IVF{self.nlist},Flat", self.kind)
        spherical = index.cp.spherical  # the factory's choice for inner products
        if self.gpu:
            index = faiss.index_cpu_to_gpu(gpu_resources(), bank.device.index or 0, index)
        index.cp.seed, index.cp.spherical = spec.seed, spherical
        index.train(prepare(bank[sample.to(bank.device)], metric))
        index.nprobe = self.nprobe = min(spec.nprobe, self.nlist)
        self.index = index
        self.lists: list[tuple[np.ndarray, np.ndarray]] = []
        if self.gpu:  # prepared and added chunk by chunk (``prepare`` works row by row)
            for start in range(0, b, self.ADD_CHUNK):
                index.add(prepare(bank[start : start + self.ADD_CHUNK], metric))
        else:
            self.lists = self.file_into_lists(bank)

    def file_into_lists(self, bank: Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        """Bank rows ``[n]`` and prepared vectors ``[n, D]`` of every list, as faiss's ``add``
        files them (the quantizer's nearest centroid; bank order within a list), held in one
        ``[B, D]`` array sized once. faiss's own lists grow as ``std::vector`` s, whose
        capacity doubles: ~1.6 x the bank (measured), which the CPU search does not need."""
        b, chunks = len(bank), range(0, len(bank), self.ADD_CHUNK)

        def prepared(start: int) -> np.ndarray:
            return prepare(bank[start : start + self.ADD_CHUNK], self.metric).numpy()

        assigned = np.empty(b, np.int64)
        for start in chunks:
            x = prepared(start)
            assigned[start : start + len(x)] = self.index.quantizer.assign(x, 1).ravel()
        rows = np.argsort(assigned, kind="stable")  # bank rows, list by list
        bounds = np.searchsorted(assigned[rows], np.arange(self.nlist + 1))
        slot = np.empty(b, np.int64)
        slot[rows] = np.arange(b)
        del assigned
        vectors = np.empty((b, self.dim), np.float32)
        for start in chunks:  # prepared again: cheaper than a second [B, D] copy to permute
            x = prepared(start)
            vectors[slot[start : start + len(x)]] = x
        return [(rows[lo:hi], vectors[lo:hi]) for lo, hi in itertools.pairwise(bounds)]

    def score(self, xq: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """Scores ``[n, m]`` of queries ``xq [n, D]`` against list vectors ``xb [m, D]``:
        inner products, or squared distances for ``l2``."""
        products = xq @ xb.T
        if self.kind != faiss.METRIC_L2:
            return products
        # ‖q‖² + ‖b‖² - 2 q·b, clamped: rounding can make it slightly negative
        sq = (xq * xq).sum(1, keepdims=True) + (xb * xb).sum(1)[None] - 2 * products
        return np.maximum(sq, 0, out=sq)

    def _search(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        if self.gpu:
            return self.index.search(q, k)
        xq = q.cpu().numpy()
        _, probed = self.index.quantizer.search(xq, self.nprobe)  # [Q, nprobe] lists
        flat = probed.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(self.nlist + 1))
        heap = faiss.ResultHeap(len(xq), k, keep_max=self.kind != faiss.METRIC_L2)
        for i, (ids, xb) in enumerate(self.lists):
            rows = order[bounds[i] : bounds[i + 1]] // self.nprobe
            if len(rows) == 0 or len(ids) == 0:
                continue
            scores = self.score(xq[rows], xb)  # [n, list size]
            heap.add_result_subset(rows, scores, np.broadcast_to(ids, scores.shape).copy())
        heap.finalize()
        return torch.from_numpy(heap.D), torch.from_numpy(heap.I)


#: index kind -> its class (:class:`IndexSpec` ``kind``)
INDEX_TYPES: dict[str, type[BankIndex]] = {"flat": FlatIndex, "ivf": IVFIndex}


@torch.inference_mode()
def build_index(bank: Tensor, metric: Metric = "cosine", spec: IndexSpec = EXACT) -> BankIndex:
    """``bank [B, D]`` prepared for searches with ``metric`` through the index ``spec``."""
    return INDEX_TYPES[spec.kind](bank, metric, spec)


def search(
    queries: Tensor, bank: Tensor, k: int, metric: Metric = "cosine", spec: IndexSpec = EXACT
) -> Neighbours:
    """The ``k`` nearest bank vectors of every query (exact unless ``spec`` says ``ivf``).

    Args:
        queries: ``[Q, D]``.
        bank: ``[B, D]``, searched on the device of ``queries``.
        k: neighbours per query, capped at ``B``.
        metric: ``ip``, ``cosine`` or ``l2`` (see the module docstring).
        spec: the index; build it once with :func:`build_index` to search many chunks.
    Returns:
        :class:`Neighbours` with ``[Q, min(k, B)]`` scores and bank rows, on the device of
        ``queries``.
    """
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(
            f"search needs queries [Q, D] and bank [B, D], got {tuple(queries.shape)} "
            f"and {tuple(bank.shape)}"
        )
    return build_index(bank.to(queries.device), metric, spec).search(queries, k)


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
