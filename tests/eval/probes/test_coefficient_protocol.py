"""The coefficient probe follows the released protocol of Mialon et al. on real trajectories:
heads on a labelled split held out of pretraining, untransformed evaluation windows, a
random-encoder row; each departure (chosen, or forced by the data) is on the card."""

from __future__ import annotations

import pytest
import torch

from equissl.datasets.base import build_dataset
from equissl.datasets.pde import generate_pde
from equissl.eval.evaluate import evaluate_checkpoint
from equissl.training.pretrain import pretrain
from tests.conftest import compose_pretrain

N = 18  # ids 0..17: val {0, 6, 12}, labelled {1, 7, 13}, pretraining the other 12


@pytest.fixture(scope="module")
def burgers(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("burgers")
    generate_pde("burgers", root, num_trajectories=N, progress=False, nx=32, nt=20, substeps=4)
    return str(root)


def overrides(root: str, *more: str) -> list[str]:
    return [
        "method=vicreg",
        "backbone=tiny_cnn_schema",
        "data=pde_burgers",
        f"data.root={root}",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.eval_views=2",
        "trainer=cpu",
        "trainer.max_steps=1",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "logger.name=none",
        *more,
    ]


def test_splits_are_disjoint_and_the_labelled_one_never_pretrains(burgers):
    config = compose_pretrain(overrides(burgers))
    ids = {
        s: set(build_dataset(config["data"], s, 1).index.tolist())
        for s in ("train", "labelled", "val")
    }
    assert ids["val"] == {0, 6, 12} and ids["labelled"] == {1, 7, 13}
    assert ids["train"] == set(range(N)) - ids["val"] - ids["labelled"]
    off = compose_pretrain(overrides(burgers, "data.labelled_split=false"))
    assert set(build_dataset(off["data"], "train", 1).index.tolist()) == set(range(N)) - ids["val"]
    with pytest.raises(ValueError, match="no labelled split"):
        build_dataset(off["data"], "labelled", 1)


def test_untransformed_views_apply_no_symmetry(burgers):
    ds = build_dataset(compose_pretrain(overrides(burgers))["data"], "val", 1)
    plain = ds.untransformed()
    lie = ds.group.dim
    moved = torch.stack([ds.evaluation_views(4, 0)[i]["latents"][0, :lie] for i in range(8)])
    still = torch.stack([plain.evaluation_views(4, 0)[i]["latents"][0, :lie] for i in range(8)])
    assert moved.abs().max() > 0 and still.abs().max() == 0
    assert list(plain.manifest()) != list(ds.manifest())  # a cache entry of its own
    # same start frames, no transformation: the window is the stored solution
    item = plain.evaluation_views(4, 0)[0]
    start = int(plain.evaluation_views(4, 0).starts[0, 0])
    assert torch.equal(item["views"][0, 2], plain.u[0, start : start + plain.window].float())


@pytest.fixture(scope="module")
def checkpoint(burgers, tmp_path_factory):
    config = compose_pretrain(overrides(burgers))
    return config, pretrain(config, tmp_path_factory.mktemp("run"))


def coefficient_results(config, ckpt, out, **changes):
    probe = {**config["eval"]["probes"]["coefficients"], "epochs": 2, **changes}
    eval_cfg = {**config["eval"], "num_workers": 0, "probes": {"coefficients": probe}}
    return evaluate_checkpoint(ckpt, eval_cfg, out, progress=False)


@pytest.mark.e2e  # an evaluation of a pretrained checkpoint
def test_default_protocol_is_the_references(checkpoint, tmp_path):
    config, ckpt = checkpoint
    res = coefficient_results(config, ckpt, tmp_path / "eval")
    card = res["protocols"]["coefficients"]
    assert "eval_coeff" in card["follows"]
    assert card["train_split"] == "labelled" and card["train_objects"] == 3
    assert card["test_split"] == "val" and card["test_objects"] == 3
    assert card["views"] == "untransformed" and card["labels"] == "held_out"
    assert card["deviations"] == ["epochs: 30 in the reference -> 2 here"]
    m = res["metrics"]
    assert m["full/coefficients/labelled"] == 3.0
    for row in ("", "mean_", "supervised_", "random_"):
        assert f"full/coefficients/{row}mse" in m
    # the random row is a trained head on other features, not a copy of the checkpoint's
    assert m["full/coefficients/random_mse"] != m["full/coefficients/mse"]


@pytest.mark.e2e  # an evaluation of a pretrained checkpoint
def test_chosen_and_forced_departures_are_named(checkpoint, tmp_path):
    config, ckpt = checkpoint
    res = coefficient_results(
        config,
        ckpt,
        tmp_path / "a",
        labels="pretraining",
        views="transformed",
        random_encoder=False,
    )
    card = res["protocols"]["coefficients"]
    assert card["train_split"] == "train" and card["train_objects"] == 12
    assert set(card["deviations"]) >= {
        "labels: 'held_out' in the reference -> 'pretraining' here",
        "views: 'untransformed' in the reference -> 'transformed' here",
        "random_encoder: True in the reference -> False here",
    }
    assert "full/coefficients/random_mse" not in res["metrics"]
    # a checkpoint whose data have no labelled split (runs from before it): said, not hidden
    old = {**config["data"], "labelled_split": False, "val_every": 5}
    meta_res = evaluate_checkpoint(
        ckpt,
        {
            **config["eval"],
            "num_workers": 0,
            "probes": {"coefficients": {**config["eval"]["probes"]["coefficients"], "epochs": 1}},
        },
        tmp_path / "b",
        data_overrides={"labelled_split": old["labelled_split"], "val_every": old["val_every"]},
        progress=False,
    )
    forced = meta_res["protocols"]["coefficients"]
    assert forced["train_split"] == "train"
    assert any("no labelled split held out of pretraining" in d for d in forced["deviations"])


@pytest.mark.e2e  # an evaluation of a pretrained checkpoint
def test_unknown_choices_are_named(checkpoint, tmp_path):
    config, ckpt = checkpoint
    with pytest.raises(ValueError, match=r"eval.probes.coefficients.views='rotated'"):
        coefficient_results(config, ckpt, tmp_path / "c", views="rotated")


@pytest.mark.e2e  # an evaluation of a pretrained checkpoint on two roots
def test_an_ood_root_is_scored_with_its_own_test_set(checkpoint, tmp_path):
    """``eval.ood_root``: the heads trained on the labelled split are scored on the other
    root's val split; what the probe computed for the in-distribution test set (its mean
    baseline, its head data) is not reused."""
    config, ckpt = checkpoint
    other = tmp_path / "other"
    generate_pde(
        "burgers", other, num_trajectories=N, progress=False, nx=32, nt=20, substeps=4, seed=7
    )
    probe = {**config["eval"]["probes"]["coefficients"], "epochs": 2}
    eval_cfg = {
        **config["eval"],
        "num_workers": 0,
        "probes": {"coefficients": probe},
        "ood_root": str(other),
    }
    res = evaluate_checkpoint(ckpt, eval_cfg, tmp_path / "eval", progress=False)
    key = "full/coefficients/mean_mse"
    assert res["ood"]["metrics"][key] != res["metrics"][key]  # another test set
    card = res["ood"]["protocols"]["coefficients"]
    assert card["train_split"] == "labelled" and card["test_split"] == f"val of {other}"
