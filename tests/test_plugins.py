"""Parts added from outside the package: one module named in ``EQUISSL_PLUGINS`` and its
YAML options found through ``hydra.searchpath``, run by the real console scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from equissl.checkpointing import load_checkpoint

TOY_PARTS = Path(__file__).with_name("toy_parts.py")
MODULE = "toy_equissl_method"

METHOD_YAML = """\
# The toy method of tests/toy_parts.py
defaults:
  - toy_schema
  - _self_
name: toy
"""
BACKBONE_YAML = """\
defaults:
  - tiny_cnn_schema
  - _self_
width: 8
"""
DATA_YAML = """\
# The toy dataset of tests/toy_parts.py: made in memory, no data.root
defaults:
  - toy_shapes_schema
  - _self_
name: toy_shapes
"""
PROBE_YAML = """\
# @package eval.probes.feature_norm
defaults:
  - feature_norm_schema
  - _self_
"""
FAST = [
    "trainer=cpu",
    "data.batch_size=4",
    "data.image_size=32",
    "data.num_workers=0",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "eval.num_workers=0",
]


def plugin_dir(tmp: Path) -> tuple[Path, Path]:
    """``(module folder, config folder)``: the plugin module and its YAML options."""
    code = tmp / "plugin"
    code.mkdir()
    shutil.copy(TOY_PARTS, code / f"{MODULE}.py")
    conf = tmp / "plugin_conf"
    for rel, text in (
        ("method/toy.yaml", METHOD_YAML),
        ("backbone/tiny_cnn.yaml", BACKBONE_YAML),
        ("probe/feature_norm.yaml", PROBE_YAML),
        ("data/toy_shapes.yaml", DATA_YAML),
    ):
        (conf / rel).parent.mkdir(parents=True, exist_ok=True)
        (conf / rel).write_text(text)
    return code, conf


def run(app: str, *args: str, cwd: Path, plugin: Path | None) -> subprocess.CompletedProcess:
    """``equissl-<app>`` in a fresh process, with the plugin module importable and named."""
    env = dict(os.environ)
    env.pop("EQUISSL_PLUGINS", None)
    if plugin is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin), env.get("PYTHONPATH", "")]))
        env["EQUISSL_PLUGINS"] = MODULE
    script = Path(sys.executable).parent / f"equissl-{app}"
    return subprocess.run(
        [str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.e2e
def test_toy_method_backbone_probe_and_dataset_from_outside(tmp_path):
    """A method, a backbone, a probe and a dataset whose angle target is named ``rotation``
    (not a quaternion), all from one plugin module and its YAML options."""
    code, conf = plugin_dir(tmp_path)
    listing = run("list", cwd=tmp_path, plugin=code)
    assert listing.returncode == 0, listing.stderr[-3000:]
    for name in ("toy", "toy_ema", "tiny_cnn", "feature_norm", "toy_shapes", "planar_rotation"):
        assert f"  {name} " in listing.stdout
    assert "keys: name, impl, action, num_views" in listing.stdout  # the toy schema's keys

    args = [
        "method=toy",
        "backbone=tiny_cnn",
        f"hydra.searchpath=[file://{conf}]",
        "data=toy_shapes",
        *FAST,
        "trainer.max_steps=2",
        "evaluate_after=true",
        "probe=[classification,rotation,feature_norm]",
        "eval.probes.classification.epochs=1",
        "eval.probes.rotation.epochs=1",
    ]
    res = run("pretrain", *args, cwd=tmp_path, plugin=code)
    assert res.returncode == 0, res.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "pretrain").iterdir()
    assert run_dir.name.startswith("toy_toy_shapes_")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    state = load_checkpoint(ckpt)
    assert state["global_step"] == 2
    meta = state["equissl"]
    assert meta["config"]["method"]["impl"] == "toy" and meta["config"]["method"]["dim"] == 16
    assert meta["config"]["backbone"] == {"impl": "tiny_cnn", "width": 8}
    assert meta["parts"] == {"full": 8} and meta["action"] is None
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    assert results["method"] == "toy" and results["data"] == "toy_shapes"
    assert meta["spec"]["action_space"] == {"kind": "planar_rotation", "params": {}}
    for key in (
        "full/classification/top1",
        "full/rotation/r2_global",
        "full/feature_norm/mean_norm",
    ):
        assert key in results["metrics"]

    # evaluation in a fresh process, from the checkpoint alone
    ev = run(
        "evaluate",
        f"checkpoint={ckpt}",
        f"hydra.searchpath=[file://{conf}]",
        "probe=[feature_norm]",
        "eval.num_workers=0",
        cwd=tmp_path,
        plugin=code,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    (out,) = run_dir.glob("eval_*/results.json")
    metrics = json.loads(out.read_text())["metrics"]
    assert list(metrics) == ["full/feature_norm/mean_norm"]
    assert (
        metrics["full/feature_norm/mean_norm"] == results["metrics"]["full/feature_norm/mean_norm"]
    )

    # without the plugin the checkpoint names what is missing
    missing = run(
        "evaluate",
        f"checkpoint={ckpt}",
        "probe=[classification]",
        "eval.num_workers=0",
        cwd=tmp_path,
        plugin=None,
    )
    assert missing.returncode != 0
    assert "method.impl='toy' is not registered" in missing.stderr
    assert str(ckpt) in missing.stderr


@pytest.mark.e2e
def test_unimportable_plugin_is_named(tmp_path):
    env = dict(os.environ, EQUISSL_PLUGINS="no_such_equissl_plugin")
    script = Path(sys.executable).parent / "equissl-list"
    res = subprocess.run(
        [str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode != 0
    assert "EQUISSL_PLUGINS names 'no_such_equissl_plugin'" in res.stderr
