"""Run folders follow the experiment: cosmetic overrides continue the same run, names are
readable, and a folder named by the earlier rule is found rather than orphaned."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig

from equissl.apps.run_folder import readable, run_dir, run_hash

BASE = ["data.root=/data/3DIEBench", "method.optim.lr=0.5", "seed=1"]


@pytest.mark.parametrize(
    "cosmetic",
    [
        "trainer.enable_progress_bar=false",
        "data.num_workers=0",
        "logger=csv",
        "logger.view_grid_every_n_steps=0",
        "eval.probes.rotation.epochs=2",
        "probe=[rotation]",
        "evaluate_after=true",
        "trainer.max_steps=5000",
        "checkpoint.every_n_steps=10",
        "speed.channels_last=true",
        "trainer.devices=2",
    ],
)
def test_settings_that_do_not_change_results_keep_the_folder(tmp_path, cosmetic):
    assert run_dir(str(tmp_path), "sie", "3diebench", [*BASE, cosmetic]) == run_dir(
        str(tmp_path), "sie", "3diebench", BASE
    )


@pytest.mark.parametrize(
    "change",
    ["seed=2", "method.optim.lr=0.1", "data.root=/other", "trainer=ddp", "resume_from=a.ckpt"],
)
def test_settings_that_change_results_get_their_own_folder(tmp_path, change):
    a = run_dir(str(tmp_path), "sie", "3diebench", BASE)
    assert run_dir(str(tmp_path), "sie", "3diebench", [*BASE[:-1], change]) != a


def test_names_are_readable_and_typeable_as_hydra_values():
    name = Path(run_dir("outputs/pretrain", "sie", "3diebench", BASE)).name
    assert name.startswith("sie_3diebench_lr-0.5_seed-1_") and len(name.rsplit("_", 1)[1]) == 8
    assert "," not in name and "=" not in name and "/data" not in name
    long = readable([f"method.weights.term{i}=0.{i}" for i in range(30)])
    assert len(long) <= 60


def test_a_folder_named_by_the_earlier_rule_is_continued(tmp_path):
    overrides = [*BASE, "data.num_workers=0"]
    legacy = tmp_path / f"sie_3diebench_{run_hash(overrides)}"
    assert run_dir(str(tmp_path), "sie", "3diebench", overrides) != str(legacy)
    (legacy / "checkpoints").mkdir(parents=True)
    assert run_dir(str(tmp_path), "sie", "3diebench", overrides) == str(legacy)


def test_the_pretrain_config_names_its_folder_with_run_dir():
    with initialize_config_module("equissl.configs", version_base="1.3"):
        cfg = compose("pretrain", overrides=BASE, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        resolved = str(cfg.hydra.run.dir)
    assert resolved == run_dir("outputs/pretrain", "sie", "3diebench", BASE)
