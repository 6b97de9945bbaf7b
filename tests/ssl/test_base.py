"""What ``SSLMethod`` gives every method: schedules from the run's real step count, EMA
targets, views per object, the batch contract on the first batch, checked checkpoints."""

from __future__ import annotations

import csv
import itertools
import logging
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import equissl.ssl.base as base
from equissl.checkpointing import CheckpointError, load_checkpoint
from equissl.config import OptimConfig, PretrainConfig
from equissl.models.ema import momentum_tau
from equissl.registries import DATASETS
from equissl.ssl.loading import build_method, load_method
from equissl.training.datamodule import PretrainDataModule
from equissl.training.pretrain import pretrain, views_per_object
from tests.conftest import TOY, compose_pretrain, write_iebench_tree

# 9 training objects (3 classes x 3) at data.batch_size=4 with drop_last: 2 batches per epoch


def cosine_factor(step: int, total: int, warmup: int) -> float:
    """The schedule written out: linear warm-up to 1 over ``warmup`` steps, cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def logged_lrs(run_dir: Path) -> list[float]:
    """The learning rate of each optimizer step (LearningRateMonitor logs every batch)."""
    (metrics,) = (run_dir / "csv").glob("version_*/metrics.csv")  # one start, one version
    with open(metrics) as f:
        by_step = {
            int(row["step"]): float(row["lr-Adam"])
            for row in csv.DictReader(f)
            if row.get("lr-Adam")
        }
    return [by_step[s] for s in sorted(by_step)]


@pytest.mark.parametrize(
    "budget, total, warmup",
    [
        (["trainer.max_steps=6", "trainer.max_epochs=-1"], 6, 2),
        (["trainer.max_epochs=3"], 6, 2),
        (["trainer.max_epochs=4", "trainer.accumulate_grad_batches=2"], 4, 1),
        (["trainer.max_steps=6", "trainer.max_epochs=-1", "method.optim.warmup_steps=3"], 6, 3),
    ],
)
def test_schedule_from_the_real_step_count(iebench_tree, tmp_path, budget, total, warmup):
    config = compose_pretrain(
        [
            f"data.root={iebench_tree}",
            *TOY,
            "logger.name=csv",
            "trainer.log_every_n_steps=1",
            "method.optim.scheduler=warmup_cosine",
            "method.optim.warmup_epochs=1",
            "method.optim.lr=0.001",
            *budget,
        ]
    )
    ckpt = pretrain(config, tmp_path / "run")
    assert load_checkpoint(ckpt)["global_step"] == total
    expected = [1e-3 * cosine_factor(s, total, warmup) for s in range(total)]
    assert logged_lrs(tmp_path / "run") == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------- EMA
def test_momentum_tau_goes_from_base_to_one():
    taus = [momentum_tau(s, 11, 0.996, 1.0) for s in range(12)]
    assert taus[0] == pytest.approx(0.996) and taus[-1] == 1.0 and taus[10] == 1.0
    assert taus[5] == pytest.approx(0.998)  # half way on the cosine
    assert all(a < b for a, b in zip(taus[:10], taus[1:11], strict=True))
    assert momentum_tau(3, 1, 0.99, 1.0) == 0.99  # a one-step run keeps the base value


class EMARecorder(pl.Callback):
    """Online and target weights at the start and after each optimizer step: the EMA update
    runs in the module's ``optimizer_step``, so a callback's ``on_train_batch_end`` (where
    the step checkpoint is written) sees the target already updated."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def snapshot(self, module: pl.LightningModule) -> dict:
        return {
            "online": module.head.weight.detach().clone(),
            "target": module.target_head.weight.detach().clone(),
        }

    def on_train_start(self, trainer, module) -> None:
        self.records.append({"step": trainer.global_step, **self.snapshot(module)})

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.records.append({"step": trainer.global_step, **self.snapshot(module)})


def ema_method(tree: Path, *overrides: str) -> tuple[dict, PretrainDataModule, base.SSLMethod]:
    config = compose_pretrain(
        [
            f"data.root={tree}",
            *TOY,
            "method=toy_schema",
            "method.impl=toy_ema",
            "method.name=toy_ema",
            *overrides,
        ]
    )
    dm = PretrainDataModule(config["data"], views_per_object(config))
    return config, dm, build_method(config, dm.spec)


def test_ema_target_follows_the_online_head(iebench_tree, tmp_path):
    _, dm, method = ema_method(iebench_tree)
    assert all(not p.requires_grad for p in method.target_head.parameters())
    recorder = EMARecorder()
    trainer = pl.Trainer(
        max_steps=5,
        accelerator="cpu",
        logger=False,
        callbacks=[recorder],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(method, datamodule=dm)
    optimised = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in method.target_head.parameters()}
    assert {id(p) for p in method.head.parameters()} <= optimised

    assert [r["step"] for r in recorder.records] == [0, 1, 2, 3, 4, 5]
    for before, after in itertools.pairwise(recorder.records):
        s = after["step"]
        tau = 1 - 0.004 * (math.cos(math.pi * s / 4) + 1) / 2 if s < 4 else 1.0
        # target ← τ·target + (1 − τ)·online, with the online weights after this step's update
        torch.testing.assert_close(
            after["target"], tau * before["target"] + (1 - tau) * after["online"]
        )
    first, second = recorder.records[:2]
    assert not torch.equal(second["target"], first["target"])
    assert not torch.equal(second["online"], first["online"])

    # the target is saved with the model and restored without the data
    path = tmp_path / "ema.ckpt"
    trainer.save_checkpoint(path)
    restored, meta = load_method(path)
    assert meta["config"]["method"]["impl"] == "toy_ema"
    torch.testing.assert_close(restored.target_head.weight, method.target_head.weight)
    assert not torch.equal(restored.target_head.weight, restored.head.weight)


def test_ema_updates_once_per_optimizer_step(iebench_tree, monkeypatch):
    _, dm, method = ema_method(iebench_tree)
    calls: list[float] = []
    update = base.update_targets
    monkeypatch.setattr(
        base, "update_targets", lambda pairs, tau: (calls.append(tau), update(pairs, tau))
    )
    trainer = pl.Trainer(
        max_epochs=4,
        accumulate_grad_batches=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(method, datamodule=dm)
    assert trainer.global_step == 4  # 8 batches, 2 per optimizer step
    assert calls == pytest.approx([momentum_tau(s, 4, 0.996, 1.0) for s in (1, 2, 3, 4)])


# ------------------------------------------------------------------------------ views
def test_data_num_views_sets_the_methods_views(iebench_tree, tmp_path):
    config = compose_pretrain(
        [f"data.root={iebench_tree}", *TOY, "data.num_views=3", "trainer.max_steps=1"]
    )
    assert config["method"]["num_views"] == 2  # set by the run, from data.num_views
    ckpt = pretrain(config, tmp_path / "run")
    meta = load_checkpoint(ckpt)["equissl"]
    assert meta["config"]["method"]["num_views"] == 3


def test_a_two_view_method_refuses_three_views(iebench_tree, tmp_path):
    config = compose_pretrain(
        [
            f"data.root={iebench_tree}",
            *TOY,
            "method=vicreg",
            "method.projector=[8]",
            "data.num_views=3",
        ]
    )
    with pytest.raises(
        ValueError,
        match=r"consumes 2 views .*method.num_views=3 "
        r"\(data.num_views\)",
    ):
        pretrain(config, tmp_path / "run")
    assert not list(tmp_path.rglob("*.ckpt"))


# --------------------------------------------------------------------- batch contract
class Broken(Dataset):
    """The real items with one contract violation."""

    def __init__(self, base_set: Dataset, fault: str) -> None:
        self.base_set, self.fault = base_set, fault

    def __len__(self) -> int:
        return len(self.base_set)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base_set[i])
        if self.fault == "label":
            item["label"] = item["label"].to(torch.int32)
        elif self.fault == "index":
            del item["index"]
        elif self.fault == "views":
            item["views"] = torch.cat([item["views"], item["views"][:1]])
            item["latents"] = torch.cat([item["latents"], item["latents"][:1]])
        return item


@pytest.mark.parametrize(
    "fault, message",
    [
        ("label", "label must be int64"),
        ("index", r"batch lacks keys \['index'\]"),
        ("views", "batch has 3 views per object, the method consumes 2"),
    ],
)
def test_batch_contract_checked_on_the_first_batch(iebench_tree, fault, message):
    config = compose_pretrain([f"data.root={iebench_tree}", *TOY])
    dm = PretrainDataModule(config["data"], 2)
    method = build_method(config, dm.spec)
    loader = DataLoader(Broken(dm.dataset, fault), batch_size=4, drop_last=True)
    trainer = pl.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(ValueError, match=message):
        trainer.fit(method, train_dataloaders=loader)
    assert trainer.global_step == 0


# ------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("toy_ckpt")
    tree = write_iebench_tree(tmp / "tree")
    config = compose_pretrain([f"data.root={tree}", *TOY, "trainer.max_steps=1"])
    return pretrain(config, tmp / "run")


def edited(ckpt: Path, out: Path, edit) -> Path:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    edit(state)
    torch.save(state, out)
    return out


def test_toy_checkpoint_loads(toy_checkpoint):
    method, meta = load_method(toy_checkpoint)
    assert type(method).__name__ == "Toy" and not method.training
    assert meta["version"] == base.CHECKPOINT_VERSION and meta["parts"] == {"full": 16}
    assert set(meta) >= {"package_version", "config", "spec", "action", "parts"}


def test_checkpoint_predating_a_key_reads_its_default(toy_checkpoint, tmp_path, caplog):
    """A checkpoint written before a schema key existed loads with that key's default (what
    the older code did), and the log names the keys."""

    def drop(state):
        config = state["equissl"]["config"]
        del config["method"]["optim"]["min_lr"], config["data"]["batch_size"], config["seed"]

    path = edited(toy_checkpoint, tmp_path / "older.ckpt", drop)
    with caplog.at_level(logging.INFO, logger="equissl.checkpointing"):
        _, meta = load_method(path)
    config = meta["config"]
    data_schema = DATASETS.entry(config["data"]["impl"]).config
    assert config["method"]["optim"]["min_lr"] == OptimConfig.min_lr
    assert config["data"]["batch_size"] == data_schema.batch_size
    assert config["seed"] == PretrainConfig.seed
    for key in ("method.optim.min_lr", "data.batch_size", "seed"):
        assert key in caplog.text


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("newer", lambda s: s["equissl"].update(version=99), "has checkpoint format 99"),
        ("older", lambda s: s["equissl"].update(version=1), "has checkpoint format 1,"),
        (
            "bogus",
            lambda s: s["equissl"]["config"]["method"].update(bogus=1),
            "unknown key method.bogus",
        ),
        # keys without a default; keys with one are filled (next test)
        ("missing", lambda s: s["equissl"]["config"]["data"].pop("name"), "missing key data.name"),
        (
            "name",
            lambda s: s["equissl"]["config"]["method"].pop("name"),
            "missing key method.name",
        ),
        ("top", lambda s: s["equissl"]["config"].pop("backbone"), "missing key backbone"),
        (
            "impl",
            lambda s: s["equissl"]["config"]["backbone"].update(impl="nonet"),
            "backbone.impl='nonet' is not registered; known: .*tiny_cnn",
        ),
        ("nospec", lambda s: s["equissl"].pop("spec"), r"lacks \['spec'\]"),
        ("foreign", lambda s: s.pop("equissl"), "is not an equissl checkpoint"),
    ],
)
def test_checkpoint_errors_name_file_and_key(toy_checkpoint, tmp_path, name, edit, message):
    path = edited(toy_checkpoint, tmp_path / f"{name}.ckpt", edit)
    with pytest.raises(CheckpointError, match=message) as err:
        load_method(path)
    assert str(path) in str(err.value)
