"""End-to-end: the console scripts on a tree in the real 3DIEBench layout."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from equissl.apps.hydra_main import _resolved
from equissl.checkpointing import load_checkpoint
from equissl.ssl.base import NonFiniteLossError
from equissl.training.pretrain import pretrain

PROBE_EPOCHS = [f"eval.probes.{p}.epochs=2" for p in ("classification", "rotation", "color")]
FAST = [
    "trainer=cpu",
    "data.batch_size=4",
    "data.image_size=32",
    "data.num_workers=0",
    "logger=csv",
    "trainer.log_every_n_steps=1",
]


def run(app: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the installed console script ``equissl-<app>`` (DDP re-launches it by name)."""
    script = Path(sys.executable).parent / f"equissl-{app}"
    return subprocess.run(
        [str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def compose_pretrain(overrides: list[str]) -> dict:
    with initialize_config_module("equissl.configs", version_base="1.3"):
        return _resolved(compose("pretrain", overrides=overrides))


@pytest.mark.e2e  # the console script through pretraining and every default probe (~40 s)
def test_pretrain_then_evaluate(iebench_tree, tmp_path):
    args = [
        f"data.root={iebench_tree}",
        *FAST,
        "trainer.max_steps=2",
        "evaluate_after=true",
        *PROBE_EPOCHS,
        "eval.num_workers=0",
    ]
    res = run("pretrain", *args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    run_dirs = list((tmp_path / "outputs" / "pretrain").iterdir())
    assert len(run_dirs) == 1 and run_dirs[0].name.startswith("sie_3diebench_")
    ckpt = run_dirs[0] / "checkpoints" / "last.ckpt"
    meta = load_checkpoint(ckpt)["equissl"]  # weights_only load
    assert meta["config"]["method"]["name"] == "sie"
    assert meta["config"]["method"]["weights"]["equivariance"] == 4.5  # 0.45 x 10
    assert meta["spec"]["view_shape"] == [3, 32, 32] and meta["parts"]["equi"] == 256
    results = json.loads((run_dirs[0] / "eval" / "results.json").read_text())
    assert set(results) == {
        "checkpoint", "checkpoint_sha1", "checkpoint_step", "method", "data", "config",
        "metrics", "skipped", "plots", "floors", "protocols",
    }  # fmt: skip
    assert results["checkpoint_step"] == load_checkpoint(ckpt)["global_step"]
    report = (run_dirs[0] / "eval" / "results.md").read_text()
    head, _, rest = report.partition("## Every metric")
    assert "## Headline" in head and "rotation/r2_global ↑" in head and rest  # headline first
    assert "classification/balanced_top1" not in head and "classification/balanced_top1" in rest
    assert "translation" in results["skipped"] and "lie" in results["skipped"]
    assert "sequence representation" in results["skipped"]["path_integration"]
    assert results["plots"]["rotation/equi"] == "rotation_equi.png"
    assert results["method"] == "sie" and results["data"] == "3diebench"
    for part in ("full", "inv", "equi"):
        for key in (
            "classification/top1",
            "classification/balanced_top1",
            "rotation/r2_global",
            "rotation/r2_sklearn",
        ):
            assert f"{part}/{key}" in results["metrics"]
    assert "| sie (3diebench) | equi |" in res.stdout


@pytest.mark.e2e
def test_evaluate_alone_in_a_sweep_and_after_extending(iebench_tree, tmp_path):
    args = [
        f"data.root={iebench_tree}",
        *FAST,
        "trainer.max_steps=2",
        "eval.num_workers=0",
    ]
    res = run("pretrain", *args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    run_dirs = list((tmp_path / "outputs" / "pretrain").iterdir())
    ckpt = run_dirs[0] / "checkpoints" / "last.ckpt"

    # the evaluation stage on its own, from the checkpoint alone
    ev = run(
        "evaluate",
        f"checkpoint={ckpt}",
        "probe=[rotation]",
        "eval.probes.rotation.epochs=2",
        "eval.num_workers=0",
        cwd=tmp_path,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    out = next(run_dirs[0].glob("eval_*/results.json"))
    metrics = json.loads(out.read_text())["metrics"]
    assert "equi/rotation/r2_global" in metrics and not any("classification" in k for k in metrics)
    assert (out.parent / "results.md").is_file() and (out.parent / "rotation_equi.png").is_file()

    # a multirun sweep ends with one combined table
    sweep = run(
        "evaluate",
        "-m",
        f"checkpoint={ckpt}",
        "eval.probes.rotation.epochs=1,2",
        "eval.num_workers=0",
        "probe=[rotation]",
        cwd=tmp_path,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    combined = list((tmp_path / "multirun" / "evaluate").glob("*/combined.json"))
    assert len(combined) == 1 and len(json.loads(combined[0].read_text())) == 2
    assert "combined results of 2 run(s)" in sweep.stdout

    # same command with a larger budget: same run directory, resumes from last.ckpt
    again = run("pretrain", *args, "trainer.max_steps=3", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert list((tmp_path / "outputs" / "pretrain").iterdir()) == run_dirs
    assert load_checkpoint(ckpt)["global_step"] == 3
    assert not (run_dirs[0] / "run.lock").exists()  # released at the end


@pytest.mark.e2e
@pytest.mark.parametrize(
    "override, message",
    [
        ("method.sim_cooef=1", "sim_cooef"),
        ("data.batch_size=many", "batch_size"),
        ("method=nosuchmethod", "nosuchmethod"),
    ],
)
def test_config_errors_fail_at_start(iebench_tree, tmp_path, override, message):
    res = run("pretrain", f"data.root={iebench_tree}", "trainer=cpu", override, cwd=tmp_path)
    assert res.returncode != 0
    assert message in res.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.ckpt"))


def test_untrained_checkpoint_and_nan_guard(iebench_tree, tmp_path):
    config = compose_pretrain(
        [f"data.root={iebench_tree}", *FAST, "trainer.max_steps=0", "method=vicreg"]
    )
    ckpt = pretrain(config, tmp_path / "run")
    state = load_checkpoint(ckpt)
    assert state["global_step"] == 0 and state["equissl"]["config"]["method"]["name"] == "vicreg"

    from equissl.ssl.loading import build_method
    from equissl.training.datamodule import PretrainDataModule

    dm = PretrainDataModule(config["data"], config["method"]["num_views"])
    method = build_method(config, dm.spec)
    batch = torch.utils.data.default_collate([dm.train_set[i] for i in range(4)])
    batch["views"][0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        method.training_step(batch, 0)


@pytest.mark.e2e
def test_ddp_on_two_cpu_processes(iebench_tree, tmp_path):
    res = run(
        "pretrain",
        f"data.root={iebench_tree}",
        *FAST,
        "trainer.max_steps=2",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "data.global_batch_size=8",  # 2 ranks: 4 per device, replacing FAST's batch_size=4
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ckpts = list((tmp_path / "outputs").rglob("last.ckpt"))
    assert len(ckpts) == 1
    state = load_checkpoint(ckpts[0])
    assert state["global_step"] == 2
    data = state["equissl"]["config"]["data"]
    assert (data["global_batch_size"], data["batch_size"]) == (8, 4)
    assert "data.global_batch_size=8, data.batch_size=4 per device" in res.stdout + res.stderr


@pytest.mark.e2e
def test_generate_and_validate_pde(tmp_path):
    out = tmp_path / "kdv"
    res = run(
        "generate",
        "data=pde_kdv",
        f"out={out}",
        "num_trajectories=3",
        "params.nx=32",
        "params.nt=12",
        "params.substeps=4",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    with h5py.File(next(out.glob("*.h5"))) as f:  # LPSDA's window by default: last 12 of 250
        assert f.attrs["time_window"] == "lpsda"
        t = f["t"][0]
        assert np.allclose(t, np.linspace(0, t[-1], 250)[-12:])
    ok = run("validate", str(out), cwd=tmp_path)
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = out / "broken.h5"
    bad.write_bytes(b"not hdf5")
    fail = run("validate", str(out), cwd=tmp_path)
    assert fail.returncode == 1 and str(bad) in fail.stdout
    typo = run("generate", "data=pde_kdv", f"out={out}", "num_trajectorys=3", cwd=tmp_path)
    assert typo.returncode != 0 and "num_trajectorys" in typo.stderr + typo.stdout


@pytest.mark.e2e
def test_sweep_over_budgets_keeps_runs_apart(iebench_tree, tmp_path):
    # the budget is not in a single run's hash (extension), but sweep jobs hash every override
    res = run("pretrain", "-m", f"data.root={iebench_tree}", *FAST, "trainer.max_steps=1,2",
              "backbone=resnet18_cifar", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    runs = sorted((tmp_path / "multirun" / "pretrain").glob("sie_3diebench_*/checkpoints"))
    assert len(runs) == 2
    steps = sorted(load_checkpoint(r / "last.ckpt")["global_step"] for r in runs)
    assert steps == [1, 2]
