"""``ViewDataset.draw_views``: every dataset draws its own views as ``[3, H, W]`` in [0, 1]."""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

from equissl.datasets.base import build_dataset
from equissl.datasets.iebench import IEBenchDataset
from equissl.datasets.pde_windows import PDEWindows
from tests.datasets.pde.test_data import write_soliton_file


def test_image_views_as_a_grid(iebench_tree):
    ds = IEBenchDataset(iebench_tree, "train", num_views=3, image_size=32)
    views = default_collate([ds[0], ds[1]])["views"]  # [2, 3, 3, 32, 32], normalised
    assert views.min() < 0  # normalised inputs, de-normalised by the picture
    grid = ds.draw_views(views)
    assert grid.shape == (3, 2 * 32 + 3 * 2, 3 * 32 + 4 * 2)  # rows objects, columns views
    assert grid.min() >= 0 and grid.max() <= 1
    raw = ds.load(0, [0])["views"][0]
    from equissl.datasets.iebench_format import MEAN, STD

    pixels = raw * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    first = ds.draw_views(raw[None, None])  # one view: the picture itself, no padding
    torch.testing.assert_close(first, pixels.clamp(0, 1))


def test_pde_windows_as_heat_maps(tmp_path):
    root = tmp_path / "kdv"
    root.mkdir()
    write_soliton_file(root / "solitons.h5", n=64)
    cfg = {
        "impl": "pde",
        "root": str(root),
        "equation": "kdv",
        "window": 16,
        "mode": "coords",
        "composition": "expm",
        "val_every": 5,
        "val_split": "val",
        "strengths": {},
    }
    ds = build_dataset(cfg, "train", 2)
    assert isinstance(ds, PDEWindows) and len(ds) == 3
    spec = ds.spec()
    assert spec.view_shape == (3, 16, 64) and spec.channels == ("t", "x", "u")
    views = default_collate([ds[0], ds[2]])["views"]  # [2, 2, 3, 16, 64]
    grid = ds.draw_views(views)
    assert grid.shape == (3, 2 * 16 + 3 * 2, 2 * 64 + 3 * 2)
    assert grid.min() >= 0 and grid.max() <= 1
    tile = grid[:, 2:18, 2:66]  # object 0, view 0: the field u over (t, x), colour-mapped
    assert tile.flatten(1).std(1).min() > 0.05  # a heat map, not a flat tile
    # each tile is scaled to its own range: the soliton's peak and trough reach both ends
    # of the colour map (viridis: dark purple at 0, yellow at 1)
    brightness = tile.sum(0)
    assert brightness.max() > 2.0 and brightness.min() < 0.8
