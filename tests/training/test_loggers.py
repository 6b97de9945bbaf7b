"""Pretraining's logger is any Lightning logger by import path (``logger.target`` +
``logger.kwargs``): the shipped options, a class of the user's, and bad targets named."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from equissl.training.pretrain import build_logger
from tests.conftest import compose_pretrain


def test_shipped_options(tmp_path):
    tb = build_logger(compose_pretrain(["logger=tensorboard"])["logger"], tmp_path)
    assert isinstance(tb, TensorBoardLogger) and Path(tb.log_dir) == tmp_path / "tb"
    csv = build_logger(compose_pretrain(["logger=csv"])["logger"], tmp_path)
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
    logger = build_logger(cfg, tmp_path)
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
