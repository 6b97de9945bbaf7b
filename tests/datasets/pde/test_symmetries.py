"""Lie point symmetries: identity, group law, and transformed solutions still solve the PDE."""

import math

import pytest
import torch

from equissl.datasets.pde.equations import KS, Burgers, KdV, burgers_cole_hopf, solve_etdrk4
from equissl.datasets.pde.residual import relative_residual
from equissl.datasets.pde.symmetries import SymmetryGroup, apply_to_points, matrix_log

F64 = torch.float64


def soliton_data(c=0.8, length=50.0, n=256, frames=81, T=2.0):
    x = torch.arange(n, dtype=F64) * length / n
    t = torch.linspace(0, T, frames, dtype=F64)
    xi = (x[None] - 20.0 - c * t[:, None] + length / 2) % length - length / 2
    return t, x, 3 * c / torch.cosh(0.5 * math.sqrt(c) * xi) ** 2


def burgers_data(nu=0.05, n=128, frames=81, T=1.0):
    length = 2 * math.pi
    x = torch.arange(n, dtype=F64) * length / n
    t = torch.linspace(0, T, frames, dtype=F64)
    psi0 = torch.exp(0.8 * torch.sin(x) + 0.3 * torch.cos(2 * x + 1))
    u = burgers_cole_hopf(
        psi0[None], t[None], torch.tensor([length], dtype=F64), torch.tensor([nu], dtype=F64)
    )[0]
    return t, x, u


def transformed(group, eps, t, x, u):
    g = group.element(torch.tensor(eps, dtype=F64))
    t2, x2, u2 = apply_to_points(g, t[:, None], x[None, :], u)
    return t2[:, 0], x2, u2


@pytest.mark.parametrize("equation", ["kdv", "ks", "burgers"])
def test_identity_and_group_law(equation):
    group = SymmetryGroup.for_equation(equation)
    gen = torch.Generator().manual_seed(0)
    a = 0.3 * torch.randn(16, group.dim, generator=gen, dtype=F64)
    b = 0.3 * torch.randn(16, group.dim, generator=gen, dtype=F64)
    eye = torch.eye(5, dtype=F64)
    torch.testing.assert_close(group.element(torch.zeros(group.dim)), eye)
    t, x, u = soliton_data(frames=9, n=16)
    t2, x2, u2 = transformed(group, [0.0] * group.dim, t, x, u)
    assert torch.equal(u2, u) and torch.allclose(x2, x.expand_as(x2))
    ga, gb = group.element(a), group.element(b)
    torch.testing.assert_close(group.compose(group.inverse(ga), ga), eye.expand(16, 5, 5))
    torch.testing.assert_close(group.coordinates(ga), a, atol=1e-9, rtol=0)  # log ∘ exp = id
    rel = group.relative(a, b)
    torch.testing.assert_close(group.element(rel), group.inverse(ga) @ gb, atol=1e-9, rtol=0)
    torch.testing.assert_close(group.relative(a, a), torch.zeros_like(a), atol=1e-9, rtol=0)


def test_matrix_log_inverts_expm():
    group = SymmetryGroup.for_equation("kdv")
    alg = group.algebra(torch.tensor([[0.4, -1.2, 0.7, 0.25]], dtype=F64))
    torch.testing.assert_close(matrix_log(torch.linalg.matrix_exp(alg)), alg, atol=1e-10, rtol=0)


def test_strang_splitting_is_second_order():
    group = SymmetryGroup.for_equation("kdv")
    errs = []
    for s in (0.1, 0.05):
        eps = torch.tensor([s, -s, 0.8 * s, 0.5 * s], dtype=F64)
        errs.append(float((group.element(eps, "strang") - group.element(eps)).abs().max()))
    assert errs[1] < 1e-3 and 6 < errs[0] / errs[1] < 10  # O(ε³): ratio 8


CASES = {
    "kdv": (KdV(), soliton_data, {"t_shift": 0.7, "x_shift": 3.0, "boost": 0.4, "scale": 0.2}),
    "burgers": (
        Burgers(),
        burgers_data,
        {"t_shift": 0.3, "x_shift": 1.0, "boost": 0.5, "scale": 0.15},
    ),
}


@pytest.mark.parametrize("equation", list(CASES))
def test_transformed_exact_solutions_still_solve(equation):
    eq, data, strengths = CASES[equation]
    t, x, u = data()
    coeffs = torch.tensor([0.05], dtype=F64) if equation == "burgers" else torch.zeros(0)
    base = relative_residual(eq, t, x, u, coeffs)
    assert base < 1e-3
    group = SymmetryGroup.for_equation(equation)
    for name, s in strengths.items():
        eps = [s if n == name else 0.0 for n in group.names]
        res = relative_residual(eq, *transformed(group, eps, t, x, u), coeffs)
        assert res < max(5 * base, 1e-4), f"{name}: residual {res:.2e}"
    # all generators at once
    res = relative_residual(eq, *transformed(group, list(strengths.values()), t, x, u), coeffs)
    assert res < max(5 * base, 1e-4)


@pytest.mark.parametrize("equation", list(CASES))
@pytest.mark.parametrize("mistake", ["boost sign", "scaling exponent"])
def test_wrong_symmetries_break_the_solution(equation, mistake):
    from equissl.datasets.pde import symmetries as S

    eq, data, strengths = CASES[equation]
    t, x, u = data()
    coeffs = torch.tensor([0.05], dtype=F64) if equation == "burgers" else torch.zeros(0)
    if mistake == "boost sign":
        gen, eps = S._gen({(S.X, S.T): 1.0, (S.U, S.ONE): -1.0}), strengths["boost"]
    else:  # u exponent off by one
        t_pow, u_pow = (3.0, -1.0) if equation == "kdv" else (2.0, -2.0)
        gen, eps = S.scaling_1d(t_pow, u_pow), strengths["scale"]
    wrong = S.SymmetryGroup(("wrong",), gen[None])
    res = relative_residual(eq, *transformed(wrong, [eps], t, x, u), coeffs)
    assert res > 0.02


def test_ks_boost_of_a_numerical_solution():
    eq = KS(nx=128)
    gen = torch.Generator().manual_seed(0)
    length = torch.tensor([64.0], dtype=F64)
    x = torch.arange(128, dtype=F64) * 64.0 / 128
    u0 = eq.initial_condition(gen, x[None], length)
    u = solve_etdrk4(
        eq, u0, length, torch.tensor([5.0], dtype=F64), torch.zeros(1, 0), nt=101, substeps=10
    )[0]
    t = torch.linspace(0, 5, 101, dtype=F64)
    base = relative_residual(eq, t, x, u, torch.zeros(0))
    group = SymmetryGroup.for_equation("ks")
    boosted = relative_residual(eq, *transformed(group, [0.0, 0.0, 0.6], t, x, u), torch.zeros(0))
    assert base < 1e-3 and boosted < 5 * base
    from equissl.datasets.pde import symmetries as S

    wrong = SymmetryGroup(("b",), S._gen({(S.X, S.T): 1.0, (S.U, S.ONE): -1.0})[None])
    assert relative_residual(eq, *transformed(wrong, [0.6], t, x, u), torch.zeros(0)) > 0.02
