"""``eval.baselines``: the untrained model is the checkpoint's architecture with the
pretraining seed's initial weights, put through the same probes, with its own features."""

from __future__ import annotations

import json

import pytest
import torch

from equissl.checkpointing import load_checkpoint
from equissl.eval.baselines import BASELINES
from equissl.eval.evaluate import default_cache_dir, evaluate_checkpoint
from equissl.ssl.loading import load_method
from tests.eval.conftest import fast_probes

PROBES = fast_probes()


def test_untrained_is_the_pretraining_initialisation_not_the_weights(initial_checkpoint):
    _, ckpt = initial_checkpoint
    method, meta = load_method(ckpt)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(1.0)  # as if trained: the baseline must not read these weights
    fresh = BASELINES.get("untrained")(method, meta)
    initial = load_checkpoint(ckpt)["state_dict"]
    state = fresh.state_dict()
    assert state.keys() == initial.keys()
    assert all(torch.equal(state[k], initial[k]) for k in initial)
    assert not fresh.training


def test_baselines_option_reports_the_untrained_model(initial_checkpoint, tmp_path):
    config, ckpt = initial_checkpoint
    eval_cfg = {**config["eval"], "num_workers": 0, "probes": PROBES, "baselines": ["untrained"]}
    out = tmp_path / "eval"
    results = evaluate_checkpoint(ckpt, eval_cfg, out, progress=False)
    untrained = results["baselines"]["untrained"]
    assert set(untrained) == set(results["metrics"])
    assert "full/rotation/constant_r2_global" in untrained
    # this checkpoint holds the initial weights: the same model, so the same metrics
    assert untrained == results["metrics"]
    # the baseline's features are cached apart from the checkpoint's (2 splits each)
    cache_dir = default_cache_dir(ckpt, out)
    assert len([d for d in cache_dir.iterdir() if (d / "manifest.json").is_file()]) == 4
    assert (out / "baselines" / "untrained" / "rotation_full.png").is_file()
    assert json.loads((out / "results.json").read_text())["baselines"] == results["baselines"]
    md = (out / "results.md").read_text()
    assert "| toy (3diebench) | untrained (baseline): full |" in md
    assert "| toy (3diebench) | floor: constant / majority |" in md
    assert "| toy (3diebench) | floor: chance |" in md
    assert "constant_r2_global" not in md.splitlines()[4]  # the table's header


def test_no_baselines_by_default_and_unknown_names_fail_first(initial_checkpoint, tmp_path):
    config, ckpt = initial_checkpoint
    assert config["eval"]["baselines"] == []
    eval_cfg = {**config["eval"], "num_workers": 0, "probes": PROBES, "baselines": ["random"]}
    with pytest.raises(KeyError, match=r"unknown baseline 'random'; known: untrained"):
        evaluate_checkpoint(ckpt, eval_cfg, tmp_path / "eval", progress=False)
    assert not (tmp_path / "eval" / "features").exists()  # nothing extracted before
