"""data.global_batch_size: the per-device batch derived from the Trainer's world size.

(Two real CPU processes derive half and store it in the checkpoint:
``tests/test_cli.py::test_ddp_on_two_cpu_processes``.)
"""

import logging

import lightning.pytorch as pl
import pytest

from equissl.checkpointing import load_checkpoint
from equissl.training.pretrain import pretrain, resolve_batch
from tests.conftest import TOY, compose_pretrain


def trainer(devices: object, num_nodes: int = 1) -> tuple[pl.Trainer, dict]:
    """A CPU Trainer (not started: no processes are launched) and its config section."""
    cfg = {"accelerator": "cpu", "devices": devices, "num_nodes": num_nodes}
    strategy = "auto" if devices in (1, "auto") else "ddp"
    t = pl.Trainer(**cfg, strategy=strategy, logger=False, enable_checkpointing=False)
    return t, cfg


def test_two_devices_derive_half(caplog):
    t, cfg = trainer(2)
    data = {"batch_size": 128, "global_batch_size": 8}
    with caplog.at_level(logging.INFO, logger="equissl.training.pretrain"):
        assert resolve_batch(data, t.world_size, cfg) == 4
    assert data == {"batch_size": 4, "global_batch_size": 8}
    assert "data.global_batch_size=8, data.batch_size=4 per device" in caplog.text
    assert "trainer.devices=2 x trainer.num_nodes=1 = 2 rank(s)" in caplog.text


def test_one_device_keeps_it_whole_and_auto_is_resolved_by_the_trainer():
    for devices in (1, "auto"):  # "auto" on CPU: the Trainer resolves it to 1 process
        t, cfg = trainer(devices)
        data = {"batch_size": 128, "global_batch_size": 8}
        assert resolve_batch(data, t.world_size, cfg) == 8 and data["batch_size"] == 8


def test_nodes_count_and_unset_global_batch_keeps_the_per_device_one(caplog):
    t, cfg = trainer(2, num_nodes=2)
    assert t.world_size == 4
    assert resolve_batch({"batch_size": 128, "global_batch_size": 1024}, 4, cfg) == 256
    data = {"batch_size": 32, "global_batch_size": None}
    with caplog.at_level(logging.INFO, logger="equissl.training.pretrain"):
        assert resolve_batch(data, t.world_size, cfg) == 32
    assert "data.global_batch_size=128, data.batch_size=32" in caplog.text  # both logged
    assert "(set by data.batch_size)" in caplog.text


@pytest.mark.parametrize("global_batch", [9, 0])
def test_a_global_batch_that_does_not_divide_names_the_keys(global_batch):
    t, cfg = trainer(2)
    data = {"batch_size": 128, "global_batch_size": global_batch}
    with pytest.raises(ValueError) as err:
        resolve_batch(data, t.world_size, cfg)
    message = str(err.value)
    assert f"data.global_batch_size={global_batch}" in message
    assert "data.batch_size" in message and "trainer.devices=2" in message
    assert "2 rank(s)" in message and data["batch_size"] == 128


def test_the_checkpoint_stores_the_derived_batch(iebench_tree, tmp_path):
    config = compose_pretrain(
        [f"data.root={iebench_tree}", *TOY, "data.global_batch_size=2", "trainer.max_steps=1"]
    )
    assert config["data"]["batch_size"] == 4  # TOY's per-device batch, replaced at start
    ckpt = load_checkpoint(pretrain(config, tmp_path / "run"))
    data = ckpt["equissl"]["config"]["data"]
    assert (data["batch_size"], data["global_batch_size"]) == (2, 2)
    assert ckpt["global_step"] == 1


def test_start_fails_before_training_when_it_does_not_divide(iebench_tree, tmp_path):
    config = compose_pretrain(
        [
            f"data.root={iebench_tree}",
            *TOY,
            "data.global_batch_size=3",
            "trainer.devices=2",
            "trainer.strategy=ddp",
            "trainer.max_steps=1",
        ]
    )
    with pytest.raises(ValueError, match=r"data.global_batch_size=3 does not split evenly"):
        pretrain(config, tmp_path / "run")  # raised before any process is launched
    assert not list(tmp_path.rglob("*.ckpt"))
