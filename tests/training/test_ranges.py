"""Numeric settings with a range are checked at start-up, naming the key, before anything
is built or written."""

from __future__ import annotations

import pytest

from equissl.checkpointing import config_range_problems
from equissl.training.pretrain import pretrain
from tests.conftest import TOY, compose_pretrain


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=0", "data.batch_size=0 must be >= 1"),
        ("checkpoint.every_n_steps=-3", "checkpoint.every_n_steps=-3 must be >= 0"),
        ("method.optim.lr=-1", "method.optim.lr=-1.0 must be > 0.0"),
        ("method.optim.lr=0", "method.optim.lr=0.0 must be > 0.0"),
        ("method.momentum.base_tau=1.5", "method.momentum.base_tau=1.5 must be <= 1.0"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0 must be >= 1"),
        ("data.num_workers=-1", "data.num_workers=-1 must be >= 0"),
        ("eval.batch_size=0", "eval.batch_size=0 must be >= 1"),
    ],
)
def test_out_of_range_settings_are_named(tmp_path, override, message):
    config = compose_pretrain(["data.root=unused", *TOY, override])
    assert message in config_range_problems(config)


def test_a_registered_schema_declares_its_own_ranges():
    config = compose_pretrain(["data.root=unused", "data.image_size=-8", "trainer=cpu"])
    assert config_range_problems(config) == ["data.image_size=-8 must be >= 8"]


def test_defaults_are_in_range():
    for experiment in ("quickstart", "sie_3diebench", "lie_vicreg_burgers", "seq_jepa_3diebench"):
        config = compose_pretrain(["data.root=unused", f"experiment={experiment}"])
        assert config_range_problems(config) == [], experiment


def test_pretrain_stops_before_building_anything(tmp_path):
    run = tmp_path / "run"
    config = compose_pretrain(["data.root=/nonexistent", *TOY, "data.batch_size=0"])
    with pytest.raises(ValueError, match=r"settings out of range:\n  data.batch_size=0"):
        pretrain(config, run)
    assert list(run.iterdir()) == []  # the lock was taken and given back, nothing else
