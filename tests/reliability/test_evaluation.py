"""Evaluation is reproducible, never serves stale features, and leaves nothing behind when
it cannot start."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from equissl.apps.hydra_main import _resolved
from equissl.eval.evaluate import evaluate_checkpoint
from equissl.training.pretrain import pretrain

OVERRIDES = [
    "trainer=cpu",
    "data.batch_size=4",
    "data.image_size=32",
    "data.num_workers=0",
    "logger=csv",
    "trainer.max_steps=2",
    "trainer.enable_progress_bar=false",
    "eval.num_workers=0",
    "eval.probes.classification.epochs=3",
    "eval.probes.rotation.epochs=3",
    "probe=[classification,rotation]",
]


def trained(tree: Path, tmp_path: Path) -> tuple[Path, dict]:
    with initialize_config_module("equissl.configs", version_base="1.3"):
        config = _resolved(compose("pretrain", overrides=[f"data.root={tree}", *OVERRIDES]))
    return pretrain(config, tmp_path / "run"), config


@pytest.mark.e2e
def test_two_identical_evaluations_agree(iebench_tree, tmp_path):
    ckpt, config = trained(iebench_tree, tmp_path)
    runs = []
    for i, noise in enumerate((1, 12345)):
        torch.manual_seed(noise)  # whatever the process's RNG state
        np.random.seed(noise)
        evaluate_checkpoint(ckpt, config["eval"], tmp_path / f"eval{i}", progress=False)
        runs.append(json.loads((tmp_path / f"eval{i}" / "results.json").read_text())["metrics"])
    # 3 parts x (classification 2 + 3 floors, rotation 3 + 3 floors)
    assert runs[0] == runs[1] and len(runs[0]) == 33
    other = {
        **config["eval"],
        "probes": {k: {**v, "seed": 7} for k, v in config["eval"]["probes"].items()},
    }
    changed = evaluate_checkpoint(ckpt, other, tmp_path / "eval_seed7", progress=False)
    assert changed["metrics"] != runs[0]  # the seed is really used


def cache_entries(features: Path) -> list[str]:
    """The complete cache directories (partial ones are hidden and removed on failure)."""
    return sorted(p.name for p in features.iterdir() if not p.name.startswith("."))


@pytest.mark.e2e
def test_changed_data_under_the_same_root_is_re_extracted(iebench_tree, tmp_path):
    ckpt, config = trained(iebench_tree, tmp_path)
    features = tmp_path / "run" / "features"  # beside the checkpoint's run, not per evaluation
    evaluate_checkpoint(ckpt, config["eval"], tmp_path / "run" / "eval", progress=False)
    first = cache_entries(features)
    assert len(first) == 2  # train and val
    evaluate_checkpoint(ckpt, config["eval"], tmp_path / "run" / "eval_other", progress=False)
    assert cache_entries(features) == first  # cache hit from another evaluation directory
    # replace one val object's image by another object's: same root, same split files
    val = np.load(iebench_tree / "data" / "val_images.npy")
    a, b = (iebench_tree / e.strip("/") for e in val[:2])
    (a / "image_0.jpg").write_bytes((b / "image_3.jpg").read_bytes())
    evaluate_checkpoint(ckpt, config["eval"], tmp_path / "run" / "eval", progress=False)
    now = cache_entries(features)
    assert len(now) == 3 and set(first) < set(now)  # the val features were re-extracted
    # a changed split file (the same objects and labels in another order) re-extracts too
    for suffix in ("images", "labels"):
        array = np.load(iebench_tree / "data" / f"train_{suffix}.npy")
        np.save(iebench_tree / "data" / f"train_{suffix}.npy", array[::-1].copy())
    evaluate_checkpoint(ckpt, config["eval"], tmp_path / "run" / "eval", progress=False)
    assert len(cache_entries(features)) == 4
    # another storage dtype is another key
    half = {**config["eval"], "cache_dtype": "float16"}
    evaluate_checkpoint(ckpt, half, tmp_path / "run" / "eval_fp16", progress=False)
    assert len(cache_entries(features)) == 6


def test_missing_checkpoint_leaves_no_folder(tmp_path):
    script = Path(sys.executable).parent / "equissl-evaluate"
    missing = tmp_path / "run" / "checkpoints" / "last.ckpt"
    res = subprocess.run(
        [str(script), f"checkpoint={missing}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0 and str(missing) in res.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("eval_*"))
