"""The ``trainer`` section reaches Lightning without Lightning's own defaults spelled out."""

import dataclasses
import inspect

import lightning.pytorch as pl

from equissl.config import TrainerConfig
from equissl.training.pretrain import trainer_arguments


def test_every_trainer_key_is_a_trainer_argument():
    known = inspect.signature(pl.Trainer.__init__).parameters
    assert {f.name for f in dataclasses.fields(TrainerConfig)} <= set(known)


def test_lightning_defaults_are_left_out_and_the_rest_passed():
    values = dataclasses.asdict(TrainerConfig())
    assert trainer_arguments(values) == {"max_epochs": values["max_epochs"]}
    changed = {**values, "limit_train_batches": 0.5, "precision": "bf16-mixed", "devices": 2}
    args = trainer_arguments(changed)
    assert args["limit_train_batches"] == 0.5 and args["precision"] == "bf16-mixed"
    assert args["devices"] == 2 and "log_every_n_steps" not in args


def test_a_run_shorter_than_the_logging_interval_still_logs():
    values = dataclasses.asdict(TrainerConfig())
    assert trainer_arguments({**values, "max_steps": 20})["log_every_n_steps"] == 2
    assert trainer_arguments({**values, "max_steps": 5})["log_every_n_steps"] == 1
    assert "log_every_n_steps" not in trainer_arguments({**values, "max_steps": 5000})
    assert "log_every_n_steps" not in trainer_arguments({**values, "max_steps": -1})
