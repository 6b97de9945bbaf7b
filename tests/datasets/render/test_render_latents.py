"""Latent sampling: the published ranges, OOD and translation options, stable streams."""

from __future__ import annotations

import numpy as np

from equissl.datasets.render.latents import (
    object_hex_id,
    object_streams,
    sample_latents,
)


def draw(views: int = 20_000, **kwargs) -> np.ndarray:
    return sample_latents(np.random.default_rng(0), views, **kwargs)


def test_in_distribution_ranges():
    lat = draw()
    assert lat.shape == (20_000, 7) and lat.dtype == np.float64
    assert np.all(np.abs(lat[:, :3]) <= np.pi / 2)
    assert np.all(lat[:, :3].min(0) < -1.5) and np.all(lat[:, :3].max(0) > 1.5)
    for col, hi in ((3, 1.0), (4, np.pi / 4), (5, 2 * np.pi), (6, 1.0)):
        assert 0 <= lat[:, col].min() < 0.01 * hi and 0.99 * hi < lat[:, col].max() <= hi


def test_ood_angles_cover_both_outer_intervals():
    ang = draw(ood=True)[:, :3]
    assert np.all((np.abs(ang) >= np.pi / 2) & (np.abs(ang) <= np.pi))
    assert 0.45 < np.mean(ang < 0) < 0.55
    assert ang.min() < -np.pi + 0.01 and ang.max() > np.pi - 0.01


def test_translation_appends_three_values_and_keeps_the_rest():
    plain, moved = draw(100), draw(100, translation=True)
    assert moved.shape == (100, 10)
    assert np.array_equal(moved[:, :7], plain)
    assert np.all(np.abs(moved[:, 7:]) <= 0.5) and moved[:, 7:].std() > 0.2


def test_more_views_extend_fewer_views():
    assert np.array_equal(draw(50)[:10], draw(10))


def test_object_streams_depend_on_seed_class_and_index():
    def first(*key):
        s = object_streams(*key)
        return s.shape.random(), s.views.random(), s.render_seed

    assert first(0, 1, 2) == first(0, 1, 2)
    assert len({first(0, 1, 2), first(1, 1, 2), first(0, 2, 2), first(0, 1, 3)}) == 4
    s = object_streams(0, 1, 2)
    assert s.shape.random() != s.views.random()
    assert 0 <= s.render_seed < 2**31 and s.render_seed % 65536 == 0
    ident = object_hex_id(0, "90000000", 1)
    assert len(ident) == 32 and int(ident, 16) >= 0
    assert ident == object_hex_id(0, "90000000", 1) != object_hex_id(1, "90000000", 1)
