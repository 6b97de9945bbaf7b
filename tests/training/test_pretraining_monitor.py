"""Validation during pretraining (equissl.training.monitor, the ``monitor`` config): its scores
against hand computations, the keys a tiny run logs, unlabelled data, and a run with the
monitor on ending bitwise equal to one without it (through a resume)."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from equissl.checkpointing import load_checkpoint
from equissl.config import is_result_key
from equissl.datasets.contract import ActionSpace
from equissl.scores import (
    knn_scores,
    r2_global,
    ridge_classifier_scores,
    ridge_fit,
    ridge_predict,
)
from equissl.ssl.monitor import dimension_std
from equissl.training.monitor import (
    MonitorFeatures,
    MonitorSubset,
    monitor_metrics,
    ordered_pairs,
    pair_target,
)
from equissl.training.pretrain import pretrain
from tests.conftest import TOY, compose_pretrain

MONITOR = {
    "ridge": 0.0,
    "knn_k": 1,
    "knn_temperature": 0.07,
    "target": None,
}


# ------------------------------------------------------------------- hand computations
def test_ridge_fit_by_hand():
    x = torch.tensor([[0.0], [1.0], [2.0]])
    y = 2 * x + 1
    w, b = ridge_fit(x, y, 0.0)  # least squares: the line itself
    assert float(w) == pytest.approx(2.0) and float(b) == pytest.approx(1.0)
    # centred x = (-1, 0, 1): x'x = 2, x'y = 4; lambda = ridge * mean diag = 1 * 2
    w, b = ridge_fit(x, y, 1.0)
    assert float(w) == pytest.approx(4 / (2 + 2)) and float(b) == pytest.approx(3 - 1 * 1)
    assert ridge_predict((w, b), torch.tensor([[4.0]])).item() == pytest.approx(6.0)


def test_ridge_classifier_by_hand():
    x = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
    labels = torch.tensor([3, 3, 5, 5])
    scores = ridge_classifier_scores(x, labels, torch.tensor([[1.5], [-0.5]]), 6, 0.0)
    # one-hot of class 3 centred (.5, .5, -.5, -.5): w = -3 / 10, b = .5; class 5: the opposite
    assert scores[0, 3].item() == pytest.approx(0.5 - 0.45)
    assert scores[0, 5].item() == pytest.approx(0.5 + 0.45)
    assert scores[1, 3].item() == pytest.approx(0.5 + 0.15)
    assert torch.isinf(scores[:, [0, 1, 2, 4]]).all()  # classes never seen are never predicted
    assert scores.argmax(1).tolist() == [5, 3]


def test_knn_weighted_vote_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[2.0, 0.2]])
    s = torch.nn.functional.cosine_similarity(query, bank)  # 0.995, 0.0995, 0.7741
    one = knn_scores(bank, labels, query, 2, k=1, temperature=0.1)
    assert one[0, 0].item() == pytest.approx(math.exp(float(s[0]) / 0.1), rel=1e-5)
    assert one[0, 1].item() == 0.0
    three = knn_scores(bank, labels, query, 2, k=5, temperature=1.0)  # k capped at the bank
    assert three[0, 1].item() == pytest.approx(math.exp(s[1]) + math.exp(s[2]), rel=1e-5)
    assert three.argmax(1).item() == 1  # two weaker neighbours outvote the nearest at T = 1


def test_dimension_std_and_pairs():
    z = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    assert dimension_std(z) == pytest.approx((0.0, math.sqrt(2) / 2))
    a, b = ordered_pairs(3)
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [
        (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)
    ]  # fmt: skip


class Shift(ActionSpace):
    """Latents (x, y); the target ``shift`` is their difference: linear in [r_a ‖ r_b]."""

    kind = "shift_test"
    latent_dim = 2
    targets = {"shift": 2}
    default_action = ("shift",)

    def target(self, name: str, latents_a, latents_b):
        return latents_b - latents_a

    def params(self) -> dict[str, Any]:
        return {}


def features(n: int, views: int, seed: int, labelled: bool = True) -> MonitorFeatures:
    """``exact``: the latents themselves; ``noise``: unrelated; ``class``: the label's
    one-hot (with noise), for ``n`` objects of 3 classes."""
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(n, views, 2, generator=gen)
    labels = torch.arange(n) % 3 if labelled else torch.full((n,), -1)
    onehot = torch.nn.functional.one_hot(labels.clamp_min(0), 3).float()
    cls = onehot[:, None].expand(n, views, 3) + 0.05 * torch.randn(n, views, 3, generator=gen)
    return MonitorFeatures(
        {"exact": latents, "noise": torch.randn(n, views, 4, generator=gen), "class": cls},
        latents,
        labels,
    )


def test_monitor_metrics_on_known_features():
    out = monitor_metrics(features(60, 2, 0), features(30, 3, 1), Shift(), 3, MONITOR)
    assert out["monitor/exact/shift_r2"] == pytest.approx(1.0)  # the target is x_b − x_a
    assert out["monitor/noise/shift_r2"] < 0.2
    assert out["monitor/class/top1"] == 1.0 and out["monitor/class/knn_top1"] == 1.0
    assert out["monitor/noise/top1"] < 0.8
    # the constant predictor: mean of the training pairs' targets against the val pairs
    val = features(30, 3, 1)
    a, b = ordered_pairs(3)
    y = (val.latents[:, b] - val.latents[:, a]).flatten(0, 1)
    tr = features(60, 2, 0).latents
    mean = torch.cat((tr[:, 1] - tr[:, 0], tr[:, 0] - tr[:, 1])).mean(0)
    expected = r2_global(mean.expand_as(y), y)
    assert out["monitor/constant/shift_r2"] == pytest.approx(expected)
    assert out["monitor/exact/std_min"] > 0 and out["monitor/class/rankme"] <= 3.0 + 1e-3


def test_unlabelled_or_single_view_data_skip_what_they_cannot_give():
    out = monitor_metrics(
        features(20, 2, 0, labelled=False), features(10, 2, 1, False), Shift(), 0, MONITOR
    )
    assert not [k for k in out if "top1" in k]
    assert "monitor/exact/shift_r2" in out and "monitor/exact/rankme" in out
    single = monitor_metrics(features(20, 1, 0), features(10, 1, 1), Shift(), 3, MONITOR)
    assert not [k for k in single if "shift" in k] and "monitor/class/top1" in single


def test_pair_target_choice():
    space = Shift()
    assert pair_target(space, None) == "shift"
    with pytest.raises(ValueError, match=r"monitor.target='angle'.*\['shift'\]"):
        pair_target(space, "angle")


def test_the_subset_is_fixed_by_its_seed(iebench_tree):
    from equissl.datasets.iebench import IEBenchDataset

    ds = IEBenchDataset(iebench_tree, num_views=1, image_size=32, split="train")
    a, b = MonitorSubset(ds, 8, 4, 2, seed=0), MonitorSubset(ds, 8, 4, 2, seed=0)
    assert torch.equal(a.index, b.index) and a.index.shape == (4, 2)
    obj, view = a.index // 5, a.index % 5  # 5 stored views per object
    assert (obj[:, 0] == obj[:, 1]).all() and (view[:, 0] != view[:, 1]).all()
    assert not torch.equal(MonitorSubset(ds, 8, 4, 2, seed=1).index, a.index)
    assert MonitorSubset(ds, 8, 100, 9, seed=0).index.shape == (9, 5)  # capped at the split
    # read in batches; kept for the next pass when the views fit cache_mb (8 x 12 KiB here)
    first = list(a.batches(3, 0, 1))
    assert [len(v) for v, _, _ in first] == [3, 3, 2] and a._cached is not None
    again = list(a.batches(3, 0, 1))
    pairs = [(x, y) for p, q in zip(first, again, strict=True) for x, y in zip(p, q, strict=True)]
    assert all(torch.equal(x, y) for x, y in pairs)
    assert torch.equal(first[0][0][0], ds.evaluation_views(8, 0)[int(a.index[0, 0])]["views"][0])
    list(b.batches(3, 0, 0))
    assert b._cached is None  # cache_mb=0: read again every pass


# --------------------------------------------------------------------------- tiny runs
def run_config(root: Path, *extra: str) -> dict:
    return compose_pretrain([*TOY, f"data.root={root}", "logger.name=csv", *extra])


def monitor_rows(run: Path) -> list[dict[str, str]]:
    """The monitor's rows of every CSV log of ``run`` (a resume writes a new version)."""
    rows = [r for f in run.rglob("metrics.csv") for r in csv.DictReader(f.open())]
    return sorted((r for r in rows if r.get("monitor/seconds")), key=lambda r: int(r["step"]))


def test_a_tiny_run_logs_every_key_at_the_cadence_and_the_end(iebench_tree, tmp_path):
    run = tmp_path / "run"
    pretrain(run_config(iebench_tree, "trainer.max_steps=5", "monitor.every_n_steps=2"), run)
    rows = monitor_rows(run)
    assert [int(r["step"]) for r in rows] == [2, 4, 5]  # every 2 steps, and after the last
    for key in ("top1", "knn_top1", "rotation_r2", "std_min", "std_mean", "rankme"):
        assert all(r[f"monitor/full/{key}"] for r in rows), key
    assert all(r["monitor/constant/rotation_r2"] for r in rows)
    assert 0.0 <= float(rows[-1]["monitor/full/top1"]) <= 1.0


def test_off_by_default_and_not_a_result_key(iebench_tree):
    assert run_config(iebench_tree)["monitor"]["every_n_steps"] == 0
    assert not is_result_key("monitor.every_n_steps") and not is_result_key("monitor.objects")


def test_a_wrong_target_is_named_before_training(iebench_tree, tmp_path):
    cfg = run_config(iebench_tree, "trainer.max_steps=2", "monitor.every_n_steps=1")
    cfg["monitor"]["target"] = "spin"
    with pytest.raises(ValueError, match="monitor.target='spin'"):
        pretrain(cfg, tmp_path / "run")
    assert not list((tmp_path / "run").rglob("last.ckpt"))


def test_a_failing_pass_is_a_warning_not_the_end_of_the_run(
    iebench_tree, tmp_path, monkeypatch, caplog
):
    import equissl.training.monitor as monitor

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(monitor, "monitor_metrics", boom)
    run = tmp_path / "run"
    last = pretrain(run_config(iebench_tree, "trainer.max_steps=2", "monitor.every_n_steps=1"), run)
    assert load_checkpoint(last)["global_step"] == 2 and not monitor_rows(run)
    assert "monitor at step 1 failed, training goes on: RuntimeError: boom" in caplog.text


def test_monitor_leaves_training_bitwise_unchanged_through_a_resume(
    iebench_tree, tmp_path, monkeypatch
):
    """Off for 6 steps, against on (every 2 steps, its loader drawing from every global
    RNG as a careless dataset would) stopped at 3 and resumed to 6: same weights, Adam
    moments, loader position and stored RNG states."""
    det = "trainer.deterministic=true"  # torch's deterministic kernels, the monitor's too
    off = tmp_path / "off"
    pretrain(run_config(iebench_tree, "trainer.max_steps=6", det), off)

    batches = MonitorSubset.batches

    def drawing_batches(self, *args):
        for batch in batches(self, *args):
            random.random(), np.random.rand(), torch.rand(1)
            yield batch

    monkeypatch.setattr(MonitorSubset, "batches", drawing_batches)
    on = tmp_path / "on"
    for steps in (3, 6):
        pretrain(
            run_config(iebench_tree, f"trainer.max_steps={steps}", "monitor.every_n_steps=2", det),
            on,
        )
    assert [int(r["step"]) for r in monitor_rows(on)] == [2, 3, 4, 6]
    a = load_checkpoint(off / "checkpoints" / "last.ckpt")
    b = load_checkpoint(on / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 6
    differ = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not differ, differ
    for k, state in a["optimizer_states"][0]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer_states"][0]["state"][k][name]), (k, name)
    ra, rb = a["equissl_rng"], b["equissl_rng"]
    assert torch.equal(ra["torch"], rb["torch"]) and ra["python"] == rb["python"]
    assert torch.equal(ra["numpy"]["key"], rb["numpy"]["key"])
    assert a["loops"]["fit_loop"]["state_dict"] == b["loops"]["fit_loop"]["state_dict"]


@pytest.fixture(scope="module")
def burgers(tmp_path_factory) -> str:
    from equissl.datasets.pde import generate_pde

    root = tmp_path_factory.mktemp("burgers")
    generate_pde("burgers", root, num_trajectories=12, progress=False, nx=32, nt=20, substeps=4)
    return str(root)


@pytest.mark.e2e  # a PDE pretraining run (about 10 s)
def test_unlabelled_pde_data_get_the_collapse_monitors_and_the_lie_target(burgers, tmp_path):
    cfg = compose_pretrain(
        [
            "method=vicreg",
            "backbone=tiny_cnn_schema",
            "data=pde_burgers",
            f"data.root={burgers}",
            "data.batch_size=4",
            "data.num_workers=0",
            "trainer=cpu",
            "trainer.max_steps=2",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            "monitor.every_n_steps=1",
        ]
    )
    run = tmp_path / "run"
    pretrain(cfg, run)
    rows = monitor_rows(run)
    assert [int(r["step"]) for r in rows] == [1, 2]
    keys = {k for k, v in rows[-1].items() if k.startswith("monitor/") and v}
    assert {"monitor/full/std_min", "monitor/full/rankme", "monitor/full/lie_r2"} <= keys
    assert "monitor/constant/lie_r2" in keys and not [k for k in keys if "top1" in k]


def test_recipes_monitor_at_a_sparse_cadence():
    generic = compose_pretrain([])["monitor"]
    paper = compose_pretrain(["experiment=sie_3diebench"])["monitor"]
    quick = compose_pretrain(["experiment=quickstart"])["monitor"]
    assert generic["every_n_steps"] == 0
    assert (paper["every_n_steps"], paper["objects"]) == (2000, 2048)
    assert quick["every_n_steps"] == 200 and quick["objects"] <= 128 and quick["views"] == 4
    for experiment in ("vicreg_3diebench", "equicaps_3x3_3diebench", "cpu/sie_3diebench"):
        assert compose_pretrain([f"experiment={experiment}"])["monitor"]["every_n_steps"] > 0


@pytest.mark.e2e
def test_ddp_two_cpu_ranks_rank_zero_logs_once_and_training_is_unchanged(iebench_tree, tmp_path):
    """Two DDP processes (gloo): rank 0 measures and logs each pass once, rank 1 waits in
    the next all-reduce; the weights equal those of the same run without the monitor."""
    import subprocess
    import sys

    script = Path(sys.executable).parent / "equissl-pretrain"
    args = [
        f"data.root={iebench_tree}",
        "trainer=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "data.global_batch_size=4",
        "data.image_size=32",
        "data.num_workers=0",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "backbone.name=test_resnet",  # timm's 0.4 M-parameter test ResNet
        "method.inv_dim=48",
        "method.projector=[64,64,64]",
        "trainer.max_epochs=-1",
        "trainer.max_steps=3",
    ]
    states = {}
    for name, extra in (("off", []), ("on", ["monitor.every_n_steps=2"])):
        cwd = tmp_path / name
        cwd.mkdir()
        res = subprocess.run(
            [str(script), *args, *extra], cwd=cwd, capture_output=True, text=True, timeout=600
        )
        assert res.returncode == 0, res.stderr[-3000:]
        (ckpt,) = cwd.rglob("last.ckpt")
        states[name] = load_checkpoint(ckpt)["state_dict"]
        if name == "on":
            assert [int(r["step"]) for r in monitor_rows(cwd)] == [2, 3]  # once each, rank 0
            assert (res.stdout + res.stderr).count("monitor at step 2") == 1
    off, on = states["off"], states["on"]
    assert [k for k in off if not torch.equal(off[k], on[k])] == []
