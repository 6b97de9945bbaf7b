"""Protocol cards: each probe that ran says which published protocol it follows and lists
every difference from it (settings of this run, and standing differences)."""

from __future__ import annotations

import json

import pytest

from equissl.eval.evaluate import evaluate_checkpoint
from equissl.eval.probes.pair_regression import PairRegressionProbe, pair_head
from equissl.eval.probes.protocol import Reference, protocol_card
from equissl.training.pretrain import pretrain
from tests.conftest import TOY, compose_pretrain

REF = Reference("Paper (2023), eval.py", {"head": "linear", "lr": 1e-3, "epochs": 300})


def test_an_exact_run_has_no_deviation():
    card = protocol_card(REF, {"head": "linear", "lr": 0.001, "epochs": 300, "samples": "x"})
    assert card["follows"] == "Paper (2023), eval.py" and card["deviations"] == []
    assert card["samples"] == "x"


def test_each_changed_setting_and_standing_difference_is_a_deviation():
    ref = Reference(REF.follows, REF.settings, ("backbone in eval mode",))
    card = protocol_card(ref, {"head": "mlp", "lr": 1e-3, "epochs": 30}, ("data: other",))
    assert card["deviations"] == [
        "head: 'linear' in the reference -> 'mlp' here",
        "epochs: 300 in the reference -> 30 here",
        "backbone in eval mode",
        "data: other",
    ]


def test_a_measurement_of_our_own_follows_nothing():
    assert protocol_card(None, {"head": "ridge"}) == {
        "follows": None,
        "head": "ridge",
        "deviations": [],
    }


def test_pair_heads_and_a_bad_head_named():
    assert pair_head("linear", 8, 16, 2).weight.shape == (2, 8)
    assert len(pair_head("mlp", 8, 16, 2)) == 5
    with pytest.raises(ValueError, match=r"eval.probes.color.head='deep'"):
        PairRegressionProbe("color", {"target": "color", "head": "deep"})


def test_shipped_colour_protocol_is_sies_linear_head():
    config = compose_pretrain([*TOY])
    color = config["eval"]["probes"]["color"]
    assert color["head"] == "linear" and color["epochs"] == 50
    assert config["eval"]["probes"]["rotation"]["head"] == "mlp"


def test_results_carry_a_card_for_every_probe_that_ran(iebench_tree, tmp_path, capsys):
    config = compose_pretrain([*TOY, f"data.root={iebench_tree}", "trainer.max_steps=0"])
    ckpt = pretrain(config, tmp_path / "run")
    fast = {"epochs": 2, "batch_size": 16, "lr": 1e-2, "weight_decay": 0.0, "seed": 0}
    probes = {
        "classification": {"impl": "classification", **fast},
        "rotation": {
            "impl": "pair_regression",
            "target": "rotation",
            "head": "mlp",
            "hidden_dim": 1024,
            "val_pairs_per_object": 2,
            **fast,
        },
        "translation": {**config["eval"]["probes"]["translation"], "epochs": 2},
    }
    eval_cfg = {**config["eval"], "num_workers": 0, "probes": probes}
    out = tmp_path / "eval"
    capsys.readouterr()
    results = evaluate_checkpoint(ckpt, eval_cfg, out, progress=True)
    bars = capsys.readouterr().err
    # one progress bar per probe, counting its parts; none per part or per epoch
    assert "probe rotation: 100%" in bars and "probe rotation [" not in bars
    assert "/300 [" not in bars and "ep/s" not in bars
    cards = results["protocols"]
    assert set(cards) == {"classification", "rotation"}  # translation was skipped
    assert json.loads((out / "results.json").read_text())["protocols"] == cards
    rotation = cards["rotation"]
    assert "eval_angle_prediction.py" in rotation["follows"]
    assert rotation["head"] == "mlp 2d-1024-1024-out" and rotation["optimizer"] == "Adam"
    assert rotation["train_split"] == "train" and rotation["test_split"] == "val"
    assert rotation["train_objects"] == 9 and rotation["test_objects"] == 3
    changed = [d for d in rotation["deviations"] if "in the reference ->" in d]
    assert changed[:3] == [
        "lr: 0.001 in the reference -> 0.01 here",
        "batch_size: 256 in the reference -> 16 here",
        "epochs: 300 in the reference -> 2 here",
    ]
    # the default backbone mode differs from SIE's scripts, and the card says how
    assert len(changed) == 4 and changed[3].startswith("backbone: 'frozen, train() mode")
    assert rotation["backbone"].startswith("frozen, eval() mode")
    assert "eval_classification.py" in cards["classification"]["follows"]
