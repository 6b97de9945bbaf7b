"""Shared helpers of the fault-tolerance tests: tiny fast runs, in-process and as commands."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from equissl.apps.hydra_main import _resolved
from equissl.checkpointing import load_checkpoint
from equissl.lightning_compat import checkpoint_loader_states
from equissl.training.pretrain import pretrain

SCRIPT = Path(sys.executable).parent / "equissl-pretrain"
REFERENCE_STEPS = 9  # two epochs and a step, at 4 steps per epoch


def _write_iebench_tree(root: Path) -> Path:
    # tests/conftest.py by path: several conftest modules share the name "conftest"
    spec = importlib.util.spec_from_file_location(
        "equissl_tests_conftest", Path(__file__).resolve().parents[1] / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_iebench_tree(root)


def fast_args(root: Path, steps: int, *extra: str) -> list[str]:
    """Overrides of a fast CPU run (timm's test_resnet) on the ``iebench_tree`` tree (9 objects,
    batch 2: 4 steps per epoch) that logs every step's loss to ``step_losses.jsonl``."""
    return [
        f"data.root={root}",
        "trainer=cpu",
        "data.batch_size=2",
        "data.image_size=32",
        "data.num_workers=0",
        "logger=csv",
        "trainer.log_every_n_steps=1",
        "logger.step_losses=true",
        "logger.view_grid_every_n_steps=0",
        "trainer.enable_progress_bar=false",
        "trainer.deterministic=true",
        # timm's 0.4 M-parameter test ResNet: small checkpoints, fast steps
        "backbone.name=test_resnet",
        "method.inv_dim=48",
        "method.projector=[64,64,64]",
        "trainer.max_epochs=-1",
        f"trainer.max_steps={steps}",
        *extra,
    ]


def compose_pretrain(overrides: list[str]) -> dict:
    with initialize_config_module("equissl.configs", version_base="1.3"):
        return _resolved(compose("pretrain", overrides=overrides))


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``equissl-pretrain ARGS`` in the background (the console script, as users run it)."""
    return subprocess.Popen(
        [str(SCRIPT), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def run_dir(cwd: Path) -> Path:
    (d,) = list((cwd / "outputs" / "pretrain").iterdir())
    return d


def wait_for_steps(proc: subprocess.Popen, cwd: Path, steps: int, timeout: float = 300) -> None:
    """Block until the run in ``cwd`` has logged ``steps`` step losses."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        files = (
            list((cwd / "outputs").rglob("step_losses.jsonl")) if (cwd / "outputs").exists() else []
        )
        if files and len(files[0].read_text().splitlines()) >= steps:
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"run ended early ({proc.returncode}): {proc.stderr.read()[-3000:]}"
            )
        time.sleep(0.02)
    raise AssertionError(f"no {steps} steps within {timeout} s")


def assert_same_state(a: Path, b: Path) -> None:
    """Parameters/buffers, optimizer state and step of two checkpoints are bitwise equal."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca["global_step"] == cb["global_step"]
    sa, sb = ca["state_dict"], cb["state_dict"]
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    oa, ob = ca["optimizer_states"][0]["state"], cb["optimizer_states"][0]["state"]
    assert oa.keys() == ob.keys()
    for k in oa:
        for name in oa[k]:
            assert torch.equal(torch.as_tensor(oa[k][name]), torch.as_tensor(ob[k][name])), (
                f"optimizer state {k}.{name} differs"
            )
    loaders = checkpoint_loader_states(ca)
    assert loaders and loaders == checkpoint_loader_states(cb)  # the same loader position


# Fixtures shared by the test modules (imported there): one tree, one uninterrupted run.
@pytest.fixture(scope="session")
def ft_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_iebench_tree(tmp_path_factory.mktemp("ft") / "3DIEBench")


@pytest.fixture(scope="session")
def reference(ft_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of an uninterrupted in-process run of ``REFERENCE_STEPS`` steps."""
    run = tmp_path_factory.mktemp("reference")
    pretrain(compose_pretrain(fast_args(ft_tree, REFERENCE_STEPS)), run)
    return run
