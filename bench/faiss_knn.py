"""faiss (``equissl.eval.neighbours``) against brute-force torch for the evaluation stage's
neighbour searches, on random unit embeddings (DESIGN §5.2, issue 12 item 8).

    python bench/faiss_knn.py [--bank 100000] [--queries 10000] [--dim 256] [--k 20]
                              [--views 50] [--repeats 3] [--device cpu] [--threads N]
                              [--out FILE]

Two searches, each timed for both implementations in this run (one warm-up, then the
median of ``--repeats``), with the ratio torch / faiss printed:

* **k-NN** (the k-NN probe; PRE is the same search with k = 1): the ``k`` most similar of
  ``--bank`` embeddings for each of ``--queries`` queries. torch: queries in chunks of 1024,
  ``chunk @ bank.T`` then ``topk`` (one BLAS matmul per chunk, memory bounded).
* **MRR ranking** (the predictor probe): the bank is ``bank / views`` objects × ``views``
  views; one prediction per view is ranked among its own object's views. torch: per
  chunk of objects (2²⁴ similarities), one batched matmul ``[n, V, D] @ [n, D, V]``, and
  the rank as one plus the number of views scoring above the target.

Both sides get the same normalised float32 tensors, on the same device, and the same
threads (``--threads``, default all cores); results are checked to agree. Only the search
is timed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import torch
import torch.nn.functional as F
from torch import Tensor

from equissl.eval.neighbours import rank_of, search

CHUNK = 1024  # queries per matmul in the k-NN baseline
SIMS_PER_CHUNK = 1 << 24  # similarities per batched matmul in the ranking baseline


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, object]:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up, and its result."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    out = fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def torch_knn(queries: Tensor, bank: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` inner products, chunked matmul + topk."""
    vals, idx = [], []
    for start in range(0, len(queries), CHUNK):
        v, i = (queries[start : start + CHUNK] @ bank.T).topk(k, dim=1)
        vals.append(v)
        idx.append(i)
    return torch.cat(vals), torch.cat(idx)


def torch_ranks(pred: Tensor, emb: Tensor) -> Tensor:
    """1-based rank of view ``j`` among its object's views for prediction ``j``:
    ``pred, emb [N, V, D]`` -> ``[N·V]``."""
    out = []
    per = max(1, SIMS_PER_CHUNK // emb.shape[1] ** 2)
    for start in range(0, len(emb), per):
        sims = pred[start : start + per] @ emb[start : start + per].transpose(1, 2)
        target = sims.diagonal(dim1=1, dim2=2).unsqueeze(-1)
        out.append(1 + (sims > target).sum(-1).flatten())
    return torch.cat(out)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs (torch threads "
        f"{torch.get_num_threads()}, faiss OpenMP threads {faiss.omp_get_max_threads()}), "
        f"load average {load}; torch {torch.__version__}, faiss {faiss.__version__} "
        f"({faiss.get_num_gpus()} GPUs visible to faiss)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bank", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--views", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    ap.add_argument("--out", type=Path, default=None, help="also append the report here")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(args.bank, args.dim, generator=gen), dim=1).to(device)
    queries = F.normalize(torch.randn(args.queries, args.dim, generator=gen), dim=1).to(device)
    lines = [
        f"# bench/faiss_knn.py, {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine: {machine()}",
        f"device: {device}; medians of {args.repeats} repeats after one warm-up",
    ]

    t_faiss, res = timed(lambda: search(queries, bank, args.k, "ip"), args.repeats, device)
    t_torch, (vals, _) = timed(lambda: torch_knn(queries, bank, args.k), args.repeats, device)
    err = float((res.scores - vals).abs().max())
    lines += [
        f"k-NN: {args.queries} queries x {args.bank} bank x {args.dim} dims, k={args.k}",
        f"  faiss {t_faiss:.3f} s, torch chunked matmul+topk {t_torch:.3f} s, "
        f"torch/faiss = {t_torch / t_faiss:.2f}x (max |score diff| {err:.1e})",
    ]

    n = args.bank // args.views
    emb = bank[: n * args.views].view(n, args.views, args.dim)
    pred = F.normalize(emb + 0.3 * torch.randn_like(emb), dim=-1)
    rows = torch.arange(n * args.views).view(n, args.views)
    candidates = rows.repeat_interleave(args.views, dim=0)
    flat_pred, flat_emb = pred.reshape(-1, args.dim), emb.reshape(-1, args.dim)
    t_faiss_r, ranks_f = timed(
        lambda: rank_of(flat_pred, flat_emb, candidates, rows.reshape(-1), "ip"),
        args.repeats,
        device,
    )
    t_torch_r, ranks_t = timed(lambda: torch_ranks(pred, emb), args.repeats, device)
    agree = float((ranks_f.cpu() == ranks_t.cpu()).double().mean())
    lines += [
        f"MRR ranking: {n} objects x {args.views} views x {args.dim} dims "
        f"({n * args.views} predictions, each ranked among {args.views})",
        f"  faiss {t_faiss_r:.3f} s, torch batched matmul {t_torch_r:.3f} s, "
        f"torch/faiss = {t_torch_r / t_faiss_r:.2f}x (ranks agree on {agree:.4%})",
    ]
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
