"""2-D incompressible Navier–Stokes with a buoyancy-driven smoke scalar (vorticity form).

    ω_t + v·∇ω = ν Δω + b ∂ₓs,      s_t + v·∇s = κ Δs,      v = (ψ_y, −ψ_x), Δψ = −ω

``ω = ∂ₓv_y − ∂_yv_x`` is the curl of the velocity, ``b`` the buoyancy (the force ``b s ŷ``
lifts smoke along +y). Settings of the PDEArena "conditioned smoke" data that the
Lie-symmetry paper used (Gupta & Brandstetter 2022): 128×128 grid on a 32×32 domain,
ν = 0.01, 56 frames 1.5 apart, b ~ U(0.2, 0.5) per trajectory (regressed). Differences,
named: PDEArena solves on a *walled* domain with a continuous smoke inflow (PhiFlow); we
solve on a *periodic* domain pseudo-spectrally (ETDRK4, 2/3 dealiasing) from random smoke
blobs with no inflow, so that every Lie point symmetry of the equations is an exact
symmetry of the data (a wall or a fixed inflow breaks translations and scalings);
κ = ν. Fields stored per frame: (s, v_x, v_y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from equissl.datasets.pde.equations import EQUATIONS
from equissl.datasets.pde.spectral import ETDRK4

CHANNELS = ("s", "vx", "vy")


@EQUATIONS.register("ns")
@dataclass
class NavierStokes2D:
    name: str = "ns"
    coeff_names: tuple[str, ...] = ("buoyancy",)
    nx: int = 128
    length: float = 32.0
    nt: int = 56
    frame_dt: float = 1.5
    substeps: int = 30
    nu: float = 0.01
    buoyancy_range: tuple[float, float] = (0.2, 0.5)
    blobs: int = 3
    params: dict = field(default_factory=dict)

    def wavenumbers(self, device: torch.device) -> tuple[Tensor, Tensor]:
        n = self.nx
        kx = (
            2
            * math.pi
            * torch.fft.fftfreq(n, d=self.length / n, device=device, dtype=torch.float64)
        )
        ky = (
            2
            * math.pi
            * torch.fft.rfftfreq(n, d=self.length / n, device=device, dtype=torch.float64)
        )
        return kx[:, None], ky[None, :]

    def grid(self) -> Tensor:
        return torch.arange(self.nx, dtype=torch.float64) * self.length / self.nx

    def sample_coeffs(self, gen: torch.Generator, batch: int) -> Tensor:
        lo, hi = self.buoyancy_range
        return lo + (hi - lo) * torch.rand(batch, 1, generator=gen, dtype=torch.float64)

    def initial_smoke(self, gen: torch.Generator, batch: int) -> Tensor:
        """Sum of random Gaussian blobs ``[B, X, Y]`` in the lower half of the domain."""
        x = self.grid()
        s = torch.zeros(batch, self.nx, self.nx, dtype=torch.float64)
        for _ in range(self.blobs):
            cx = self.length * torch.rand(batch, 1, 1, generator=gen, dtype=torch.float64)
            cy = self.length * (
                0.1 + 0.3 * torch.rand(batch, 1, 1, generator=gen, dtype=torch.float64)
            )
            width = 1.5 + 2.0 * torch.rand(batch, 1, 1, generator=gen, dtype=torch.float64)
            dx = (x[None, :, None] - cx + self.length / 2) % self.length - self.length / 2
            dy = (x[None, None, :] - cy + self.length / 2) % self.length - self.length / 2
            s = s + torch.exp(-(dx**2 + dy**2) / (2 * width**2))
        return s

    def velocity(self, w_hat: Tensor, kx: Tensor, ky: Tensor) -> tuple[Tensor, Tensor]:
        k2 = kx**2 + ky**2
        psi_hat = w_hat / torch.where(k2 == 0, 1.0, k2)
        psi_hat = torch.where(k2 == 0, 0, psi_hat)
        n = self.nx
        vx = torch.fft.irfft2(1j * ky * psi_hat, s=(n, n))
        vy = torch.fft.irfft2(-1j * kx * psi_hat, s=(n, n))
        return vx, vy

    def solve(self, s0: Tensor, buoyancy: Tensor) -> Tensor:
        """Integrate from rest; returns ``[B, nt, 3, X, Y]`` frames of (s, v_x, v_y)."""
        device = s0.device
        kx, ky = self.wavenumbers(device)
        k2 = kx**2 + ky**2
        n = self.nx
        mask = (kx.abs() < (2 / 3) * kx.abs().max()) & (ky.abs() < (2 / 3) * ky.abs().max())
        b = buoyancy.reshape(-1, 1, 1)
        lin = (-self.nu * k2).to(torch.complex128).expand(2, *k2.shape)[None]  # [1, 2, Kx, Ky]
        batch = s0.shape[0]
        stepper = ETDRK4(
            lin.expand(batch, -1, -1, -1),
            torch.full((batch,), self.frame_dt / self.substeps, dtype=torch.float64, device=device),
        )

        def nonlinear(state: Tensor) -> Tensor:
            w_hat, s_hat = state[:, 0] * mask, state[:, 1] * mask
            vx, vy = self.velocity(w_hat, kx, ky)

            def grad(f_hat: Tensor) -> tuple[Tensor, Tensor]:
                return (
                    torch.fft.irfft2(1j * kx * f_hat, s=(n, n)),
                    torch.fft.irfft2(1j * ky * f_hat, s=(n, n)),
                )

            wx, wy = grad(w_hat)
            sx, sy = grad(s_hat)
            nw = torch.fft.rfft2(-(vx * wx + vy * wy)) + b * 1j * kx * s_hat
            ns = torch.fft.rfft2(-(vx * sx + vy * sy))
            return torch.stack((nw * mask, ns * mask), dim=1)

        state = torch.stack((torch.zeros_like(s0), s0), dim=1)
        state = torch.fft.rfft2(state)
        frames = []
        for f in range(self.nt):
            if f:
                for _ in range(self.substeps):
                    state = stepper.step(state, nonlinear)
            vx, vy = self.velocity(state[:, 0], kx, ky)
            s = torch.fft.irfft2(state[:, 1], s=(n, n))
            frames.append(torch.stack((s, vx, vy), dim=1))
        return torch.stack(frames, dim=1)


def vorticity_residual(
    frames: Tensor, t: Tensor, length: float, nu: float, buoyancy: float
) -> float:
    """Relative residual of the vorticity equation for ``frames [T, 3, X, Y]`` (s, vx, vy):
    4th-order differences in time, spectral in space."""
    n = frames.shape[-1]
    k = 2 * math.pi * torch.fft.fftfreq(n, d=length / n, dtype=torch.float64)
    kx, ky = k[:, None], k[None, :]

    def d(f: Tensor, ax: Tensor) -> Tensor:
        return torch.fft.ifft2(1j * ax * torch.fft.fft2(f)).real

    s, vx, vy = frames[:, 0].double(), frames[:, 1].double(), frames[:, 2].double()
    w = d(vy, kx) - d(vx, ky)
    dt = t[1] - t[0]
    wt = (-w[4:] + 8 * w[3:-1] - 8 * w[1:-3] + w[:-4]) / (12 * dt)
    w, s, vx, vy = (a[2:-2] for a in (w, s, vx, vy))
    lap = torch.fft.ifft2(-(kx**2 + ky**2) * torch.fft.fft2(w)).real
    rhs = -(vx * d(w, kx) + vy * d(w, ky)) + nu * lap + buoyancy * d(s, kx)
    return float((wt - rhs).norm() / wt.norm())
