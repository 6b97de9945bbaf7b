"""Batch statistics gathered across two gloo processes equal the single-process result."""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from equissl.ssl.sie import sie_terms
from equissl.ssl.vicreg import vicreg_terms

WORLD = 2


def make_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(16, 6, generator=g, dtype=torch.float64) for _ in range(5))


def total(terms: dict) -> torch.Tensor:
    return sum(terms.values())


def worker(rank: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=WORLD)
    try:
        local = [t.chunk(WORLD)[rank].clone().requires_grad_() for t in make_inputs()]
        inv1, inv2, equi1, equi2, pred = local
        sie = sie_terms(inv1, inv2, equi1, equi2, pred)
        vic = vicreg_terms(inv1, inv2)
        (total(sie) + total(vic)).backward()
        out = {k: v.detach() for k, v in sie.items()}
        out.update({f"vicreg_{k}": v.detach() for k, v in vic.items()})
        out["grads"] = [t.grad for t in local]
        torch.save(out, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.e2e  # several seconds (processes): the e2e tier, which CI runs
def test_two_gloo_ranks_match_one_process(tmp_path):
    mp.spawn(worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    full = [t.clone().requires_grad_() for t in make_inputs()]
    sie = sie_terms(*full)
    vic = vicreg_terms(full[0], full[1])
    (total(sie) + total(vic)).backward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for name in ("variance", "pred_variance", "covariance"):
        for r in ranks:  # global statistics: identical on every rank and to one process
            torch.testing.assert_close(r[name], sie[name].detach())
    for name in ("variance", "covariance"):
        torch.testing.assert_close(ranks[0][f"vicreg_{name}"], vic[name].detach())
    # MSE terms are per-rank means whose average is the global mean
    avg = sum(r["invariance"] for r in ranks) / WORLD
    torch.testing.assert_close(avg, sie["invariance"].detach())
    # gradients: DDP averages over ranks, so grad_r / WORLD is the single-process gradient
    for i, t in enumerate(full):
        got = torch.cat([r["grads"][i] for r in ranks]) / WORLD
        torch.testing.assert_close(got, t.grad)
