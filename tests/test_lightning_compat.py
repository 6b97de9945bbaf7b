"""Canary for :mod:`equissl.lightning_compat`: each adapter function against the installed
Lightning and torch, with tiny CPU runs (seconds). A failure here names the adapter function
whose Lightning/torch internal moved; fix it there (and the pins in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.fabric import Fabric
from torch import nn

from equissl.lightning_compat import (
    InternalsMoved,
    apply_restored_loader_state,
    attached_trainer,
    checkpoint_loader_states,
    fused_optimizer_devices,
    load_train_dataloader,
)

BATCHES = 4


class CountingLoader:
    """A sized, stateful training loader: its state is how many batches it handed out in
    this epoch, and a restored state makes the next iteration continue from there."""

    def __init__(self) -> None:
        self.pos = 0
        self.loaded: list[dict[str, int]] = []
        self.served: list[int] = []

    def __len__(self) -> int:
        return BATCHES

    def __iter__(self):
        for i in range(self.pos, BATCHES):
            self.pos = i + 1
            self.served.append(i)
            yield torch.full((2, 3), float(i))
        self.pos = 0

    def state_dict(self) -> dict[str, int]:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.loaded.append(dict(state))
        self.pos = state["pos"]


class Tiny(pl.LightningModule):
    def __init__(self, loader: CountingLoader, early_loader: bool = False) -> None:
        super().__init__()
        self.net = nn.Linear(3, 1)
        self.loader = loader
        self.early_loader = early_loader
        self.seen: dict[str, Any] = {}

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.net(batch).pow(2).mean()

    def train_dataloader(self) -> CountingLoader:
        return self.loader

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.early_loader:  # as a warm-up schedule does: builds the loader before restore
            self.seen["estimated"] = self.trainer.estimated_stepping_batches
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(**kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


class SaveAt(pl.Callback):
    def __init__(self, path: Path, batch_idx: int) -> None:
        self.path, self.batch_idx = path, batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.batch_idx:
            trainer.save_checkpoint(self.path)


class ApplyAtStart(pl.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        apply_restored_loader_state(trainer)


@pytest.fixture(scope="module")
def mid_epoch_ckpt(tmp_path_factory) -> Path:
    """A checkpoint written after 2 of the 4 batches of the first epoch."""
    path = tmp_path_factory.mktemp("compat") / "mid.ckpt"
    trainer(max_steps=2, callbacks=[SaveAt(path, batch_idx=1)]).fit(Tiny(CountingLoader()))
    return path


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


# ------------------------------------------------------------------ attached_trainer
def test_attached_trainer_is_none_when_detached_and_the_trainer_when_attached():
    module = Tiny(CountingLoader())
    assert attached_trainer(module) is None
    with pytest.raises(RuntimeError):  # the public contract attached_trainer relies on
        module.trainer  # noqa: B018
    t = trainer(max_steps=1)
    module.trainer = t
    assert attached_trainer(module) is t
    module.trainer = None
    assert attached_trainer(module) is None


def test_attached_trainer_is_none_under_fabric():
    module = Tiny(CountingLoader())
    module.fabric = Fabric(accelerator="cpu", devices=1)
    assert module.trainer is not None  # Lightning's Fabric shim, not a Trainer
    assert attached_trainer(module) is None


# ------------------------------------------------------- checkpoint_loader_states
def test_checkpoint_loader_states_reads_the_saved_loader_position(mid_epoch_ckpt):
    assert checkpoint_loader_states(load(mid_epoch_ckpt)) == [{"pos": 2}]


def test_checkpoint_loader_states_names_itself_when_the_layout_moves():
    with pytest.raises(InternalsMoved, match="checkpoint_loader_states"):
        checkpoint_loader_states({"loops": {"fit_loop": {}}})
    with pytest.raises(KeyError):
        checkpoint_loader_states({"state_dict": {}})  # weights-only
    assert checkpoint_loader_states({"loops": {"fit_loop": {"state_dict": {}}}}) == []


# ----------------------------------------------------- apply_restored_loader_state
def resume(ckpt: Path, callbacks: list[pl.Callback]) -> CountingLoader:
    loader = CountingLoader()
    # max_epochs set: estimated_stepping_batches then builds the loader (before the restore)
    trainer(max_steps=BATCHES, max_epochs=1, callbacks=callbacks).fit(
        Tiny(loader, early_loader=True), ckpt_path=ckpt
    )
    return loader


def test_apply_restored_loader_state_resumes_an_early_built_loader(mid_epoch_ckpt):
    loader = resume(mid_epoch_ckpt, [ApplyAtStart()])
    assert loader.loaded == [{"pos": 2}]
    assert loader.served == [2, 3]  # the rest of the interrupted epoch, not a new one


def test_lightning_still_skips_the_restore_of_an_early_built_loader(mid_epoch_ckpt):
    """Why apply_restored_loader_state exists. If this fails, Lightning now restores the
    state itself: the adapter is a harmless no-op and may be dropped."""
    loader = resume(mid_epoch_ckpt, [])
    assert loader.loaded == []


def test_apply_restored_loader_state_is_a_no_op_without_a_restore():
    loader = CountingLoader()
    module = Tiny(loader, early_loader=True)
    trainer(max_steps=1, max_epochs=1, callbacks=[ApplyAtStart()]).fit(module)
    assert module.seen["estimated"] == 1
    assert loader.loaded == []


def test_apply_restored_loader_state_names_itself_when_the_internal_moves():
    with pytest.raises(InternalsMoved, match="apply_restored_loader_state"):
        apply_restored_loader_state(SimpleNamespace(fit_loop=SimpleNamespace()))


# --------------------------------------------------------------- load_train_dataloader
class Probe(Tiny):
    def configure_optimizers(self) -> torch.optim.Optimizer:
        t = self.trainer
        self.seen["estimated"] = t.estimated_stepping_batches
        self.seen["before"] = (t.num_training_batches, t.train_dataloader)
        load_train_dataloader(t)
        self.seen["after"] = t.num_training_batches
        load_train_dataloader(t)  # again: Lightning keeps the loader it built
        return torch.optim.SGD(self.parameters(), lr=0.1)


class LastBatch(pl.Callback):
    def __init__(self) -> None:
        self.flags: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.flags.append(trainer.is_last_batch)


def test_load_train_dataloader_builds_it_when_estimated_steps_did_not():
    loader, last = CountingLoader(), LastBatch()
    module = Probe(loader)
    trainer(max_steps=BATCHES + 2, max_epochs=-1, callbacks=[last]).fit(module)
    assert module.seen["estimated"] == BATCHES + 2  # max_steps, without loading the data
    assert module.seen["before"] == (float("inf"), None)
    assert module.seen["after"] == BATCHES
    assert loader.served == [0, 1, 2, 3, 0, 1]  # the loader built once, iterated as usual
    # trainer.is_last_batch (public, used by the checkpoint callback) marks each epoch's end
    assert last.flags == [False, False, False, True, False, False]


def test_load_train_dataloader_names_itself_when_the_internal_moves():
    with pytest.raises(InternalsMoved, match="load_train_dataloader"):
        load_train_dataloader(SimpleNamespace(fit_loop=SimpleNamespace()))


# -------------------------------------------------------------- fused_optimizer_devices
def fused_adam_accepts(device: str) -> bool:
    """Whether a fused Adam step runs on ``device`` (torch checks the device at the first
    step, against the list fused_optimizer_devices reads)."""
    param = nn.Parameter(torch.zeros(2, device=device))
    param.grad = torch.ones(2, device=device)
    try:
        torch.optim.Adam([param], fused=True).step()
    except RuntimeError:
        return False
    return True


def test_fused_optimizer_devices_is_what_torch_optimisers_accept():
    devices = fused_optimizer_devices()
    assert isinstance(devices, frozenset) and all(isinstance(d, str) for d in devices)
    assert "cuda" in devices
    assert "meta" not in devices
    for device in ("cpu", "meta"):
        assert (device in devices) == fused_adam_accepts(device), device
