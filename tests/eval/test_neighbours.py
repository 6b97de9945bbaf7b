"""faiss search = brute-force torch search (indices and scores), on random data whose
neighbours are untied by construction."""

import faiss
import pytest
import torch
import torch.nn.functional as F

from equissl.eval.neighbours import rank_of, search, search_subsets


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
