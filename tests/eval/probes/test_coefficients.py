"""The coefficient-regression probe (issue 11 item 4): head range, metrics, the
predict-the-mean floor and the linear probe on features that carry the coefficient."""

from dataclasses import asdict
from types import SimpleNamespace

import pytest
import torch

from equissl.eval.probes.coefficients import (
    CoefficientProbe,
    CoefficientProbeConfig,
    RangeSigmoidHead,
    coefficient_metrics,
    labelled_subset,
    linear_coefficient_probe,
    mean_baseline,
    target_range,
)

CFG = {"epochs": 60, "lr": 1e-2, "weight_decay": 0.0, "batch_size": 64, "seed": 0}


def test_head_outputs_always_lie_in_the_target_range():
    lo, hi = torch.tensor([0.1, -2.0]), torch.tensor([0.6, 3.0])
    head = RangeSigmoidHead(8, lo, hi)
    assert head.linear.bias is None  # the released head: Linear(512, 1, bias=False)
    with torch.no_grad():
        head.linear.weight.normal_(0, 100.0)  # saturate the sigmoid both ways
    out = head(torch.randn(4096, 8) * 100)
    assert (out >= lo).all() and (out <= hi).all()
    assert out[:, 0].min() < 0.11 and out[:, 0].max() > 0.59  # the whole range is reachable


def test_range_reproduces_the_released_one_for_buoyancy():
    b = torch.linspace(0.2, 0.5, 101)[:, None]
    lo, hi = target_range(b, ("buoyancy",), 1.0 / 3.0, {})
    torch.testing.assert_close((lo, hi), (torch.tensor([0.1]), torch.tensor([0.6])))
    lo, hi = target_range(b, ("buoyancy",), 1.0 / 3.0, {"buoyancy": [0.0, 1.0]})
    assert (float(lo), float(hi)) == (0.0, 1.0)


def test_a_nonnegative_coefficient_gets_no_negative_range():
    """Burgers ν in [1e-3, 1e-2] widened by a third of its span would reach below 0 (a
    negative viscosity); signed coefficients keep their widened range."""
    nu = torch.linspace(1e-3, 1e-2, 11)[:, None]
    lo, hi = target_range(nu, ("nu",), 1.0 / 3.0, {})
    assert float(lo) == 0.0 and float(hi) == pytest.approx(1.3e-2)
    signed = torch.linspace(-1.0, 1.0, 11)[:, None]
    lo, _ = target_range(signed, ("c",), 0.5, {})
    assert float(lo) == pytest.approx(-2.0)


def test_metrics_by_hand():
    pred = torch.tensor([[0.3], [0.5]], dtype=torch.float64)
    target = torch.tensor([[0.2], [0.4]], dtype=torch.float64)
    m = coefficient_metrics(pred, target)
    assert abs(m["mse"] - 0.01) < 1e-9
    assert abs(m["nmse"] - 0.5 * (0.01 / 0.04 + 0.01 / 0.16)) < 1e-9
    assert abs(m["rel_error"] - 0.5 * (0.1 / 0.2 + 0.1 / 0.4)) < 1e-9
    vec = coefficient_metrics(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 1.0]]))
    assert abs(vec["nmse"] - 2.0) < 1e-9  # ‖ŷ − y‖² / ‖y‖² over the coefficient vector


def test_predict_the_mean_floor_for_uniform_buoyancy():
    g = torch.Generator().manual_seed(0)
    train = 0.2 + 0.3 * torch.rand(200_000, 1, generator=g)
    val = 0.2 + 0.3 * torch.rand(200_000, 1, generator=g)
    m = mean_baseline(train, val)
    assert abs(m["mean_mse"] - 0.0075) < 1e-4  # Var U(0.2, 0.5) = 0.3² / 12
    assert set(m) == {"mean_mse", "mean_nmse", "mean_rel_error"}


def test_linear_probe_learns_a_coefficient_carried_by_the_features():
    g = torch.Generator().manual_seed(1)

    def data(n):
        b = 0.2 + 0.3 * torch.rand(n, 1, generator=g)
        x = torch.randn(n, 4, 16, generator=g) * 0.05
        x[..., 0] += (b - 0.35) * 10  # every view of an object carries its b
        return x, b

    (xt, yt), (xv, yv) = data(400), data(100)
    lo, hi = target_range(yt, ("b",), 1.0 / 3.0, {})
    res = linear_coefficient_probe(xt, yt, xv, yv, lo, hi, CFG, torch.device("cpu"), False)
    floor = mean_baseline(yt, yv)["mean_mse"]
    assert res.metrics["mse"] < 0.1 * floor and res.pred.shape == (400, 1)
    assert (res.pred >= lo).all() and (res.pred <= hi).all()
    noise = linear_coefficient_probe(
        xt[..., 1:], yt, xv[..., 1:], yv, lo, hi, CFG, torch.device("cpu"), False
    )
    assert noise.metrics["mse"] > 0.5 * floor


def test_labelled_subset_is_seeded_sorted_and_sized():
    a = labelled_subset(100, 0.1, seed=3)
    assert len(a) == 10 and torch.equal(a, a.sort().values) and len(set(a.tolist())) == 10
    assert torch.equal(a, labelled_subset(100, 0.1, seed=3))
    assert not torch.equal(a, labelled_subset(100, 0.1, seed=4))
    assert torch.equal(labelled_subset(7, 1.0, seed=0), torch.arange(7))
    assert len(labelled_subset(100, 0.001, seed=0)) == 2  # a mean and a head need two
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="labelled_fraction"):
            labelled_subset(10, bad, seed=0)


def test_probe_fits_every_row_on_the_labelled_share_only():
    g = torch.Generator().manual_seed(2)
    coeffs = 0.2 + 0.3 * torch.rand(200, 1, generator=g)
    feats = torch.randn(200, 2, 8, generator=g)
    val = SimpleNamespace(coeffs=coeffs[:50], part=lambda _: feats[:50])
    defaults = asdict(CoefficientProbeConfig())
    cfg = {**defaults, **CFG, "epochs": 2, "range_margin": 0.0, "baselines": False}
    ctx = SimpleNamespace(
        train=SimpleNamespace(coeffs=coeffs, part=lambda _: feats, views_per_object=2),
        val=val,
        meta={"spec": {"coeff_names": ("b",)}},
        device=torch.device("cpu"),
        progress=False,
        datasets={"train": None, "val": None},
        method=None,
        features_of=None,  # features given: the heads use them as they are
    )
    probe = CoefficientProbe("coefficients", {**cfg, "labelled_fraction": 0.05})
    keep = labelled_subset(200, 0.05, seed=0)
    m = probe.run(ctx, "full").metrics
    assert m["labelled"] == 10.0
    assert m["mean_mse"] == pytest.approx(mean_baseline(coeffs[keep], val.coeffs)["mean_mse"])
    lo, hi = probe.head_range(ctx)  # margin 0: exactly the labelled labels' range
    assert (float(lo), float(hi)) == (float(coeffs[keep].min()), float(coeffs[keep].max()))
    full = CoefficientProbe("coefficients", {**cfg, "labelled_fraction": 1.0}).run(ctx, "full")
    assert full.metrics["labelled"] == 200.0


def test_head_loss_is_the_mse_in_units_of_its_range():
    head = RangeSigmoidHead(3, torch.tensor([0.0, 1.0]), torch.tensor([2.0, 11.0]))
    pred, target = torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 8.0]])
    assert float(head.loss(pred, target)) == pytest.approx(0.5 * ((1 / 2) ** 2 + (5 / 10) ** 2))


def test_linear_probe_fits_a_tiny_target_as_well_as_a_unit_one():
    """Burgers ν lives in [1e-3, 1e-2]: the fit must not depend on the target's units."""
    g = torch.Generator().manual_seed(5)
    b = 0.2 + 0.3 * torch.rand(300, 1, generator=g)
    x = torch.randn(300, 2, 8, generator=g) * 0.05
    x[..., 0] += (b - 0.35) * 10
    cfg = {**CFG, "epochs": 10}
    rel = []
    for scale in (1.0, 1e-5):
        y = b * scale
        lo, hi = target_range(y[:200], ("b",), 1.0 / 3.0, {})
        res = linear_coefficient_probe(
            x[:200], y[:200], x[200:], y[200:], lo, hi, cfg, torch.device("cpu"), False
        )
        rel.append(res.metrics["rel_error"])
    assert rel[1] == pytest.approx(rel[0], rel=0.05)
