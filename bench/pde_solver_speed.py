"""Batched ETDRK4 (torch) vs per-trajectory scipy ``solve_ivp(method="Radau")`` — the
LPSDA generator's solver — on the same KdV/KS problems, at matched accuracy.

    python bench/pde_solver_speed.py [--equation kdv] [--batch 64] [--scipy-trajectories 4]

Both solve identical initial conditions (LPSDA sine sums) with the same pseudo-spectral
right-hand side. Accuracy is measured against a fine reference (ETDRK4 with 640 steps per
stored frame); Radau runs at ``--tol`` (LPSDA uses 1e-9; 1e-6 keeps this bench short) and
ETDRK4's step count is doubled until its error is at most Radau's. Prints the trajectories
per second of each, their ratio (measured in this run), and each error.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.integrate import solve_ivp

from equissl.datasets.pde.equations import EQUATIONS, solve_etdrk4


def numpy_rhs(equation: str, length: float):
    n_holder = {}

    def rhs(_t: float, u: np.ndarray) -> np.ndarray:
        n = u.shape[0]
        if "k" not in n_holder:
            n_holder["k"] = 2 * np.pi * np.fft.rfftfreq(n, d=length / n)
            n_holder["mask"] = np.arange(n // 2 + 1) < n / 3
        k, mask = n_holder["k"], n_holder["mask"]
        v = np.fft.rfft(u) * mask
        w = np.fft.irfft(v, n)
        adv = -0.5 * np.fft.irfft(1j * k * np.fft.rfft(w * w) * mask, n)
        if equation == "kdv":
            lin = np.fft.irfft((1j * k) ** 3 * -1 * v, n)
        else:
            lin = np.fft.irfft(((1j * k) ** 2 * -1 - (1j * k) ** 4) * v, n)
        return adv + lin

    return rhs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--equation", default="kdv", choices=["kdv", "ks"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--scipy-trajectories", type=int, default=4)
    ap.add_argument("--nx", type=int, default=128)
    ap.add_argument("--horizon", type=float, default=20.0)
    ap.add_argument("--frames", type=int, default=28)
    ap.add_argument("--tol", type=float, default=1e-6, help="Radau rtol = atol")
    args = ap.parse_args()
    eq = EQUATIONS.get(args.equation)(nx=args.nx, jitter=0.0, horizon=args.horizon)
    gen = torch.Generator().manual_seed(0)
    length = torch.full((args.batch,), eq.length, dtype=torch.float64)
    horizon = torch.full((args.batch,), args.horizon, dtype=torch.float64)
    x = torch.arange(args.nx, dtype=torch.float64)[None] * length[:, None] / args.nx
    u0 = eq.initial_condition(gen, x, length)
    coeffs = torch.zeros(args.batch, 0, dtype=torch.float64)

    def ours(substeps: int, batch: int) -> torch.Tensor:
        return solve_etdrk4(
            eq, u0[:batch], length[:batch], horizon[:batch], coeffs[:batch], args.frames, substeps
        )

    reference = ours(640, args.batch)
    t_eval = np.linspace(0, args.horizon, args.frames)
    m = args.scipy_trajectories
    start = time.perf_counter()
    sols = [
        solve_ivp(
            numpy_rhs(args.equation, eq.length),
            (0, args.horizon),
            u0[i].numpy(),
            method="Radau",
            t_eval=t_eval,
            rtol=args.tol,
            atol=args.tol,
        ).y.T
        for i in range(m)
    ]
    t_scipy = (time.perf_counter() - start) / m
    err_scipy = float(np.abs(np.stack(sols) - reference[:m].numpy()).max())

    substeps = 5
    while True:
        ours(substeps, 2)  # warm-up
        start = time.perf_counter()
        fast = ours(substeps, args.batch)
        t_ours = (time.perf_counter() - start) / args.batch
        err_ours = float((fast - reference).abs().max())
        print(f"  ETDRK4 {substeps} steps/frame: max error {err_ours:.2e}")
        if err_ours <= err_scipy or substeps >= 320:
            break
        substeps *= 2
    print(
        f"{args.equation}: nx={args.nx}, T={args.horizon}, {args.frames} frames; "
        f"reference = ETDRK4 with 640 steps/frame"
    )
    print(
        f"ours  (ETDRK4 {substeps} steps/frame, batch {args.batch}, "
        f"{torch.get_num_threads()} threads): "
        f"{1 / t_ours:9.2f} trajectories/s, max error {err_ours:.2e}"
    )
    print(
        f"scipy (Radau tol {args.tol:.0e}, one trajectory at a time): "
        f"{1 / t_scipy:9.2f} trajectories/s, "
        f"max error {err_scipy:.2e}"
    )
    print(f"speed-up ratio ours/scipy at matched accuracy: {t_scipy / t_ours:.1f}x")


if __name__ == "__main__":
    main()
