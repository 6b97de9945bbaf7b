"""Loss terms against the published formulas on small hand-made tensors."""

import math

import pytest
import torch

from equissl.ssl.losses import covariance_term, invariance_term, variance_term
from equissl.ssl.sie import SIE_TERMS, SIEConfig, sie_terms
from equissl.ssl.vicreg import vicreg_terms


def test_variance_hinge_by_hand():
    # column 0: values 0, 2 -> unbiased var 2 -> std 1.414 > 1 -> no penalty
    # column 1: constant -> std sqrt(1e-4) = 0.01 -> penalty 0.99
    x = torch.tensor([[0.0, 5.0], [2.0, 5.0]])
    assert variance_term(x).item() == pytest.approx((0 + 0.99) / 2, abs=1e-6)


def test_covariance_by_hand():
    x = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # cov = [[2, 2], [2, 2]]
    assert covariance_term(x).item() == pytest.approx((2**2 + 2**2) / 2)
    y = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # uncorrelated
    assert covariance_term(y).item() == pytest.approx(0.0)


def test_covariance_matches_lightly():
    from lightly.loss.vicreg_loss import covariance_loss

    torch.manual_seed(3)
    x = torch.randn(32, 64) @ torch.randn(64, 64)
    assert covariance_term(x).item() == pytest.approx(covariance_loss(x).item(), rel=1e-5)


def test_invariance_is_mse():
    a = torch.tensor([[1.0, 2.0]])
    b = torch.tensor([[0.0, 0.0]])
    assert invariance_term(a, b).item() == pytest.approx((1 + 4) / 2)


def reference_vicreg(x, y, eps=1e-4):
    """VICReg terms written out as in the reference code (centre, unbiased var, sqrt)."""
    n, d = x.shape
    inv = ((x - y) ** 2).mean()
    std = 0.0
    cov = 0.0
    for z in (x, y):
        z = z - z.mean(0)
        s = torch.sqrt(z.var(0) + eps)
        std = std + torch.relu(1 - s).mean() / 2
        c = (z.T @ z) / (n - 1)
        off = c - torch.diag(torch.diag(c))
        cov = cov + (off**2).sum() / d
    return inv, std, cov


def test_vicreg_terms_match_reference_formula():
    torch.manual_seed(0)
    x, y = torch.randn(16, 6) * 0.5, torch.randn(16, 6) * 2
    terms = vicreg_terms(x, y)
    inv, std, cov = reference_vicreg(x, y)
    assert terms["invariance"].item() == pytest.approx(inv.item(), rel=1e-6)
    assert terms["variance"].item() == pytest.approx(std.item(), rel=1e-6)
    assert terms["covariance"].item() == pytest.approx(cov.item(), rel=1e-6)


def test_sie_total_matches_published_weights():
    torch.manual_seed(1)
    inv1, inv2, equi1, equi2, pred = (torch.randn(12, 4) for _ in range(5))
    terms = sie_terms(inv1, inv2, equi1, equi2, pred)
    z1, z2 = torch.cat((inv1, equi1), 1), torch.cat((inv2, equi2), 1)
    _, std, cov = reference_vicreg(z1, z2)
    pred_std = torch.relu(1 - torch.sqrt(pred.var(0) + 1e-4)).mean() / 2
    expected = (
        10 * ((inv1 - inv2) ** 2).mean()
        + 0.45 * 10 * ((pred - equi2) ** 2).mean()
        + 10 * std
        + 10 * pred_std
        + 1 * cov
    )
    recipe = SIEConfig().weights  # the published recipe as the default weights
    assert set(recipe) == set(SIE_TERMS) == set(terms)

    def total(weights: dict) -> float:
        return float(sum(weights[k] * terms[k] for k in SIE_TERMS))

    assert total(recipe) == pytest.approx(expected.item(), rel=1e-6)
    no_var = dict(recipe, pred_variance=0.0)  # configs/method/sie_novar.yaml
    assert total(no_var) == pytest.approx((expected - 10 * pred_std).item(), rel=1e-6)


def test_sie_without_invariant_part():
    torch.manual_seed(2)
    equi1, equi2, pred = (torch.randn(8, 3) for _ in range(3))
    terms = sie_terms(None, None, equi1, equi2, pred)
    assert terms["invariance"].item() == 0.0
    assert math.isfinite(terms["covariance"].item())
