"""PDE residuals of sampled trajectories, for tests and data checks.

``u_t`` by 4th-order central differences in time (interior frames), space derivatives
spectrally. Rows may live on shifted grids (after a Galilean boost the row at time t is
sampled at ``x + εt``): every row is first moved onto row 0's grid by an exact Fourier
shift. The residual is reported relative to the size of ``u_t``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from equissl.datasets.pde.equations import Equation1D
from equissl.datasets.pde.spectral import wavenumbers


def align_rows(x: Tensor, u: Tensor, start: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Resample rows ``u [T, X]`` sampled at uniform, row-shifted periodic grids ``x [T, X]``
    (common spacing) onto the grid ``start + j·dx`` (default: row 0's grid) by exact Fourier
    shifts. Returns ``(grid [X], u_resampled [T, X])``."""
    n = u.shape[-1]
    dx = x[0, 1] - x[0, 0]
    start = x[0, 0] if start is None else start
    length = (dx * n).reshape(1)
    shift = (start - x[:, 0])[:, None]  # value at start + j dx = u_row(x_row + j dx + shift)
    k = wavenumbers(n, length)[0]
    spec = torch.fft.rfft(u, dim=-1) * torch.exp(1j * k[None, :] * shift)
    grid = start + dx * torch.arange(n, dtype=dx.dtype)
    return grid, torch.fft.irfft(spec, n=n, dim=-1)


def time_derivative(u: Tensor, dt: Tensor | float) -> Tensor:
    """4th-order central difference along dim -2 (frames 2..T-3)."""
    return (-u[..., 4:, :] + 8 * u[..., 3:-1, :] - 8 * u[..., 1:-3, :] + u[..., :-4, :]) / (12 * dt)


def relative_residual(eq: Equation1D, t: Tensor, x: Tensor, u: Tensor, coeffs: Tensor) -> float:
    """``‖u_t − rhs(u)‖ / ‖u_t‖`` for one trajectory: ``t [T]`` uniform, ``x [T, X]`` or
    ``[X]``, ``u [T, X]``, ``coeffs [K]``."""
    t, u = t.double(), u.double()
    x = x.double().expand_as(u) if x.ndim == 1 else x.double()
    x0, ua = align_rows(x, u)
    dt = t[1] - t[0]
    length = ((x0[1] - x0[0]) * u.shape[-1]).reshape(1)
    ut = time_derivative(ua, dt)
    rhs = eq.rhs(ua[None, 2:-2], length, coeffs.double().reshape(1, -1))[0]
    return float((ut - rhs).norm() / ut.norm())
