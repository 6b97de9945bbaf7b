"""SimCLR's InfoNCE term: the formula written out, and two gloo ranks against one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from equissl.ssl.simclr import SimCLR
from tests.conftest import TOY, compose_pretrain

WORLD = 2
TEMPERATURE = 0.1


def nt_xent(za: torch.Tensor, zb: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent written out: for each of the 2N views, −log of its positive's softmax weight
    among the 2N − 1 other views (1 positive + 2N − 2 negatives), averaged over both
    directions (all 2N anchors)."""
    z = F.normalize(torch.cat([za, zb]), dim=1)
    n = len(za)
    losses = []
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        others = [j for j in range(2 * n) if j != i]
        sims = torch.stack([z[i] @ z[j] for j in others]) / temperature
        losses.append(torch.logsumexp(sims, 0) - z[i] @ z[pos] / temperature)
    return torch.stack(losses).mean()


def embeddings(n: int = 8, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    za = torch.randn(n, d, generator=g, dtype=torch.float64)
    return za, za + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)


def simclr_criterion(tree: Path) -> torch.nn.Module:
    """The criterion exactly as ``SimCLR`` builds it (method.temperature = 0.1)."""
    from equissl.training.datamodule import PretrainDataModule

    config = compose_pretrain([f"data.root={tree}", *TOY, "method=simclr", "method.projector=[8]"])
    assert config["method"]["temperature"] == TEMPERATURE
    method = SimCLR(config, PretrainDataModule(config["data"], 2).spec)
    assert method.terms == ("infonce",) and method.criterion.gather_distributed
    return method.criterion


def test_infonce_is_nt_xent(iebench_tree):
    criterion = simclr_criterion(iebench_tree)
    za, zb = embeddings()
    torch.testing.assert_close(criterion(za, zb), nt_xent(za, zb, TEMPERATURE))
    # hand-made case: two orthogonal pairs, the positive is the copy
    e = torch.eye(2, dtype=torch.float64)
    expected = torch.log(1 + 2 * torch.exp(torch.tensor(-10.0, dtype=torch.float64)))
    torch.testing.assert_close(criterion(e, e), expected)


def worker(rank: int, tmp: str, criterion: torch.nn.Module) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=WORLD)
    try:
        za, zb = (t.chunk(WORLD)[rank].clone().requires_grad_() for t in embeddings())
        loss = criterion(za, zb)
        loss.backward()
        torch.save(
            {"loss": loss.detach(), "ga": za.grad, "gb": zb.grad}, Path(tmp) / f"rank{rank}.pt"
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.e2e
def test_two_gloo_ranks_match_one_process(iebench_tree, tmp_path):
    criterion = simclr_criterion(iebench_tree)
    mp.spawn(worker, args=(str(tmp_path), criterion), nprocs=WORLD, join=True)
    za, zb = (t.clone().requires_grad_() for t in embeddings())
    loss = criterion(za, zb)
    loss.backward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    # each rank's loss is the mean over its own anchors against every view of the global
    # batch (2N − 2 negatives): the ranks differ, their average is the one-process loss
    assert not torch.allclose(ranks[0]["loss"], ranks[1]["loss"])
    torch.testing.assert_close(sum(r["loss"] for r in ranks) / WORLD, loss.detach())
    torch.testing.assert_close(
        ranks[0]["loss"], per_anchor_mean(za.detach(), zb.detach(), rows=range(4))
    )
    # the all-gather's backward sums every rank's gradient into the local slice, so each
    # rank holds WORLD x the gradient of the average loss; DDP then averages parameter
    # gradients over ranks: grad_rank / WORLD, concatenated, is the one-process gradient
    for key, full in (("ga", za.grad), ("gb", zb.grad)):
        got = torch.cat([r[key] for r in ranks]) / WORLD
        torch.testing.assert_close(got, full)


def per_anchor_mean(za: torch.Tensor, zb: torch.Tensor, rows: range) -> torch.Tensor:
    """NT-Xent averaged over the anchors ``rows`` of both views only (one rank's share)."""
    z = F.normalize(torch.cat([za, zb]), dim=1)
    n = len(za)
    anchors = [*rows, *(r + n for r in rows)]
    losses = []
    for i in anchors:
        sims = torch.stack([z[i] @ z[j] for j in range(2 * n) if j != i]) / TEMPERATURE
        losses.append(torch.logsumexp(sims, 0) - z[i] @ z[(i + n) % (2 * n)] / TEMPERATURE)
    return torch.stack(losses).mean()
