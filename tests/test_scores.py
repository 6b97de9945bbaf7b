"""The shared scores (equissl.scores): the ridge penalty chosen on held-out objects."""

from __future__ import annotations

import torch

from equissl.scores import r2_global, ridge_fit, ridge_fit_held_out, ridge_predict


def objects_and_pairs(n: int, per: int, features: int, seed: int, signal: float):
    """``n`` objects of ``per`` rows each: features (an object-specific offset plus noise)
    and a 4-d target ``signal · (x W)`` (one ``W`` for every seed) plus noise the features
    cannot see."""
    g = torch.Generator().manual_seed(seed)
    offset = torch.randn(n, 1, features, generator=g).expand(n, per, features)
    x = (offset + torch.randn(n, per, features, generator=g)).reshape(n * per, features)
    w = torch.randn(features, 4, generator=torch.Generator().manual_seed(99)) / features**0.5
    y = signal * (x @ w) + torch.randn(n * per, 4, generator=g) + torch.tensor([1.0, 0, 0, 0])
    return x, y, torch.arange(n).repeat_interleave(per)


def test_held_out_penalty_keeps_a_signal_free_fit_near_the_constant():
    """Features that say nothing of the target, 60 objects against a 200-wide design: the
    fixed small penalty overfits far below the constant predictor; the held-out one does not."""
    x, y, obj = objects_and_pairs(60, 2, 200, seed=0, signal=0.0)
    xv, yv, _ = objects_and_pairs(40, 2, 200, seed=1, signal=0.0)
    constant = r2_global(y.double().mean(0, keepdim=True).expand(len(yv), -1), yv)
    fixed = r2_global(ridge_predict(ridge_fit(x, y, 1e-2), xv), yv)
    fit, ridge = ridge_fit_held_out(x, y, obj % 5 == 0)
    chosen = r2_global(ridge_predict(fit, xv), yv)
    assert fixed < constant - 0.2, (fixed, constant)
    assert chosen > constant - 0.05, (chosen, constant)
    assert ridge >= 1.0


def test_held_out_penalty_keeps_a_real_signal():
    """A target linear in the features: a small penalty is chosen and the R² is high."""
    x, y, obj = objects_and_pairs(200, 2, 20, seed=2, signal=5.0)
    xv, yv, _ = objects_and_pairs(50, 2, 20, seed=3, signal=5.0)
    fit, ridge = ridge_fit_held_out(x, y, obj % 5 == 0)
    assert ridge <= 1e-1
    assert r2_global(ridge_predict(fit, xv), yv) > 0.6
