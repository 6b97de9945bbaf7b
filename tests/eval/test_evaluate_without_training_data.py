"""The evaluation stage rebuilds the model from the checkpoint alone: the training data may
be gone, and data that do not fit the model are refused naming the mismatch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from equissl.eval.evaluate import eval_datasets, evaluate_checkpoint
from equissl.ssl.loading import load_method
from equissl.training.pretrain import pretrain
from tests.conftest import compose_pretrain, write_iebench_tree

REAL_FAST = [
    "method=vicreg",
    "method.projector=[16]",
    "trainer=cpu",
    "data.batch_size=4",
    "data.image_size=32",
    "data.num_workers=0",
    "logger=csv",
    "logger.name=none",
    "trainer.enable_progress_bar=false",
    "trainer.max_steps=2",
]


def val_only_root(src: Path, dst: Path) -> Path:
    """A new root made of the val objects only: the val split lists them, the probe-training
    split lists copies of them under other ids (the loader refuses splits that share
    objects, the train/val leakage check)."""
    entries = np.load(src / "data" / "val_images.npy")
    labels = np.load(src / "data" / "val_labels.npy")
    copies = np.array([e.rstrip("/") + "copy/" for e in entries])
    for entry, copy in zip(entries, copies, strict=True):
        shutil.copytree(src / entry.strip("/"), dst / entry.strip("/"))
        shutil.copytree(src / entry.strip("/"), dst / copy.strip("/"))
    (dst / "data").mkdir()
    for split, listed in (("train", copies), ("val", entries)):
        np.save(dst / "data" / f"{split}_images.npy", listed)
        np.save(dst / "data" / f"{split}_labels.npy", labels)
    return dst


@pytest.mark.e2e
def test_evaluate_after_the_training_data_are_gone(iebench_tree, tmp_path):
    train_root = shutil.copytree(iebench_tree, tmp_path / "copy")
    config = compose_pretrain([f"data.root={train_root}", *REAL_FAST])
    ckpt = pretrain(config, tmp_path / "run")
    new_root = val_only_root(train_root, tmp_path / "val_only")
    shutil.rmtree(train_root)

    script = Path(sys.executable).parent / "equissl-evaluate"
    res = subprocess.run(
        [
            str(script),
            f"checkpoint={ckpt}",
            f"data_root={new_root}",
            "probe=[classification,rotation]",
            "eval.probes.classification.epochs=1",
            "eval.probes.rotation.epochs=1",
            "eval.num_workers=0",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (out,) = (tmp_path / "run").glob("eval_*/results.json")
    results = json.loads(out.read_text())
    assert {"full/classification/top1", "full/rotation/r2_global"} <= set(results["metrics"])
    assert results["config"]["data"]["root"] == str(train_root)  # the training config, kept


def test_data_that_do_not_fit_the_model_are_refused(iebench_tree, iebench_t_tree, tmp_path):
    config = compose_pretrain([f"data.root={iebench_tree}", *REAL_FAST, "trainer.max_steps=0"])
    ckpt = pretrain(config, tmp_path / "run")
    with pytest.raises(ValueError, match=r"expects 7-value latents .* has 10-value latents"):
        evaluate_checkpoint(
            ckpt, config["eval"], tmp_path / "eval", {"root": iebench_t_tree}, progress=False
        )
    _, meta = load_method(ckpt)
    with pytest.raises(
        ValueError,
        match=r"does not fit the checkpoint's model: it has action "
        r"space .*'latent_dim': 10.*the model's: .*7",
    ):
        eval_datasets(meta, {"root": str(iebench_t_tree), "translation": True})
    small = write_iebench_tree(tmp_path / "small", size=16)  # another view shape
    with pytest.raises(
        ValueError,
        match=r"view shape \[3, 16, 16\] \(the model was trained on "
        r"\[3, 32, 32\]\)",
    ):
        eval_datasets(meta, {"root": str(small), "image_size": 16})
