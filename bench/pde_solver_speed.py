"""Our batched generator vs per-trajectory scipy ``solve_ivp(method="Radau")`` — the LPSDA
generator's solver — on the same problems, at matched accuracy, for every 1-D equation.

    python bench/pde_solver_speed.py [--equation all] [--batch 64] [--scipy-trajectories 3]

Problems are the generation defaults (``nx = 256``, LPSDA's time window: the grid
``linspace(0, T, nt_grid)``, its last 140 points compared), with L and T at their centres.
Both sides solve identical LPSDA initial conditions with the same dealiased pseudo-spectral
right-hand side, so the errors measure time integration only. Both errors are one norm
(``max_error``): the max |difference| over the same ``--scipy-trajectories`` trajectories,
the same 140 stored frames and all grid points.

KdV and KS: ETDRK4 (ours) vs Radau on the method of lines, both against a reference ETDRK4
with r steps per grid interval (float64). r starts at ``--reference-substeps`` and doubles
(up to ``--max-reference-substeps``) until the reference differs from r/2 steps by at most a
tenth of Radau's error (its own error, 4th order, is about 1/15 of that difference). Our
step count is the smallest whose error is at most Radau's (``match_substeps``: doubling,
then interpolated bisection), searched up to the cap r/2, where our error is that
difference. If the cap is hit, or the reference cannot be made accurate enough, the bench
prints "NOT matched" and labels the time ratio unmatched. Burgers: ours is the exact
Cole–Hopf solution (heat equation in Fourier space); Radau solves the heat equation as LPSDA
does and is mapped by the same Cole–Hopf transform; errors against the closed form.

Radau runs at ``--tol`` = rtol = atol. LPSDA's ``generate/generate_data.py`` uses
rtol = atol = 1e-9 (``--tol 1e-9``); the default 1e-6 keeps this bench short and favours
Radau (fewer of our steps match it).

Each side runs on one thread (per-core throughput; LPSDA runs one trajectory per process;
set ``OMP_NUM_THREADS`` to change). Times are medians: ours over ``--repeats`` runs of the
whole batch, Radau over its trajectories; the ratio is measured in the same run, since the
development machine's 2 cores are shared and absolute rates are noisy.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # before numpy and torch start their thread pools; not on import
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, os.environ.get("OMP_NUM_THREADS", "1"))

import argparse  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from equissl.datasets.pde.equations import (  # noqa: E402
    EQUATIONS,
    Equation1D,
    burgers_cole_hopf,
    inverse_cole_hopf_state,
    solve_etdrk4,
)


def numpy_rhs(equation: str, length: float, n: int, nu: float = 0.0) -> Callable:
    """Method-of-lines right-hand side ``u_t(u)`` (numpy, 2/3-dealiased advection) of
    ``equation`` (``kdv``, ``ks``, or ``heat`` with viscosity ``nu``)."""
    k = 2 * np.pi * np.fft.rfftfreq(n, d=length / n)
    mask = np.arange(n // 2 + 1) < n / 3
    linear = {"kdv": 1j * k**3, "ks": k**2 - k**4, "heat": -nu * k**2}[equation]

    def rhs(_t: float, u: np.ndarray) -> np.ndarray:
        v = np.fft.rfft(u)
        out = linear * v
        if equation != "heat":
            w = np.fft.irfft(v * mask, n)
            out = out - 0.5j * k * np.fft.rfft(w * w) * mask
        return np.fft.irfft(out, n)

    return rhs


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def radau(rhs: Callable, y0: np.ndarray, t: np.ndarray, tol: float) -> tuple[np.ndarray, float]:
    """Radau solution at ``t`` (integrated from 0), and its wall time."""
    start = time.perf_counter()
    sol = solve_ivp(rhs, (0.0, t[-1]), y0, method="Radau", t_eval=t, rtol=tol, atol=tol)
    assert sol.success, sol.message
    return sol.y.T, time.perf_counter() - start


def max_error(sol: np.ndarray, reference: np.ndarray) -> float:
    """The one error norm of this bench, for both solvers: max |sol − reference| over the
    compared trajectories, stored frames and grid points."""
    return float(np.abs(sol - reference).max())


def match_substeps(error: Callable[[int], float], target: float, cap: int) -> tuple[int, bool]:
    """Smallest step count ``s ≤ cap`` with ``error(s) ≤ target``, and whether one was found.

    Doubling from 1 (the last try is ``cap`` itself) brackets it, then the bracket
    ``error(lo) > target ≥ error(hi)`` is narrowed to ``hi − lo = 1`` by log-log
    interpolation (the error of a p-th order method is ∝ s⁻ᵖ), with a bisection whenever an
    interpolated try did not halve the bracket. ``error`` is assumed to decrease with ``s``.
    Returns ``(cap, False)`` when even ``error(cap) > target``: the search stops there and
    nothing is matched. Each ``error(s)`` is called at most once.
    """
    error = functools.cache(error)
    lo, hi = 0, 1
    while error(hi) > target:
        if hi >= cap:
            return cap, False
        lo, hi = hi, min(2 * hi, cap)
    bisect = False
    while hi - lo > 1:
        if bisect or lo == 0 or not error(lo) > error(hi) > 0:
            guess = (lo + hi) // 2
        else:  # log s linear in log error between the bracket's ends
            slope = np.log(hi / lo) / np.log(error(lo) / error(hi))
            guess = int(np.ceil(lo * (error(lo) / target) ** slope))
        guess = min(max(guess, lo + 1), hi - 1)
        width = hi - lo
        lo, hi = (lo, guess) if error(guess) <= target else (guess, hi)
        bisect = not bisect and 2 * (hi - lo) > width
    return hi, True


def bench_etdrk4(eq: Equation1D, args: argparse.Namespace) -> dict:
    b, m = args.batch, args.scipy_trajectories
    gen = torch.Generator().manual_seed(0)
    length = torch.full((b,), eq.length, dtype=torch.float64)
    horizon = torch.full((b,), eq.horizon, dtype=torch.float64)
    x = torch.arange(eq.nx, dtype=torch.float64)[None] * length[:, None] / eq.nx
    u0 = eq.initial_condition(gen, x, length)
    coeffs = torch.zeros(b, 0, dtype=torch.float64)
    points = eq.grid_points()
    t_all = eq.horizon * np.arange(points) / (points - 1)
    stored = slice(points - eq.nt, points)

    def ours(substeps: int, batch: int) -> torch.Tensor:
        return solve_etdrk4(
            eq, u0[:batch], length[:batch], horizon[:batch], coeffs[:batch], eq.nt, substeps,
            points,
        )  # fmt: skip

    rhs = numpy_rhs(eq.name, eq.length, eq.nx)
    runs = [radau(rhs, u0[i].numpy(), t_all, args.tol) for i in range(m)]
    radau_frames = np.stack([r[0] for r in runs])[:, stored]  # the frames ours returns
    times = [r[1] for r in runs]

    solutions: dict[int, np.ndarray] = {}  # ours on the m compared trajectories

    def solution(s: int) -> np.ndarray:
        if s not in solutions:
            solutions[s] = ours(s, m).numpy()
        return solutions[s]

    # Reference: ETDRK4 with r steps per interval, accurate enough when its difference from
    # r/2 steps (≈ 15× its own error, 4th order) is at most a tenth of Radau's error.
    r = args.reference_substeps
    while True:
        reference = solution(r)
        ref_diff = max_error(solution(r // 2), reference)
        err_scipy = max_error(radau_frames, reference)
        ref_ok = ref_diff <= err_scipy / 10
        if ref_ok or 2 * r > args.max_reference_substeps:
            break
        r *= 2

    errors: dict[int, float] = {}

    def error(s: int) -> float:
        if s not in errors:
            errors[s] = max_error(solution(s), reference)
        return errors[s]

    # at the cap r/2 our error vs the reference is ref_diff: matched whenever ref_ok
    hi, matched = match_substeps(error, err_scipy, r // 2)
    ours(1, b)  # warm-up
    t_ours = median_time(lambda: ours(hi, b), args.repeats) / b
    search = ", ".join(f"{s}: {e:.2e}" for s, e in sorted(errors.items()))
    return {
        "solver": f"ETDRK4 {hi} steps per grid interval",
        "err_ours": error(hi),
        "err_scipy": err_scipy,
        "unmatched": None
        if matched and ref_ok
        else f"at the cap ({r // 2} steps per grid interval)"
        if not matched
        else f"the reference ({r} steps/interval) is not accurate enough to tell",
        "t_ours": t_ours,
        "t_scipy": statistics.median(times),
        "note": f"reference ETDRK4 {r} steps/interval: vs {r // 2} steps {ref_diff:.1e} "
        f"(its own error ~1/15 of that) = {ref_diff / max(err_scipy, 1e-300):.2g} of scipy's "
        "error, "
        + ("accurate enough (<= 0.1)" if ref_ok else "NOT accurate enough (> 0.1)")
        + f"; search (steps: error) {{{search}}}",
    }


def bench_burgers(eq: Equation1D, args: argparse.Namespace) -> dict:
    b, m = args.batch, args.scipy_trajectories
    gen = torch.Generator().manual_seed(0)
    length = torch.full((b,), eq.length, dtype=torch.float64)
    horizon = torch.full((b,), eq.horizon, dtype=torch.float64)
    nu = eq.sample_coeffs(gen, b)[:, 0]
    x = torch.arange(eq.nx, dtype=torch.float64)[None] * length[:, None] / eq.nx
    u0 = eq.initial_condition(gen, x, length)
    scale = eq.params["cole_hopf_scale"]
    t = eq.stored_times(horizon)

    def ours(batch: int) -> torch.Tensor:
        psi0 = inverse_cole_hopf_state(u0[:batch], scale)
        return burgers_cole_hopf(psi0, t[:batch], length[:batch], nu[:batch])

    exact = ours(m).numpy()
    psi0 = inverse_cole_hopf_state(u0[:m], scale)
    points = eq.grid_points()
    t_all = eq.horizon * np.arange(points) / (points - 1)
    sols, times = [], []
    for i in range(m):
        psi, sec = radau(
            numpy_rhs("heat", eq.length, eq.nx, float(nu[i])), psi0[i].numpy(), t_all, args.tol
        )
        psi = torch.from_numpy(psi[points - eq.nt :])
        k = 2 * np.pi * torch.fft.rfftfreq(eq.nx, d=eq.length / eq.nx, dtype=torch.float64)
        psi_x = torch.fft.irfft(1j * k * torch.fft.rfft(psi, dim=-1), n=eq.nx, dim=-1)
        sols.append((-2 * nu[i] * psi_x / psi).numpy())
        times.append(sec)
    ours(b)
    t_ours = median_time(lambda: ours(b), args.repeats) / b
    err_ours = max_error(ours(m).numpy(), exact)
    err_scipy = max_error(np.stack(sols), exact)
    return {
        "solver": "exact Cole-Hopf (heat equation in Fourier space)",
        "err_ours": err_ours,
        "err_scipy": err_scipy,
        "unmatched": None if err_ours <= err_scipy else "(the closed form)",
        "t_ours": t_ours,
        "t_scipy": statistics.median(times),
        "note": "Radau on the heat equation (LPSDA's route), then Cole-Hopf; errors vs the "
        "closed form, ours = the closed form itself (its float64 rounding)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--equation", default="all", choices=["all", "kdv", "ks", "burgers"])
    ap.add_argument("--batch", type=int, default=64, help="ours: trajectories per batch")
    ap.add_argument("--scipy-trajectories", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of our batch")
    ap.add_argument("--nx", type=int, default=256)
    ap.add_argument("--horizon", type=float, default=None, help="T (default: the equation's)")
    ap.add_argument("--time-window", default="lpsda", choices=["lpsda", "full"])
    ap.add_argument(
        "--reference-substeps", type=int, default=256, help="first reference step count"
    )
    ap.add_argument(
        "--max-reference-substeps", type=int, default=4096,
        help="the reference doubles up to this until accurate enough",
    )  # fmt: skip
    ap.add_argument("--tol", type=float, default=1e-6, help="Radau rtol = atol (LPSDA: 1e-9)")
    args = ap.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(threads))
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    print(
        f"# bench/pde_solver_speed.py, {datetime.date.today()}, {platform.machine()} "
        f"{platform.processor() or platform.platform()}, {os.cpu_count()} cores, load "
        f"{' '.join(f'{x:.1f}' for x in load)}; {threads} thread(s) per side; "
        f"torch {torch.__version__}, batch {args.batch}, Radau tol {args.tol:.0e}, "
        f"{args.scipy_trajectories} Radau trajectories, {args.repeats} timed batches"
    )
    names = ["kdv", "ks", "burgers"] if args.equation == "all" else [args.equation]
    for name in names:
        overrides = {"nx": args.nx, "jitter": 0.0, "time_window": args.time_window}
        if args.horizon is not None:
            overrides["horizon"] = args.horizon
        eq = EQUATIONS.get(name)(**overrides)
        res = (bench_burgers if name == "burgers" else bench_etdrk4)(eq, args)
        points = eq.grid_points()
        t0, t1 = (eq.horizon * j / (points - 1) for j in (points - eq.nt, points - 1))
        print(
            f"{name}: nx={eq.nx}, L={eq.length:.4g}, T={eq.horizon:.4g}, time window "
            f"{eq.time_window}: {eq.nt} of {points} grid points, t in [{t0:.2f}, {t1:.2f}]"
        )
        print(
            f"  ours  ({res['solver']}, batch {args.batch}): {1 / res['t_ours']:10.2f} "
            f"trajectories/s, max error {res['err_ours']:.2e}"
        )
        print(
            f"  scipy (Radau tol {args.tol:.0e}, one trajectory at a time): "
            f"{1 / res['t_scipy']:10.3f} trajectories/s, max error {res['err_scipy']:.2e}"
        )
        print(f"  {res['note']}")
        ratio = res["t_scipy"] / res["t_ours"]
        if res["unmatched"] is None:
            print(f"  speed-up ours/scipy at matched accuracy: {ratio:.1f}x")
        else:
            print(
                f"  NOT matched: ours {res['err_ours']:.2e} vs scipy {res['err_scipy']:.2e} "
                f"{res['unmatched']}; time ratio scipy/ours, NOT a speed-up at matched "
                f"accuracy: {ratio:.1f}x"
            )


if __name__ == "__main__":
    main()
