"""Solver accuracy against closed forms, and convergence under dt and grid refinement."""

import math

import pytest
import torch

from equissl.datasets.pde.equations import (
    Burgers,
    Equation1D,
    KdV,
    burgers_cole_hopf,
    solve_etdrk4,
)
from equissl.datasets.pde.residual import relative_residual


class Heat(Equation1D):
    def linear_symbol(self, k, coeffs):
        return (-coeffs[:, :1] * k**2).to(torch.complex128)

    def nonlinear(self, v, k, mask):
        return torch.zeros_like(v)


def grid(n, length):
    return torch.arange(n, dtype=torch.float64) * length / n


def soliton(x, t, c, x0, length):
    """KdV soliton of u_t + u u_x + u_xxx = 0, speed c, periodised by wrapping."""
    xi = (x - x0 - c * t + length / 2) % length - length / 2
    return 3 * c / torch.cosh(0.5 * math.sqrt(c) * xi) ** 2


def test_heat_modes_decay_exactly():
    n, length, nu, T = 64, 2 * math.pi, 0.1, 2.0
    x = grid(n, length)
    u0 = torch.sin(3 * x) + 0.5 * torch.cos(7 * x)
    eq = Heat(nx=n)
    f64 = torch.float64
    u = solve_etdrk4(
        eq,
        u0[None],
        torch.tensor([length], dtype=f64),
        torch.tensor([T], dtype=f64),
        torch.tensor([[nu]], dtype=f64),
        nt=5,
        substeps=3,
    )
    exact = math.exp(-nu * 9 * T) * torch.sin(3 * x) + 0.5 * math.exp(-nu * 49 * T) * torch.cos(
        7 * x
    )
    assert (u[0, -1] - exact).abs().max() < 1e-12


def kdv_error(n, substeps, T=10.0, c=0.8, length=50.0):
    x = grid(n, length)
    eq = KdV(nx=n)
    u = solve_etdrk4(
        eq,
        soliton(x, 0, c, 20.0, length)[None],
        torch.tensor([length]),
        torch.tensor([T]),
        torch.zeros(1, 0),
        nt=2,
        substeps=substeps,
    )
    return float((u[0, -1] - soliton(x, T, c, 20.0, length)).abs().max())


def test_kdv_soliton_travels_at_its_speed():
    assert kdv_error(256, 1000) < 5e-8


def test_kdv_fourth_order_in_time():
    coarse, fine = kdv_error(256, 100), kdv_error(256, 200)
    assert 10 < coarse / fine < 24  # 2⁴ = 16 for a 4th-order method


def test_kdv_spectral_in_space():
    assert kdv_error(64, 400) > 100 * kdv_error(128, 400)


def test_burgers_solver_matches_cole_hopf():
    n, length, nu, T = 128, 2 * math.pi, 0.05, 1.0
    x = grid(n, length)
    psi0 = torch.exp(0.8 * torch.sin(x) + 0.3 * torch.cos(2 * x + 1))
    t = torch.linspace(0, T, 11, dtype=torch.float64)
    exact = burgers_cole_hopf(psi0[None], t[None], torch.tensor([length]), torch.tensor([nu]))[0]
    eq = Burgers(nx=n)
    u = solve_etdrk4(
        eq,
        exact[0][None],
        torch.tensor([length]),
        torch.tensor([T]),
        torch.tensor([[nu]]),
        nt=11,
        substeps=40,
    )[0]
    assert (u - exact).abs().max() < 1e-8
    assert relative_residual(eq, t, x, exact, torch.tensor([nu])) < 1e-3


@pytest.mark.parametrize("wrong", ["dispersion sign", "advection coefficient"])
def test_residual_detects_wrong_equations(wrong):
    length, n = 50.0, 256
    x = grid(n, length)
    t = torch.linspace(0, 2, 81, dtype=torch.float64)
    u = soliton(x[None, :], t[:, None], 0.8, 20.0, length)
    eq = KdV(nx=n)
    assert relative_residual(eq, t, x, u, torch.zeros(0)) < 1e-4

    class Wrong(KdV):
        def rhs(self, u, length, coeffs):
            from equissl.datasets.pde.spectral import spectral_derivative as d

            if wrong == "dispersion sign":
                return -u * d(u, length, 1) + d(u, length, 3)
            return -0.5 * u * d(u, length, 1) - d(u, length, 3)

    assert relative_residual(Wrong(nx=n), t, x, u, torch.zeros(0)) > 0.1
