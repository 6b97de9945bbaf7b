"""RankMe, the collapse monitor logged during pretraining, against its formula on hand-made
batches (Garrido et al., ICML 2023)."""

from __future__ import annotations

import math

import torch

from equissl.ssl.monitor import EPS, rankme


def test_full_rank_batch_scores_its_rank():
    z = torch.eye(8, 32) * 3.0  # 8 equal singular values
    expected = math.exp(-8 * (1 / 8 + EPS) * math.log(1 / 8 + EPS))
    assert abs(float(rankme(z)) - expected) < 1e-4
    assert abs(float(rankme(z)) - 8.0) < 1e-3


def test_collapsed_batch_scores_one():
    z = torch.randn(1, 16).expand(64, 16) * torch.linspace(0.5, 2.0, 64)[:, None]  # rank 1
    assert abs(float(rankme(z)) - 1.0) < 1e-2


def test_formula_on_a_random_batch():
    z = torch.randn(32, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = torch.linalg.svdvals(z)
    p = s / s.sum() + EPS
    assert abs(float(rankme(z)) - float(torch.exp(-(p * p.log()).sum()))) < 1e-4


def test_pretraining_logs_rankme(iebench_tree, tmp_path):
    import csv

    from equissl.training.pretrain import pretrain
    from tests.conftest import TOY, compose_pretrain

    config = compose_pretrain(
        [*TOY, f"data.root={iebench_tree}", "logger.name=csv", "trainer.max_steps=4",
         "trainer.log_every_n_steps=1"]
    )  # fmt: skip
    pretrain(config, tmp_path / "run")
    (metrics,) = (tmp_path / "run" / "csv").rglob("metrics.csv")
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("monitor/rankme")]
    assert len(rows) == 4  # every logged step
    assert all(1.0 <= float(r["monitor/rankme"]) <= 4.0 for r in rows)  # batch of 4: rank <= 4
