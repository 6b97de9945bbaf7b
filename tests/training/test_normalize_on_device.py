"""``speed.normalize_on_device``: the dataset serves uint8 views and the datamodule normalises
them after the batch transfer; the batch the step sees equals the plain path's, for loose and
packed data.

Tolerance: 0 (``torch.equal``) on CPU. The device path runs the same function
(``equissl.datasets.iebench.to_float_image``) on the collated ``[B, V, 3, H, W]`` batch
instead of on each view; its ops are elementwise (divide, subtract, divide) and the
antialiased resize is per image plane, so on CPU the values are bitwise equal, with and
without a resize. On a GPU the same ops run in CUDA kernels: expect differences of a float32
ulp or so (≈ 1e-6), not checked here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from equissl.datasets.base import ViewDataset
from equissl.datasets.packed import PackSettings, pack_chunk
from equissl.training.pretrain import views_per_object
from tests.conftest import compose_pretrain
from tests.test_speed import SIE_SMALL, toy_run


@pytest.fixture
def roots(iebench_tree: Path, tmp_path: Path) -> dict[str, Path]:
    packed = tmp_path / "packed"
    pack_chunk(iebench_tree, packed, PackSettings())
    return {"loose": iebench_tree, "packed": packed}


def datamodule(root: Path, *overrides: str):
    from equissl.training.datamodule import PretrainDataModule

    config = compose_pretrain([f"data.root={root}", *SIE_SMALL, *overrides])
    return PretrainDataModule(config["data"], views_per_object(config), speed=config["speed"])


@pytest.mark.parametrize("fmt", ["loose", "packed"])
@pytest.mark.parametrize(("size", "workers"), [(32, 0), (24, 1)])  # stored size 32 px
def test_the_batch_after_transfer_is_the_plain_batch(roots, fmt, size, workers):
    common = (f"data.image_size={size}", f"data.num_workers={workers}")
    plain = datamodule(roots[fmt], *common)
    fast = datamodule(roots[fmt], *common, "speed.normalize_on_device=true")
    assert fast.on_device and not plain.on_device
    pairs = zip(plain.train_dataloader(), fast.train_dataloader(), strict=True)
    for ref, batch in itertools.islice(pairs, 3):
        assert batch["views"].dtype == torch.uint8 and batch["views"].shape[-1] == 32
        seen = fast.on_after_batch_transfer(batch, 0)
        assert plain.on_after_batch_transfer(ref, 0) is ref  # the plain path: untouched
        assert seen.keys() == ref.keys()
        for key in ref:
            assert seen[key].dtype == ref[key].dtype, key
            assert torch.equal(seen[key], ref[key]), key
        assert ref["views"].shape[-1] == size


@pytest.mark.parametrize("fmt", ["loose", "packed"])
def test_training_through_the_trainer_is_the_plain_run(roots, tmp_path, fmt):
    """The Trainer calls the datamodule's hook: the step losses are the plain run's."""
    plain = toy_run(roots[fmt], tmp_path / "plain")
    fast = toy_run(roots[fmt], tmp_path / "fast", "speed.normalize_on_device=true")
    assert len(fast) == len(plain) == 3
    assert fast == plain


def test_datasets_without_it_keep_their_items():
    assert ViewDataset().defer_to_device() is False
    views = torch.rand(2, 2, 3, 4, 4)
    assert ViewDataset().device_transform(views) is views
