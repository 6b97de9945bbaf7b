"""Pretraining's logger is any Lightning logger by import path (``logger.target`` +
``logger.kwargs``): the shipped options, a class of the user's, and bad targets named."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from equissl.training.pretrain import build_logger, pretrain
from tests.conftest import TOY, compose_pretrain


def test_shipped_options(tmp_path):
    [tb] = build_logger(compose_pretrain(["logger=tensorboard"])["logger"], tmp_path)
    assert isinstance(tb, TensorBoardLogger) and Path(tb.log_dir) == tmp_path / "tb"
    [csv] = build_logger(compose_pretrain(["logger=csv"])["logger"], tmp_path)
    assert isinstance(csv, CSVLogger) and Path(csv.log_dir).parent == tmp_path / "csv"
    assert (
        build_logger(compose_pretrain(["logger=csv", "logger.name=none"])["logger"], tmp_path)
        is False
    )
    wandb = compose_pretrain(["logger=wandb"])["logger"]
    assert wandb["target"] == "lightning.pytorch.loggers.WandbLogger"


def test_any_lightning_logger_by_import_path(tmp_path):
    cfg = compose_pretrain(
        ["logger.target=lightning.pytorch.loggers.CSVLogger", "logger.kwargs={name: mine}"]
    )["logger"]
    [logger] = build_logger(cfg, tmp_path)
    assert isinstance(logger, CSVLogger) and logger.name == "mine"
    assert Path(logger.save_dir) == tmp_path  # the run folder, as no save_dir was given


@pytest.mark.parametrize(
    "target, message",
    [
        ("lightning.pytorch.loggers.NoSuchLogger", "cannot import it"),
        ("collections.OrderedDict", "is not a Lightning logger class"),
    ],
)
def test_bad_targets_are_named(tmp_path, target, message):
    cfg = {**compose_pretrain([])["logger"], "target": target}
    with pytest.raises(ValueError, match=rf"logger.target={target}.*{message}"):
        build_logger(cfg, tmp_path)


def test_a_bad_extra_logger_is_named(tmp_path):
    cfg = {**compose_pretrain([])["logger"], "also": [{"target": "collections.OrderedDict"}]}
    with pytest.raises(ValueError, match=r"logger.also\[0\].target=collections.OrderedDict"):
        build_logger(cfg, tmp_path)
    with pytest.raises(ValueError, match=r"logger.also\[0\] must be"):
        build_logger({**cfg, "also": ["wandb"]}, tmp_path)


def test_tensorboard_and_wandb_offline_at_once(iebench_tree, tmp_path, monkeypatch):
    """``logger=tensorboard_wandb`` on a real run with wandb offline: both get the scalars."""
    wandb = pytest.importorskip("wandb")  # in the [test] extra; a plain install may lack it
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = compose_pretrain(
        [
            *TOY,
            f"data.root={iebench_tree}",
            "logger=tensorboard_wandb",
            "logger.name=tensorboard_wandb",  # TOY switches logging off
            "logger.also.0.kwargs.project=equissl-test",
            "trainer.max_steps=4",
            "trainer.log_every_n_steps=1",
        ]
    )
    pretrain(config, tmp_path / "run")
    wandb.finish()  # Lightning leaves the run open
    events = list((tmp_path / "run" / "tb").rglob("events.out.tfevents.*"))
    tags = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "train/loss" in tags
    # wandb's offline run record (protobuf records: the keys are stored as plain bytes)
    [record] = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    written = record.read_bytes()
    assert all(tag.encode() in written for tag in tags), tags
