"""The coefficient-regression probe (issue 11 item 4): head range, metrics, the
predict-the-mean floor and the linear probe on features that carry the coefficient."""

import torch

from equissl.eval.probes.coefficients import (
    RangeSigmoidHead,
    coefficient_metrics,
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
