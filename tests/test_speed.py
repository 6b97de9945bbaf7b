"""The ``speed`` flags (equissl.speed): defaults are the plain path, and each flag
gives the plain path's losses and weights on CPU within a stated tolerance.

Tolerances (float32, 2 Adam steps of SIE on a ResNet-18 at 32 px): foreach/fused Adam change
only the optimiser's arithmetic order: the weights after the first step within 1e-6
relative + 1e-7 absolute (one step of lr 1e-3 moves a weight by up to ~1e-3, so a kernel
computing anything else fails) and the losses within rel 1e-5. Not the weights after later
steps: Adam divides by |g|, so gradients made only of rounding noise (e.g. in zero-initialised
residual branches) turn ulp-level differences into lr-sized updates. channels_last changes
the convolutions' summation order: see :func:`test_channels_last_trains_as_the_plain_path`.
Lightning's wiring is checked on the toy method through ``pretrain`` (step losses within
rel 1e-4).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from equissl.config import SpeedConfig
from equissl.datasets.base import DataSpec
from equissl.models.backbones import build_backbone
from equissl.speed import (
    PLAIN,
    loader_options,
    optimizer_options,
    speed_up_backbone,
)
from equissl.ssl.loading import build_method, load_method
from equissl.ssl.losses import covariance_term, variance_term
from equissl.training.datamodule import PretrainDataModule
from equissl.training.pretrain import pretrain, views_per_object
from tests.conftest import TOY, compose_pretrain, write_iebench_tree

SIE_SMALL = [
    "method=sie",
    "backbone=resnet18",
    "trainer=cpu",
    "data.batch_size=4",
    "data.image_size=32",
    "data.num_workers=0",
    "logger.name=none",
    "trainer.enable_progress_bar=false",
    "method.projector=[64,64,32]",
]


def sie_setup(tree: Path, *overrides: str) -> tuple[dict[str, Any], PretrainDataModule]:
    config = compose_pretrain([f"data.root={tree}", *SIE_SMALL, *overrides])
    dm = PretrainDataModule(config["data"], views_per_object(config), speed=config["speed"])
    return config, dm


def train_steps(
    config: dict[str, Any], spec: DataSpec, batches: list[dict], seed: int = 0
) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Losses of Adam steps on ``batches`` from the seeded initialisation, and the weights
    after the first step (the path Lightning takes: configure_model, configure_optimizers,
    step)."""
    torch.manual_seed(seed)
    method = build_method(config, spec)
    method.configure_model()
    optimizer = method.configure_optimizers()
    losses, first = [], {}
    for batch in batches:
        loss = method.total_loss(method.compute_loss(batch).terms)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        first = first or {k: v.detach().clone() for k, v in method.state_dict().items()}
    return losses, first


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machine two OpenMP threads wait on each
    other at every small op (5-50x slower steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sie_batches(tmp_path_factory, one_thread) -> dict[str, Any]:
    """A tree, its spec, its 2 training batches (the same for every arm) and the plain
    path's :func:`train_steps` on them."""
    tree = write_iebench_tree(tmp_path_factory.mktemp("speed") / "3DIEBench")
    config, dm = sie_setup(tree)
    batches = list(itertools.islice(iter(dm.train_dataloader()), 2))
    plain = train_steps(config, dm.spec, batches)
    return {"tree": tree, "spec": dm.spec, "batches": batches, "plain": plain}


def test_defaults_are_the_plain_path(iebench_tree):
    config, dm = sie_setup(iebench_tree, "data.num_workers=2")
    assert config["speed"] == PLAIN
    assert PLAIN == {
        "channels_last": False,
        "compile": False,
        "compile_mode": "default",
        "fused_optimizer": False,
        "pin_memory": "auto",
        "prefetch_factor": None,
        "persistent_workers": False,
        "normalize_on_device": False,
    }
    assert dm.on_device is False and dm.dataset.pixels is False
    loader = dm.train_dataloader()
    assert (loader.pin_memory, loader.persistent_workers, loader.prefetch_factor) == (
        torch.cuda.is_available(),
        False,
        2,
    )
    method = build_method(config, dm.spec)
    method.configure_model()
    assert method.backbone.trunk.conv1.weight.is_contiguous()
    assert not method.backbone._forward_pre_hooks
    assert method.backbone._compiled_call_impl is None
    optimizer = method.configure_optimizers()
    assert (optimizer.defaults["foreach"], optimizer.defaults["fused"]) == (None, None)


def test_loader_options_reach_the_loader(iebench_tree):
    _, dm = sie_setup(
        iebench_tree,
        "data.num_workers=1",
        "speed.pin_memory=false",
        "speed.prefetch_factor=4",
        "speed.persistent_workers=true",
    )
    loader = dm.train_dataloader()
    assert (loader.pin_memory, loader.persistent_workers, loader.prefetch_factor) == (
        False,
        True,
        4,
    )
    # without workers torch refuses both: they are left out
    assert loader_options({**PLAIN, "prefetch_factor": 4}, 0) == {
        "pin_memory": torch.cuda.is_available()
    }
    with pytest.raises(ValueError, match="speed.pin_memory"):
        loader_options({**PLAIN, "pin_memory": "always"}, 0)


def test_optimizer_options():
    cpu = [torch.zeros(2)]
    assert optimizer_options(False, cpu) == {}
    assert optimizer_options("foreach", cpu) == {"foreach": True}
    assert optimizer_options(True, cpu) == optimizer_options("fused", cpu) == {"fused": True}
    assert optimizer_options("auto", cpu) == {"fused": True}  # torch has a CPU fused Adam
    meta = [torch.zeros(2, device="meta")]
    assert optimizer_options("auto", meta) == {"foreach": True}
    with pytest.raises(ValueError, match="no fused optimiser kernel"):
        optimizer_options("fused", meta)
    with pytest.raises(ValueError, match="speed.fused_optimizer"):
        optimizer_options("fast", cpu)


@pytest.mark.parametrize("flag", ["foreach", "fused", "auto"])
def test_optimizer_kernel_trains_as_the_plain_path(sie_batches, flag):
    tree, spec, batches = (sie_batches[k] for k in ("tree", "spec", "batches"))
    plain_losses, plain_weights = sie_batches["plain"]
    config = sie_setup(tree, f"speed.fused_optimizer={flag}")[0]
    losses, weights = train_steps(config, spec, batches)
    assert plain_losses[-1] != pytest.approx(plain_losses[0], rel=1e-3)  # it did train
    assert losses == pytest.approx(plain_losses, rel=1e-5)
    assert weights.keys() == plain_weights.keys()
    for name, w in weights.items():
        torch.testing.assert_close(w, plain_weights[name], rtol=1e-6, atol=1e-7, msg=name)


def test_channels_last_trains_as_the_plain_path(sie_batches):
    """Same loss on the first batch (rel 1e-5) and gradients (to 1e-3 of each gradient's
    largest entry: BatchNorm over 4 objects amplifies rounding), and the losses after the
    Adam steps to rel 1e-3 (see the module docstring on Adam and rounding). A wrong layout
    would be off by O(1)."""
    tree, spec, batches = (sie_batches[k] for k in ("tree", "spec", "batches"))
    grads = []
    for flags in ([], ["speed.channels_last=true"]):
        torch.manual_seed(0)
        method = build_method(sie_setup(tree, *flags)[0], spec)
        method.configure_model()
        loss = method.total_loss(method.compute_loss(batches[0]).terms)
        loss.backward()
        grads.append((float(loss.detach()), dict(method.named_parameters())))
    (plain_loss, plain), (loss, fast) = grads
    assert loss == pytest.approx(plain_loss, rel=1e-5)
    for name, p in fast.items():
        if p.grad is None:
            continue
        g, ref = p.grad, plain[name].grad
        torch.testing.assert_close(g, ref, rtol=0, atol=1e-3 * float(ref.abs().max()) + 1e-12)
    plain_losses, _ = sie_batches["plain"]
    losses, _ = train_steps(sie_setup(tree, "speed.channels_last=true")[0], spec, batches)
    assert losses == pytest.approx(plain_losses, rel=1e-3)


def test_channels_last_reaches_weights_and_inputs(iebench_tree):
    config, dm = sie_setup(iebench_tree, "speed.channels_last=true")
    method = build_method(config, dm.spec)
    method.configure_model()
    method.configure_model()  # idempotent (one hook)
    w = method.backbone.trunk.conv1.weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    assert len(method.backbone._forward_pre_hooks) == 1
    seen = []
    method.backbone.trunk.conv1.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    method.backbone(torch.randn(2, 3, 32, 32))
    assert seen[0].is_contiguous(memory_format=torch.channels_last)


def test_compile_keeps_state_dict_keys(iebench_tree, tmp_path):
    config, dm = sie_setup(iebench_tree, "speed.compile=true")
    backbone = build_backbone(config["backbone"], dm.spec.view_shape)
    keys = list(backbone.state_dict())
    speed_up_backbone(backbone, {**PLAIN, "compile": True, "channels_last": True})
    assert backbone._compiled_call_impl is not None  # compiled lazily, at the first call
    assert list(backbone.state_dict()) == keys
    assert not any("_orig_mod" in k for k in keys)
    method = build_method(config, dm.spec)
    method.configure_model()
    plain = build_method(sie_setup(iebench_tree)[0], dm.spec)
    plain.load_state_dict(method.state_dict())  # strict: a checkpoint loads into a plain model


def toy_run(tree: Path, run: Path, *overrides: str) -> list[float]:
    config = compose_pretrain(
        [
            f"data.root={tree}",
            *TOY,
            "logger.step_losses=true",
            "trainer.max_steps=3",
            "trainer.max_epochs=-1",
            *overrides,
        ]
    )
    run.mkdir(parents=True)
    ckpt = pretrain(config, run)
    load_method(ckpt)  # the checkpoint of a fast run loads into a plain model
    lines = (run / "step_losses.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_flags_through_the_trainer(iebench_tree, tmp_path):
    """The wiring: pretrain() with every CPU flag (and a persistent prefetching worker) gives
    the plain run's step losses."""
    plain = toy_run(iebench_tree, tmp_path / "plain")
    fast = toy_run(
        iebench_tree,
        tmp_path / "fast",
        "speed.channels_last=true",
        "speed.fused_optimizer=auto",
        "speed.persistent_workers=true",
        "speed.prefetch_factor=3",
        "data.num_workers=1",
    )
    assert len(fast) == len(plain) == 3
    assert fast == pytest.approx(plain, rel=1e-4)


@pytest.mark.slow
def test_compile_trains_as_the_plain_path(iebench_tree, tmp_path):
    """torch.compile (inductor on CPU: minutes to build) gives the plain step losses."""
    plain = toy_run(iebench_tree, tmp_path / "plain")
    compiled = toy_run(iebench_tree, tmp_path / "compiled", "speed.compile=true")
    assert compiled == pytest.approx(plain, rel=1e-4)


def test_bf16_mixed_sie_step_on_cpu(iebench_tree, tmp_path):
    """One SIE step under trainer.precision=bf16-mixed on CPU: finite, and near fp32."""
    sie_tiny = [
        f"data.root={iebench_tree}",
        *SIE_SMALL,
        "backbone=tiny_cnn_schema",
        "backbone.width=32",
        "method.inv_dim=16",
        "logger.step_losses=true",
        "trainer.max_steps=1",
        "trainer.max_epochs=-1",
    ]
    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        run = tmp_path / precision
        run.mkdir()
        pretrain(compose_pretrain([*sie_tiny, f"trainer.precision={precision}"]), run)
        (line,) = (run / "step_losses.jsonl").read_text().splitlines()
        losses[precision] = json.loads(line)["loss"]
    assert torch.isfinite(torch.tensor(losses["bf16-mixed"]))
    assert losses["bf16-mixed"] == pytest.approx(losses["32-true"], rel=2e-2)


def test_loss_statistics_stay_float32_under_autocast():
    """Under bf16 autocast the covariance matmul would run in bf16 (Σcov² − Σdiag² then
    cancels to bf16's resolution); the terms compute in float32 whatever the autocast."""
    torch.manual_seed(0)
    x = torch.randn(64, 256) + 0.3 * torch.randn(64, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cov, var = covariance_term(x), variance_term(x)
        naive = x @ x.T  # what autocast does to a matmul left to it
    assert naive.dtype == torch.bfloat16
    assert cov.dtype == var.dtype == torch.float32
    torch.testing.assert_close(cov, covariance_term(x), rtol=1e-6, atol=0)
    torch.testing.assert_close(var, variance_term(x), rtol=1e-6, atol=0)


def test_schema_matches_plain():
    assert PLAIN == SpeedConfig().__dict__
