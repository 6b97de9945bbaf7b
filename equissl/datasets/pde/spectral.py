"""Fourier pseudo-spectral tools on periodic grids and the ETDRK4 integrator, batched in torch.

Integrator: ETDRK4 (Cox & Matthews 2002) with the contour-integral evaluation of its
coefficients (Kassam & Trefethen 2005). Our equations split as ``v_t = L v + N(v)`` in
Fourier space with a *diagonal* stiff linear part (dispersion ``i k³`` for KdV, ``k² − k⁴``
for Kuramoto–Sivashinsky, ``−ν k²`` for Burgers and Navier–Stokes): ETDRK4 integrates ``L``
exactly, so the time step is limited by the mild nonlinearity rather than by the k⁴ / k³
stiffness, and it is fourth-order accurate — the standard choice for these equations
(an integrating-factor RK4 is also exact in L but has larger error constants for
dispersive problems). Each trajectory of a batch has its own ``L`` (domain length,
viscosity) and time step, so the coefficients are ``[B, K]`` tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def wavenumbers(n: int, length: Tensor) -> Tensor:
    """Angular wavenumbers ``[B, n // 2 + 1]`` of an ``rfft`` on ``n`` points of period
    ``length [B]`` (same dtype/device as ``length``)."""
    m = torch.arange(n // 2 + 1, dtype=length.dtype, device=length.device)
    return 2 * math.pi * m[None, :] / length[:, None]


def dealias_mask(n: int, device: torch.device | None = None) -> Tensor:
    """The 2/3 rule: keep modes with index < n/3 (``[n // 2 + 1]`` bool)."""
    m = torch.arange(n // 2 + 1, device=device)
    return m < n / 3


def spectral_derivative(u: Tensor, length: Tensor, order: int = 1) -> Tensor:
    """``∂ˣᵒʳᵈᵉʳ u`` of periodic samples ``u [B, ..., n]`` along the last axis, period
    ``length [B]``. The Nyquist mode is dropped for odd orders (its derivative is
    ambiguous on real data)."""
    n = u.shape[-1]
    k = wavenumbers(n, length.to(u.dtype))
    shape = (k.shape[0],) + (1,) * (u.ndim - 2) + (k.shape[1],)
    factor = (1j * k).pow(order).reshape(shape)
    if order % 2 == 1 and n % 2 == 0:
        factor = factor.clone()
        factor[..., -1] = 0
    return torch.fft.irfft(torch.fft.rfft(u, dim=-1) * factor, n=n, dim=-1)


class ETDRK4:
    """Batched ETDRK4 stepper for ``v_t = lin * v + nonlinear(v)`` with diagonal ``lin``.

    Args:
        lin: ``[B, K]`` complex linear operator (Fourier symbol) of each trajectory.
        dt: ``[B]`` time step of each trajectory.
        contour_points: points of the contour integral (32 as Kassam & Trefethen).
    """

    def __init__(self, lin: Tensor, dt: Tensor, contour_points: int = 32) -> None:
        lin = lin.to(torch.complex128)
        h = dt.to(torch.float64).to(lin.device).reshape(-1, *([1] * (lin.ndim - 1)))
        hl = h * lin
        self.E = torch.exp(hl)
        self.E2 = torch.exp(hl / 2)
        j = torch.arange(1, contour_points + 1, dtype=torch.float64, device=lin.device)
        r = torch.exp(2j * math.pi * (j - 0.5) / contour_points)
        lr = hl[..., None] + r  # [..., M]
        e = torch.exp(lr)
        self.Q = h * ((torch.exp(lr / 2) - 1) / lr).mean(-1)
        self.f1 = h * ((-4 - lr + e * (4 - 3 * lr + lr**2)) / lr**3).mean(-1)
        self.f2 = h * ((2 + lr + e * (lr - 2)) / lr**3).mean(-1)
        self.f3 = h * ((-4 - 3 * lr - lr**2 + e * (4 - lr)) / lr**3).mean(-1)
        if torch.all(lin.imag == 0):
            for name in ("Q", "f1", "f2", "f3"):  # exact values are real for real L
                setattr(self, name, getattr(self, name).real.to(torch.complex128))
        self.f2x2 = 2 * self.f2

    def step(self, v: Tensor, nonlinear: Callable[[Tensor], Tensor]) -> Tensor:
        """Advance Fourier coefficients ``v`` by one step."""
        ev = self.E2 * v
        nv = nonlinear(v)
        a = ev + self.Q * nv
        na = nonlinear(a)
        nb = nonlinear(ev + self.Q * na)
        nc = nonlinear(self.E2 * a + self.Q * (2 * nb - nv))
        return self.E * v + nv * self.f1 + (na + nb) * self.f2x2 + nc * self.f3
