"""faiss search = brute-force torch search (indices and scores), on random data whose
neighbours are untied by construction; the approximate ``ivf`` index: exact when it scans
every list, recall and k-NN top-1 bounds on clustered data at its defaults."""

import faiss
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from equissl.eval.neighbours import (
    IndexSpec,
    IVFIndex,
    build_index,
    prepare,
    rank_of,
    search,
    search_subsets,
)
from equissl.eval.probes.knn import knn_classify


def untied(q: int, b: int, d: int, seed: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random queries ``[q, d]`` and bank ``[b, d]``, redrawn until each query's ``k + 1``
    best scores (inner product, cosine and L2) are separated by more than float32 noise."""
    g = torch.Generator().manual_seed(seed)
    while True:
        x, y = torch.randn(q, d, generator=g), torch.randn(b, d, generator=g)
        scores = (
            x @ y.T,
            F.normalize(x, dim=1) @ F.normalize(y, dim=1).T,
            -(torch.cdist(x, y) ** 2),
        )
        gaps = [s.topk(min(k + 1, b), dim=1).values.diff(dim=1).abs().min() for s in scores]
        if min(gaps) > 1e-4:
            return x, y


def brute_force(x, y, k, metric):
    if metric == "l2":
        return (torch.cdist(x.double(), y.double()) ** 2).topk(k, dim=1, largest=False)
    if metric == "cosine":
        x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    return (x.double() @ y.double().T).topk(k, dim=1)


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("nq", [5, 64])  # faiss switches to BLAS at 20 queries
def test_search_equals_brute_force(metric, nq):
    x, y = untied(nq, 300, 16, seed=nq, k=7)
    got = search(x, y, 7, metric)
    want = brute_force(x, y, 7, metric)
    assert torch.equal(got.index, want.indices)
    torch.testing.assert_close(got.scores.double(), want.values, rtol=1e-5, atol=1e-4)


def test_k_is_capped_at_the_bank_size():
    x, y = untied(3, 4, 8, seed=1, k=4)
    assert search(x, y, 10).index.shape == (3, 4)


def test_unknown_metric_and_bad_shapes_are_refused():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="unknown neighbour metric"):
        search(x, x, 1, "manhattan")
    with pytest.raises(ValueError, match="queries"):
        search(x, torch.randn(3, 5), 1)


def subset_scores(x, y, cand, metric):
    """Brute-force ``[Q, C]`` scores (larger is nearer) of each query's candidates."""
    if metric == "cosine":
        x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    if metric == "l2":
        return -((x[:, None] - y[cand]) ** 2).sum(-1)
    return torch.einsum("qd,qcd->qc", x, y[cand])


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_search_subsets_sorts_each_querys_own_candidates(metric):
    g = torch.Generator().manual_seed(3)
    while True:  # redraw until no two candidates of a query tie
        x, y = torch.randn(40, 8, generator=g), torch.randn(60, 8, generator=g)
        cand = torch.stack([torch.randperm(60, generator=g)[:9] for _ in range(40)])
        s = subset_scores(x, y, cand, metric)
        if s.sort(dim=1).values.diff(dim=1).min() > 1e-4:
            break
    got = search_subsets(x, y, cand, metric)
    order = s.argsort(dim=1, descending=True)
    assert torch.equal(got.index, cand.gather(1, order))  # every row, not only the first
    sign = -1 if metric == "l2" else 1
    torch.testing.assert_close(got.scores, sign * s.gather(1, order), rtol=1e-5, atol=1e-5)


def test_rank_of_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    queries = torch.tensor([[1.0, 0.1], [1.0, 0.1], [0.0, -1.0]])
    cand = torch.tensor([[0, 1, 2], [0, 1, 2], [0, 1, 3]])
    # query 0: cosine order 0, 2, 1 -> target 0 rank 1; query 1: target 1 rank 3;
    # query 2 ([0, -1]): scores 0, -1, 0 for rows 0, 1, 3 -> row 1 last, rank 3
    ranks = rank_of(queries, bank, cand, torch.tensor([0, 1, 1]))
    assert ranks.tolist() == [1, 3, 3]
    with pytest.raises(ValueError, match="must contain its target"):
        rank_of(queries, bank, cand, torch.tensor([3, 3, 3]))


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_ivf_scanning_every_list_equals_brute_force(metric):
    x, y = untied(64, 300, 16, seed=5, k=7)
    want = brute_force(x, y, 7, metric)
    for nprobe in (6, 50):  # nprobe >= nlist, and capped at nlist
        got = search(x, y, 7, metric, IndexSpec("ivf", nlist=6, nprobe=nprobe))
        assert torch.equal(got.index, want.indices)
        torch.testing.assert_close(got.scores.double(), want.values, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_ivf_list_by_list_search_equals_faiss_index_search(metric):
    x, y = untied(64, 300, 16, seed=5, k=7)
    index = build_index(y, metric, IndexSpec("ivf", nlist=6, nprobe=2))
    got = index.search(x, 7)
    index.index.add(prepare(y, metric))  # faiss's lists, on the same trained centroids
    scores, rows = index.index.search(prepare(x, metric), 7)
    assert torch.equal(got.index, rows)
    torch.testing.assert_close(got.scores, scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [IVFIndex.ADD_CHUNK, 7])
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_ivf_lists_are_those_faiss_add_files(monkeypatch, metric, chunk):
    """The lists filed here (one array sized once, the bank prepared ``chunk`` rows at a
    time) hold the rows and vectors, in the order, that faiss's ``index.add`` of the whole
    bank puts in its inverted lists."""
    monkeypatch.setattr(IVFIndex, "ADD_CHUNK", chunk)
    _, y = untied(64, 300, 16, seed=5, k=7)
    index = build_index(y, metric, IndexSpec("ivf", nlist=6, nprobe=2))
    index.index.add(prepare(y, metric))
    invlists, d = index.index.invlists, y.shape[1]
    assert sum(len(ids) for ids, _ in index.lists) == len(y)
    for i, (ids, xb) in enumerate(index.lists):
        n = invlists.list_size(i)
        want_ids = faiss.rev_swig_ptr(invlists.get_ids(i), n) if n else np.empty(0, np.int64)
        codes = faiss.rev_swig_ptr(invlists.get_codes(i), n * invlists.code_size) if n else None
        want_xb = codes.view(np.float32).reshape(n, d) if n else np.empty((0, d), np.float32)
        assert np.array_equal(ids, want_ids) and np.array_equal(xb, want_xb)


def mixture(n_bank: int, n_query: int, classes: int, dim: int, seed: int):
    """Unit vectors around ``classes`` random centres (bank and queries, with labels); noisy
    enough that exact k-NN top-1 is ~0.8 and the default IVF's recall ~0.97, not 1."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)

    def draw(n):
        labels = torch.randint(classes, (n,), generator=g)
        return F.normalize(centres[labels] + 1.5 * torch.randn(n, dim, generator=g), dim=1), labels

    return (*draw(n_bank), *draw(n_query))


def recall(got: torch.Tensor, want: torch.Tensor) -> float:
    """Fraction of the exact ``k`` neighbours (rows of ``want [Q, k]``) found in ``got``."""
    return float((got[:, :, None] == want[:, None, :]).any(1).double().mean())


def test_ivf_at_its_defaults_finds_the_neighbours_of_clustered_data():
    bank, bank_labels, q, q_labels = mixture(20_000, 1_000, classes=50, dim=32, seed=0)
    spec = IndexSpec("ivf")
    index = build_index(bank, "cosine", spec)
    assert index.nlist == 141 and index.nprobe == 32  # √B lists, 32 probed
    got, want = index.search(q, 20), search(q, bank, 20)
    assert recall(got.index, want.index) >= 0.95
    exact = knn_classify(bank, bank_labels, q, 50, 20, 0.07).argmax(1)
    approx = knn_classify(bank, bank_labels, q, 50, 20, 0.07, spec=spec).argmax(1)
    top1_exact = float((exact == q_labels).double().mean())
    top1_approx = float((approx == q_labels).double().mean())
    assert abs(top1_approx - top1_exact) <= 0.01
    # the same seed builds the same index
    assert torch.equal(build_index(bank, "cosine", spec).search(q, 20).index, got.index)


def test_ivf_pads_rows_it_cannot_fill():
    x, y = untied(10, 80, 8, seed=2, k=5)
    got = search(x, y, 60, "cosine", IndexSpec("ivf", nlist=2, nprobe=1))
    short = got.index == -1
    assert short.any()  # one list of about 40 vectors cannot hold 60 neighbours
    assert torch.isneginf(got.scores[short]).all() and not torch.isinf(got.scores[~short]).any()


def test_bad_index_options_are_refused():
    with pytest.raises(ValueError, match="unknown neighbour index 'hnsw'"):
        IndexSpec("hnsw")
    for bad in ({"nprobe": 0}, {"nlist": -1}, {"train_points": 1.5}):
        with pytest.raises(ValueError, match=f"index option {next(iter(bad))} must be"):
            IndexSpec("ivf", **bad)


@pytest.mark.skipif(
    not torch.cuda.is_available() or faiss.get_num_gpus() == 0, reason="needs faiss on a GPU"
)
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_search_on_the_gpu_equals_brute_force(metric):
    x, y = untied(64, 300, 16, seed=11, k=7)
    got = search(x.cuda(), y.cuda(), 7, metric)
    assert got.index.is_cuda and got.scores.is_cuda
    want = brute_force(x, y, 7, metric)
    assert torch.equal(got.index.cpu(), want.indices)
    torch.testing.assert_close(got.scores.cpu().double(), want.values, rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(
    not torch.cuda.is_available() or faiss.get_num_gpus() == 0, reason="needs faiss on a GPU"
)
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_ivf_on_the_gpu_scanning_every_list_equals_brute_force(metric):
    x, y = untied(64, 300, 16, seed=5, k=7)
    got = search(x.cuda(), y.cuda(), 7, metric, IndexSpec("ivf", nlist=6, nprobe=6))
    assert got.index.is_cuda and got.scores.is_cuda
    want = brute_force(x, y, 7, metric)
    assert torch.equal(got.index.cpu(), want.indices)
    torch.testing.assert_close(got.scores.cpu().double(), want.values, rtol=1e-4, atol=1e-3)
