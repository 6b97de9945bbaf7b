"""faiss (``equissl.eval.neighbours``) against brute-force torch for the evaluation stage's
neighbour searches (docs/retrieval.md, "Speed"; issue 12 item 8).

    python bench/faiss_knn.py [--bank 100000] [--queries 20000] [--dim 256] [--k 20]
                              [--views 50] [--classes 100] [--data clustered|uniform]
                              [--nprobe 16,32] [--repeats 3] [--warmup 0] [--device cpu]
                              [--threads N] [--out FILE] [--json FILE]

Two searches, timed in this run (``--warmup`` untimed runs, then the median of
``--repeats``, the implementations interleaved within each repeat), with the ratio
torch / faiss printed:

* **k-NN** (the k-NN probe; PRE is the same search with k = 1): the ``k`` most similar of
  ``--bank`` embeddings for each of ``--queries`` queries, as a k-NN evaluation (bank = the
  training views, queries = the validation views). torch: queries in chunks of 1024,
  ``chunk @ bank.T`` then ``topk`` (one BLAS matmul per chunk, memory bounded); faiss
  exact (``index: flat``); faiss IVF (``index: ivf`` at its defaults, and each
  ``--nprobe``), its k-means training and list building included in its time. For IVF
  also its recall@k against the exact neighbours and the weighted k-NN top-1 (T = 0.07)
  it gives against the exact search's. ``--data clustered`` (default) draws a labelled
  embedding shaped like a 3DIEBench one: ``--classes`` classes, objects of ``--views``
  views, class, object and view offsets with a power-law spectrum (variance ∝ 1/i, the
  α ≈ 1 of well-trained self-supervised representations, Agrawal et al. 2022), the
  queries from other objects than the bank's; ``--data uniform`` draws i.i.d. unit vectors
  (no structure: the worst case for IVF, classes random).
* **MRR ranking** (the predictor probe): the bank is ``bank / views`` objects × ``views``
  views; one prediction per view is ranked among its own object's views. torch: per
  chunk of objects (2²⁴ similarities), one batched matmul ``[n, V, D] @ [n, D, V]``, and
  the rank as one plus the number of views scoring above the target.

Both sides get the same normalised float32 tensors, on the same device, and the same
threads (``--threads``, default all cores); exact results are checked to agree. Only the
search is timed (with IVF's build).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

# isort: off
import equissl.eval  # noqa: F401  (chooses faiss's OpenBLAS kernels before faiss loads)
import faiss

# isort: on
import torch
import torch.nn.functional as F
from torch import Tensor

from equissl.eval.neighbours import IndexSpec, build_index, rank_of, search
from equissl.eval.openblas import loaded_cores
from equissl.eval.probes.knn import knn_vote

CHUNK = 1024  # queries per matmul in the k-NN baseline
SIMS_PER_CHUNK = 1 << 24  # similarities per batched matmul in the ranking baseline
TEMPERATURE = 0.07  # the k-NN probe's
#: standard deviations of the clustered data's class centres, object and view offsets
CLASS_STD, OBJECT_STD, VIEW_STD = 1.0, 1.0, 1.5


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device
) -> tuple[dict[str, float], dict[str, object]]:
    """Median seconds of each ``fn`` over ``repeats`` rounds (each round runs every ``fn``
    once, in turn) after ``warmup`` untimed rounds, and each one's last result."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {name: [] for name in fns}
    out: dict[str, object] = {}
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            out[name] = fn()
            sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, out


def clustered(
    objects: int, views: int, classes: int, dim: int, gen: torch.Generator, centres: Tensor
) -> tuple[Tensor, Tensor]:
    """``objects · views`` unit embeddings ``[N, dim]`` and their classes ``[N]``: class
    centre + object offset + view offset, each with the power-law spectrum of ``centres``."""
    spectrum = torch.arange(1, dim + 1).float().rsqrt()
    spectrum = spectrum / spectrum.norm()
    cls = torch.arange(objects) % classes
    obj = centres[cls] + OBJECT_STD * torch.randn(objects, dim, generator=gen) * spectrum
    x = obj[:, None] + VIEW_STD * torch.randn(objects, views, dim, generator=gen) * spectrum
    return F.normalize(x.reshape(-1, dim), dim=1), cls.repeat_interleave(views)


def embeddings(args: argparse.Namespace) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bank, bank classes, queries, query classes of ``--data``."""
    gen = torch.Generator().manual_seed(0)
    if args.data == "uniform":
        bank = F.normalize(torch.randn(args.bank, args.dim, generator=gen), dim=1)
        queries = F.normalize(torch.randn(args.queries, args.dim, generator=gen), dim=1)
        labels = torch.randint(args.classes, (args.bank + args.queries,), generator=gen)
        return bank, labels[: args.bank], queries, labels[args.bank :]
    spectrum = torch.arange(1, args.dim + 1).float().rsqrt()
    centres = CLASS_STD * torch.randn(args.classes, args.dim, generator=gen) * spectrum
    centres = centres / spectrum.norm()
    bank, bank_labels = clustered(
        math.ceil(args.bank / args.views), args.views, args.classes, args.dim, gen, centres
    )
    queries, query_labels = clustered(
        math.ceil(args.queries / args.views), args.views, args.classes, args.dim, gen, centres
    )
    return (
        bank[: args.bank],
        bank_labels[: args.bank],
        queries[: args.queries],
        query_labels[: args.queries],
    )


def recall_at_k(got: Tensor, want: Tensor) -> float:
    """Fraction of the exact neighbours ``want [Q, k]`` among ``got [Q, k]``, in chunks."""
    found = 0
    for start in range(0, len(want), 4096):
        g, w = got[start : start + 4096], want[start : start + 4096]
        found += int((g[:, :, None] == w[:, None, :]).any(1).sum())
    return found / want.numel()


def knn_top1(scores: Tensor, index: Tensor, bank_labels: Tensor, labels: Tensor) -> float:
    """Weighted k-NN top-1 (the probe's vote) of neighbours ``[Q, k]``."""
    classes = int(max(bank_labels.max(), labels.max())) + 1
    votes = knn_vote(scores.cpu(), bank_labels[index.cpu()], classes, TEMPERATURE)
    return float((votes.argmax(1) == labels).double().mean())


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
        f"({faiss.get_num_gpus()} GPUs visible to faiss); OpenBLAS kernels "
        f"{loaded_cores() or 'n/a'} (equissl.eval.openblas)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bank", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--views", type=int, default=50)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--data", choices=("clustered", "uniform"), default="clustered")
    ap.add_argument("--nprobe", default="16", help="IVF nprobe values besides the default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    ap.add_argument("--out", type=Path, default=None, help="also append the report here")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    device = torch.device(args.device)
    bank, bank_labels, queries, query_labels = embeddings(args)
    bank, queries = bank.to(device), queries.to(device)
    default = IndexSpec("ivf")
    specs = {"ivf": default} | {
        f"ivf nprobe={n}": IndexSpec("ivf", nprobe=int(n))
        for n in args.nprobe.split(",")
        if n and int(n) != default.nprobe
    }
    lines = [
        f"# bench/faiss_knn.py, {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine: {machine()}",
        f"device: {device}; medians of {args.repeats} interleaved repeats after "
        f"{args.warmup} warm-up",
    ]

    def ivf(spec: IndexSpec) -> Callable[[], object]:
        return lambda: build_index(bank, "ip", spec).search(queries, args.k)

    times, res = interleaved(
        {
            "torch": lambda: torch_knn(queries, bank, args.k),
            "faiss flat": lambda: search(queries, bank, args.k, "ip"),
            **{name: ivf(spec) for name, spec in specs.items()},
            "ivf build": lambda: build_index(bank, "ip", default),
        },
        args.repeats,
        args.warmup,
        device,
    )
    vals, idx = res["torch"]
    exact = res["faiss flat"]
    top1_exact = knn_top1(exact.scores, exact.index, bank_labels, query_labels)
    top1_torch = knn_top1(vals, idx, bank_labels, query_labels)
    index = build_index(bank, "ip", default)
    knn_report = {
        "data": args.data,
        "queries": args.queries,
        "bank": args.bank,
        "dim": args.dim,
        "k": args.k,
        "seconds": times,
        "torch_over": {name: times["torch"] / t for name, t in times.items()},
        "max_abs_score_diff_flat_vs_torch": float((exact.scores - vals).abs().max()),
        "knn_top1": {"torch": top1_torch, "faiss flat": top1_exact},
        "recall_at_k": {},
        "ivf": {
            "nlist": index.nlist,
            "train_points": default.training_size(args.bank, index.nlist),
        },
    }
    lines += [
        f"k-NN ({args.data} data): {args.queries} queries x {args.bank} bank x {args.dim} dims, "
        f"k={args.k}; IVF nlist {index.nlist} (sqrt(bank)), k-means on "
        f"{knn_report['ivf']['train_points']} bank vectors, build included "
        f"(build alone {times['ivf build']:.3f} s)",
        f"  torch chunked matmul+topk {times['torch']:.3f} s (k-NN top-1 {top1_torch:.4f})",
        f"  faiss flat {times['faiss flat']:.3f} s, torch/faiss = "
        f"{knn_report['torch_over']['faiss flat']:.2f}x (max |score diff| "
        f"{knn_report['max_abs_score_diff_flat_vs_torch']:.1e}, k-NN top-1 {top1_exact:.4f})",
    ]
    for name, spec in specs.items():
        nn = res[name]
        rec = recall_at_k(nn.index.cpu(), exact.index.cpu())
        top1 = knn_top1(nn.scores, nn.index, bank_labels, query_labels)
        knn_report["recall_at_k"][name] = rec
        knn_report["knn_top1"][name] = top1
        knn_report["ivf"][name] = {"nprobe": spec.nprobe}
        lines.append(
            f"  faiss {name} (nprobe {min(spec.nprobe, index.nlist)}) {times[name]:.3f} s, "
            f"torch/faiss = {knn_report['torch_over'][name]:.2f}x, recall@{args.k} {rec:.4f}, "
            f"k-NN top-1 {top1:.4f} ({top1 - top1_exact:+.4f} vs exact)"
        )

    n = args.bank // args.views
    emb = bank[: n * args.views].view(n, args.views, args.dim)
    pred = F.normalize(emb + 0.3 * torch.randn_like(emb), dim=-1)
    rows = torch.arange(n * args.views).view(n, args.views)
    candidates = rows.repeat_interleave(args.views, dim=0)
    flat_pred, flat_emb = pred.reshape(-1, args.dim), emb.reshape(-1, args.dim)
    rtimes, rres = interleaved(
        {
            "faiss": lambda: rank_of(flat_pred, flat_emb, candidates, rows.reshape(-1), "ip"),
            "torch": lambda: torch_ranks(pred, emb),
        },
        args.repeats,
        max(args.warmup, 1),
        device,
    )
    agree = float((rres["faiss"].cpu() == rres["torch"].cpu()).double().mean())
    lines += [
        f"MRR ranking (exact): {n} objects x {args.views} views x {args.dim} dims "
        f"({n * args.views} predictions, each ranked among {args.views})",
        f"  faiss {rtimes['faiss']:.3f} s, torch batched matmul {rtimes['torch']:.3f} s, "
        f"torch/faiss = {rtimes['torch'] / rtimes['faiss']:.2f}x (ranks agree on {agree:.4%})",
    ]
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(report + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "machine": lines[1].removeprefix("machine: "),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "threads": args.threads,
            "knn": knn_report,
            "mrr": {"seconds": rtimes, "torch_over_faiss": rtimes["torch"] / rtimes["faiss"]},
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
