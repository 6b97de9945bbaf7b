"""When RunCheckpoint writes last.ckpt: end-of-epoch checkpoints of short epochs are thinned
by ``checkpoint.epoch_min_interval_s``; step, final and signal checkpoints never are."""

from __future__ import annotations

from types import SimpleNamespace

from equissl.checkpointing import config_range_problems
from equissl.training import checkpoints
from equissl.training.checkpoints import RunCheckpoint
from equissl.training.signals import StopSignals
from tests.conftest import compose_pretrain


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTrainer(SimpleNamespace):
    """What on_train_batch_end reads; ``saved`` lists the steps checkpointed."""

    def __init__(self, max_steps: int) -> None:
        super().__init__(
            global_step=0, max_steps=max_steps, is_last_batch=False, current_epoch=0,
            world_size=1, saved=[],
        )  # fmt: skip

    def save_checkpoint(self, path, weights_only=False) -> None:
        self.saved.append(self.global_step)


def run_epochs(monkeypatch, interval: float, every_n_steps: int = 0) -> list[int]:
    """10 epochs of 2 steps, 5 s per step; the steps at which last.ckpt was written."""
    clock = Clock()
    monkeypatch.setattr(checkpoints.time, "monotonic", clock)
    cb = RunCheckpoint("x.ckpt", every_n_steps, 1, StopSignals(), epoch_min_interval_s=interval)
    trainer = FakeTrainer(max_steps=20)
    for step in range(1, 21):
        clock.now += 5.0
        trainer.global_step = step
        trainer.is_last_batch = step % 2 == 0
        trainer.current_epoch = (step - 1) // 2
        cb.on_train_batch_end(trainer, None, None, None, 0)
    return trainer.saved


def test_every_epoch_without_an_interval(monkeypatch):
    assert run_epochs(monkeypatch, 0.0) == list(range(2, 21, 2))


def test_short_epochs_are_checkpointed_at_most_every_interval(monkeypatch):
    # 10 s epochs, 25 s interval: epochs ending at 30 s and 60 s (steps 6, 12, 18), + final
    assert run_epochs(monkeypatch, 25.0) == [6, 12, 18, 20]


def test_step_checkpoints_are_not_thinned(monkeypatch):
    assert run_epochs(monkeypatch, 1000.0, every_n_steps=4) == [4, 8, 12, 16, 20]


def test_the_interval_has_a_range():
    cfg = compose_pretrain(["checkpoint.epoch_min_interval_s=-1"])
    assert any("checkpoint.epoch_min_interval_s" in p for p in config_range_problems(cfg))
    assert not config_range_problems(compose_pretrain(["checkpoint.epoch_min_interval_s=0"]))
