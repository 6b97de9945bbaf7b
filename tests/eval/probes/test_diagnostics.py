"""Diagnostics probe: distances and variance shares by hand, the equivariance partial R²
against a direct least-squares computation, and the known answers of invariant,
rotation-linear and random features; the probe's keys, skips and PCA plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from equissl.datasets.iebench_actions import IEBenchActionSpace, rotation_of
from equissl.eval.features import FeatureSet
from equissl.eval.probes.base import EvalContext
from equissl.eval.probes.diagnostics import (
    Moments,
    Pairs,
    action_features,
    distances,
    equivariance,
    pca_2d,
    pose_colour,
    split_pairs,
    variance_decomposition,
)
from equissl.registries import PROBES

CFG = {"impl": "diagnostics", "seed": 0, "pairs_per_object": 10, "components": None,
       "degree": 2, "components_pca": 32, "ridges": [1e-4, 1e-2, 1.0, 100.0], "pca_plot": True,
       "pca_points": 5000}  # fmt: skip
ROTATION = IEBenchActionSpace().select(["rotation"])


def random_latents(n: int, v: int, seed: int) -> torch.Tensor:
    """``[n, v, 7]`` 3DIEBench-like latents (Euler angles in ±π/2, hues, light)."""
    g = torch.Generator().manual_seed(seed)
    lat = torch.rand(n, v, 7, generator=g)
    lat[..., :3] = (lat[..., :3] - 0.5) * torch.pi
    return lat


def invariant(n: int, v: int, d: int, seed: int) -> torch.Tensor:
    """Every view of an object at the object's own random unit vector."""
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, 1, d, generator=g), dim=-1).expand(n, v, d).clone()


def rotation_linear(lat: torch.Tensor, seed: int) -> torch.Tensor:
    """``[vec(R_v) / √6 ‖ c_o / √2]``: linear in the view's rotation matrix plus an object
    code ``c_o`` (unit), so every view has norm 1 and the object still matters."""
    n, v, _ = lat.shape
    g = torch.Generator().manual_seed(seed)
    code = F.normalize(torch.randn(n, 1, 5, generator=g), dim=-1).expand(n, v, 5)
    rot = rotation_of(lat.double()).flatten(-2).float()  # [n, v, 9], norm √3
    return torch.cat((rot / math.sqrt(6), code / math.sqrt(2)), dim=-1)


def test_distances_and_variance_shares_by_hand():
    # object 0: both views at (1, 0); object 1: views at (0, 1) and (0, -1)
    z = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, -1.0]]])
    d = distances(z, pairs_per_object=3, seed=0)
    # within: 0 for object 0, 2 for object 1, as many pairs each; between: always √2
    assert d["within"] == pytest.approx(1.0)
    assert d["between"] == pytest.approx(math.sqrt(2))
    assert d["invariance"] == pytest.approx(1 - 1 / math.sqrt(2))
    # m_0 = (1, 0), m_1 = (0, 0), m = (.5, 0): SS_view = 2, SS_object = 2 (.25 + .25) = 1
    v = variance_decomposition(z)
    assert v["var_object"] == pytest.approx(1 / 3) and v["var_view"] == pytest.approx(2 / 3)


def test_invariant_features_score_one_and_do_not_move():
    z = invariant(40, 4, 8, seed=0)
    d, v = distances(z, 10, 0), variance_decomposition(z)
    assert d["within"] == pytest.approx(0.0, abs=1e-7) and d["invariance"] == pytest.approx(1.0)
    assert v["var_object"] == pytest.approx(1.0) and v["var_view"] == pytest.approx(0.0, abs=1e-9)
    train = split_pairs(invariant(60, 4, 8, 1), random_latents(60, 4, 1), ROTATION, 10, 0)
    val = split_pairs(z, random_latents(40, 4, 0), ROTATION, 10, 1)
    assert equivariance(train, val) == 0.0


def test_random_features_score_about_zero():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(300, 4, 16, generator=g), dim=-1)
    d, v = distances(z, 10, 0), variance_decomposition(z)
    assert abs(d["invariance"]) < 0.03
    assert v["var_object"] == pytest.approx(1 / 4, abs=0.03)  # pure noise: ≈ 1/V
    train_z = F.normalize(torch.randn(800, 4, 16, generator=g), dim=-1)
    train = split_pairs(train_z, random_latents(800, 4, 1), ROTATION, 10, 0)
    val = split_pairs(z, random_latents(300, 4, 2), ROTATION, 10, 1)
    assert abs(equivariance(train, val, components_pca=8)) < 0.05


def test_features_linear_in_the_rotation_are_equivariant_but_not_invariant():
    lat_train, lat_val = random_latents(200, 5, 0), random_latents(80, 5, 1)
    train_z, val_z = rotation_linear(lat_train, 0), rotation_linear(lat_val, 1)
    train = split_pairs(train_z, lat_train, ROTATION, 10, 0)
    val = split_pairs(val_z, lat_val, ROTATION, 10, 1)
    # R_b = R_a R(g), R(g) quadratic in the quaternion: exact at degree 2, not at degree 1
    assert equivariance(train, val, degree=2, ridges=[1e-9]) == pytest.approx(1.0, abs=1e-6)
    assert equivariance(train, val, degree=1, ridges=[1e-9]) < 0.9
    d = distances(val_z, 10, 0)
    assert 0.1 < d["invariance"] < 0.9 and d["within"] > 0.1


def test_equivariance_is_the_partial_r2_of_least_squares():
    """Against numpy lstsq on the designs written out (no PCA cut, no ridge)."""
    g = torch.Generator().manual_seed(3)
    lat_t, lat_v = random_latents(50, 3, 4), random_latents(30, 3, 5)
    train_z = rotation_linear(lat_t, 2) + 0.3 * torch.randn(50, 3, 14, generator=g)
    val_z = rotation_linear(lat_v, 3) + 0.3 * torch.randn(30, 3, 14, generator=g)
    train = split_pairs(train_z, lat_t, ROTATION, 6, 0)
    val = split_pairs(val_z, lat_v, ROTATION, 6, 1)
    got = equivariance(train, val, degree=1, components_pca=14, ridges=[0.0])

    def designs(p: Pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        o, a, b = p.pairs.unbind(1)
        za = F.normalize(p.z[o, a].double(), dim=-1).numpy()
        zb = F.normalize(p.z[o, b].double(), dim=-1).numpy()
        red = np.hstack([np.ones((len(za), 1)), za])  # all axes: PCA is a change of basis
        gg = p.g.double().numpy()
        full = np.hstack([red] + [gg[:, k : k + 1] * red for k in range(gg.shape[1])])
        return red, full, zb - za

    (tr_red, tr_full, tr_d), (va_red, va_full, va_d) = designs(train), designs(val)
    res = []
    for xt, xv in ((tr_red, va_red), (tr_full, va_full)):
        w = np.linalg.lstsq(xt, tr_d, rcond=None)[0]
        res.append(((va_d - xv @ w) ** 2).sum())
    assert got == pytest.approx(1 - res[1] / res[0], rel=1e-6)


def test_action_features_are_one_g_and_the_upper_products():
    g = torch.tensor([[2.0, 3.0]])
    torch.testing.assert_close(action_features(g, 1), torch.tensor([[1.0, 2.0, 3.0]]))
    torch.testing.assert_close(
        action_features(g, 2), torch.tensor([[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]])
    )


def test_pca_2d_finds_the_spread_axes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 5, generator=g) * torch.tensor([5.0, 0.1, 2.0, 0.1, 0.1])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        coords, explained = pca_2d(x)
    assert coords.shape == (500, 2)
    corr = torch.corrcoef(torch.stack((coords[:, 0], x[:, 0], coords[:, 1], x[:, 2])))
    assert corr[0, 1].abs() > 0.99 and corr[2, 3].abs() > 0.99
    var = x.var(0, unbiased=False)
    torch.testing.assert_close(explained, (var[[0, 2]] / var.sum()).float(), rtol=0.02, atol=0)


def test_pose_colour_is_the_absolute_rotation_angle():
    lat = random_latents(4, 3, 0)
    angle, label = pose_colour(IEBenchActionSpace(), lat)
    rot = rotation_of(lat.double())
    want = torch.arccos(((rot.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    torch.testing.assert_close(angle.double(), want.rad2deg(), atol=1e-3, rtol=0)
    assert "angle" in label


def features(lat: torch.Tensor, seed: int) -> FeatureSet:
    n, v, _ = lat.shape
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, (n,), generator=g)
    return FeatureSet(
        parts={"inv": 3 * invariant(n, v, 6, seed), "equi": 2 * rotation_linear(lat, seed)},
        latents=lat,
        labels=labels,
        coeffs=torch.zeros(n, 0),
        index=torch.arange(n),
    )


def context(train: FeatureSet, val: FeatureSet, out: Path) -> EvalContext:
    return EvalContext(
        train=train, val=val, action_space=IEBenchActionSpace(), num_classes=3, method=None,
        meta={"config": {"method": {"name": "toy"}}, "action": {"components": ["rotation"]}},
        datasets={}, device=torch.device("cpu"), out_dir=out, progress=False,
    )  # fmt: skip


def test_diagnostics_probe_on_known_parts(tmp_path):
    ctx = context(
        features(random_latents(120, 4, 0), 0), features(random_latents(40, 4, 1), 1), tmp_path
    )
    probe = PROBES.get("diagnostics")("diagnostics", CFG)
    assert probe.skip_reason(ctx) is None and probe.parts(ctx, ["inv", "equi"]) == ["inv", "equi"]
    inv, equi = probe.run(ctx, "inv"), probe.run(ctx, "equi")
    keys = {"within", "between", "invariance", "var_object", "var_view", "equivariance"}
    assert set(inv.metrics) == keys == set(equi.metrics)
    assert inv.metrics["invariance"] == pytest.approx(1.0) and inv.metrics["equivariance"] == 0.0
    assert equi.metrics["equivariance"] > 0.99 and equi.metrics["invariance"] < 0.9
    assert equi.plots == {"diagnostics/pca_equi": "diagnostics_pca_equi.png"}
    assert (tmp_path / "diagnostics_pca_equi.png").stat().st_size > 1000
    again = PROBES.get("diagnostics")("diagnostics", CFG).run(ctx, "equi")
    assert again.metrics == equi.metrics  # seeded


def test_diagnostics_skips_and_rejects_bad_settings(tmp_path):
    one_view = features(random_latents(10, 1, 0), 0)
    probe = PROBES.get("diagnostics")("diagnostics", CFG)
    assert "two views" in probe.skip_reason(context(one_view, one_view, tmp_path))
    both = features(random_latents(10, 3, 0), 0)
    other = PROBES.get("diagnostics")("diagnostics", {**CFG, "components": ["translation"]})
    assert "translation" in other.skip_reason(context(both, both, tmp_path))
    with pytest.raises(ValueError, match="degree"):
        PROBES.get("diagnostics")("diagnostics", {**CFG, "degree": 3})


def test_held_out_error_is_the_residual_sum_of_squares_it_stands_for():
    g = torch.Generator().manual_seed(7)
    x0s, xgs, deltas = (torch.randn(2, 40, w, generator=g).double() for w in (3, 5, 4))
    fit, held = Moments.zeros(3, 5, 4), Moments.zeros(3, 5, 4)
    fit.add(x0s[0], xgs[0], deltas[0])
    held.add(x0s[1], xgs[1], deltas[1])
    w0, b, wg = fit.fit(0.5)
    r = deltas[1] - x0s[1] @ w0
    u = xgs[1] - x0s[1] @ b
    want = float(((r - u @ wg) ** 2).sum() - (r**2).sum())
    assert held.held_out_error(w0, b, wg) == pytest.approx(want, rel=1e-9)


def test_the_ridge_chosen_on_held_out_objects_keeps_noise_near_zero_and_signal_at_one():
    g = torch.Generator().manual_seed(1)
    lat_t, lat_v = random_latents(300, 4, 3), random_latents(200, 4, 4)
    noise_t = F.normalize(torch.randn(300, 4, 16, generator=g), dim=-1)
    noise_v = F.normalize(torch.randn(200, 4, 16, generator=g), dim=-1)
    train = split_pairs(noise_t, lat_t, ROTATION, 10, 0)
    val = split_pairs(noise_v, lat_v, ROTATION, 10, 1)
    fixed_small = equivariance(train, val, ridges=[1e-4])
    chosen = equivariance(train, val)
    assert fixed_small < -0.05 and abs(chosen) < abs(fixed_small) / 3  # overfitting shrunk
    train = split_pairs(rotation_linear(lat_t, 0), lat_t, ROTATION, 10, 0)
    val = split_pairs(rotation_linear(lat_v, 1), lat_v, ROTATION, 10, 1)
    assert equivariance(train, val) > 0.999


def test_pose_colour_without_rotation_is_the_action_norm():
    from equissl.datasets.pde.dataset import PDEActionSpace

    space = PDEActionSpace("burgers")
    lat = torch.rand(3, 2, space.latent_dim)
    value, label = pose_colour(space, lat)
    want = space.relative(torch.zeros_like(lat), lat).norm(dim=-1)
    torch.testing.assert_close(value, want)
    assert value.shape == (3, 2) and "action" in label


def test_tsne_keeps_objects_together_and_is_drawn(tmp_path):
    from equissl.eval.probes.diagnostics import tsne_2d

    z = invariant(16, 4, 6, seed=3) + 0.01 * torch.randn(16, 4, 6)
    coords = tsne_2d(z.reshape(-1, 6), seed=0).view(16, 4, 2)
    within = (coords - coords.mean(1, keepdim=True)).norm(dim=-1).mean()
    between = torch.cdist(coords.mean(1), coords.mean(1)).mean()
    assert within < 0.2 * between  # views of one object stay neighbours
    ctx = context(
        features(random_latents(40, 4, 0), 0), features(random_latents(12, 4, 1), 1), tmp_path
    )
    cfg = {**CFG, "pca_plot": False, "tsne_plot": True, "tsne_points": 40}
    res = PROBES.get("diagnostics")("diagnostics", cfg).run(ctx, "equi")
    assert res.plots == {"diagnostics/tsne_equi": "diagnostics_tsne_equi.png"}
    assert (tmp_path / "diagnostics_tsne_equi.png").stat().st_size > 1000


def test_unlabelled_points_are_coloured_by_the_first_coefficient(tmp_path):
    lat = random_latents(20, 4, 0)
    val = features(lat, 0)
    val.labels = torch.full((20,), -1)
    val.coeffs = torch.linspace(0.1, 0.5, 20)[:, None]
    ctx = context(val, val, tmp_path)
    ctx.meta["spec"] = {"coeff_names": ["nu"]}
    probe = PROBES.get("diagnostics")("diagnostics", CFG)
    x, first, pose, _ = probe.view_points(ctx, val.parts["equi"], 50)
    assert not first.categorical and first.label == "nu" and len(x) == len(pose) == 50
    # every point carries its own object's coefficient
    assert set(first.values.tolist()) <= set(val.coeffs[:, 0].tolist())
    labelled = context(features(lat, 0), features(lat, 0), tmp_path)
    assert probe.view_points(labelled, val.parts["equi"], 50)[1].categorical
