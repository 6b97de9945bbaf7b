"""``eval.ood_root``: heads trained on the data's train split, also scored on the val split
of another root (seq-JEPA's 3DIEBench-OOD protocol), with that root's own floors."""

from __future__ import annotations

import json

import pytest

from equissl.datasets.iebench_format import DatasetFormatError
from equissl.eval.evaluate import evaluate_checkpoint
from tests.conftest import write_iebench_tree
from tests.eval.conftest import fast_probes

PROBES = fast_probes(batch_size=8)


def test_ood_root_scores_the_same_heads_on_shifted_rotations(initial_checkpoint, tmp_path):
    config, ckpt = initial_checkpoint
    ood_root = write_iebench_tree(tmp_path / "3DIEBench-OOD", seed=1, ood=True)
    eval_cfg = {**config["eval"], "num_workers": 0, "probes": PROBES, "ood_root": str(ood_root)}
    out = tmp_path / "eval"
    results = evaluate_checkpoint(ckpt, eval_cfg, out, progress=False)
    ood = results["ood"]
    assert ood["root"] == str(ood_root)
    assert set(ood["metrics"]) == set(results["metrics"])  # every probe, part and floor
    rot = "full/rotation/constant_r2_global"
    # the OOD pairs have their own target distribution, so their own constant floor
    assert ood["metrics"][rot] != results["metrics"][rot]
    card = ood["protocols"]["rotation"]
    assert card["test_split"] == f"val of {ood_root}" and card["train_split"] == "train"
    saved = json.loads((out / "results.json").read_text())
    assert saved["ood"]["metrics"] == ood["metrics"]
    md = (out / "results.md").read_text()
    assert "| ood: full |" in md and "| ood floor: constant / majority |" in md
    assert all((out / p).is_file() for p in ood["plots"].values())
    # every part's rotation scatter in one figure, beside the per-part ones
    assert results["plots"]["rotation"] == "rotation.png" and (out / "rotation.png").is_file()
    assert ood["plots"]["rotation"] == "ood/rotation.png"


def test_an_ood_root_that_does_not_fit_is_named_before_any_probe(initial_checkpoint, tmp_path):
    config, ckpt = initial_checkpoint
    other = write_iebench_tree(tmp_path / "3DIEBench-T", latent_dim=10)
    eval_cfg = {**config["eval"], "num_workers": 0, "probes": PROBES, "ood_root": str(other)}
    with pytest.raises(ValueError, match=r"eval.ood_root=.*3DIEBench-T: .*10-value latents"):
        evaluate_checkpoint(ckpt, eval_cfg, tmp_path / "eval", progress=False)
    missing = {**eval_cfg, "ood_root": str(tmp_path / "nowhere")}
    with pytest.raises(DatasetFormatError, match=r"eval.ood_root=.*nowhere: dataset root"):
        evaluate_checkpoint(ckpt, missing, tmp_path / "eval", progress=False)
    assert not (tmp_path / "eval" / "results.json").exists()
