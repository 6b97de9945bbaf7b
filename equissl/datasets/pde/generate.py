"""``equissl-generate data=pde_<equation> out=PATH num_trajectories=N``: HDF5 trajectories.

Time window (``params.time_window``): ``lpsda`` (default) stores the last ``nt = 140``
points of LPSDA's solver grid ``linspace(0, T, nt_grid)`` (250 / 500 / 180 points for KdV /
KS / Burgers), ``full`` stores ``nt`` points on ``[0, T]``; the choice is the file attribute
``time_window`` (absent in generator-version-1 files, which are ``full``).

Deterministic: trajectory ``i`` draws its domain, coefficients and initial condition from a
generator seeded by ``(seed, i)``, so chunk k of n (trajectories ``[kN/n, (k+1)N/n)``)
writes exactly what an unchunked run would. Each chunk file is written under a temporary
name and renamed once complete; a complete file is skipped (resume).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from equissl.atomic import owner_tag, remove_stale_tmp
from equissl.datasets.pde.equations import (
    EQUATIONS,
    Burgers,
    Equation1D,
    burgers_cole_hopf,
    inverse_cole_hopf_state,
    solve_etdrk4,
)
from equissl.datasets.pde.ns2d import CHANNELS, NavierStokes2D
from equissl.datasets.pde.storage import chunk_file, is_complete
from equissl.output_folder import claim_output

log = logging.getLogger(__name__)

GENERATOR_VERSION = "2"  # 2: LPSDA time window by default (1: full)
EQUATION_TEXT = {
    "kdv": "u_t + u u_x + u_xxx = 0",
    "ks": "u_t + u u_x + u_xx + u_xxxx = 0",
    "burgers": "u_t + u u_x - nu u_xx = 0",
    "ns": "w_t + v.grad(w) = nu lap(w) + b ds/dx, s_t + v.grad(s) = nu lap(s), "
    "w = curl v, div v = 0 (periodic)",
}


def _ns_batch(
    eq: NavierStokes2D, seed: int, ids: range, device: torch.device
) -> dict[str, torch.Tensor]:
    s0, b = [], []
    for i in ids:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        b.append(eq.sample_coeffs(gen, 1))
        s0.append(eq.initial_smoke(gen, 1))
    coeffs = torch.cat(b)
    u = eq.solve(torch.cat(s0).to(device), coeffs[:, 0].to(device)).cpu()
    t = torch.arange(eq.nt, dtype=torch.float64) * eq.frame_dt
    x = eq.grid()
    n = len(ids)
    return {
        "u": u,
        "t": t.expand(n, -1),
        "x": x.expand(n, -1),
        "y": x.expand(n, -1),
        "coeffs": coeffs,
    }


def _trajectory_inputs(eq: Equation1D, seed: int, ids: range) -> dict[str, torch.Tensor]:
    lengths, horizons, coeffs, u0s, xs = [], [], [], [], []
    for i in ids:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        length, horizon = eq.sample_domain(gen, 1)
        c = eq.sample_coeffs(gen, 1)
        x = torch.arange(eq.nx, dtype=torch.float64)[None] * length[:, None] / eq.nx
        u0s.append(eq.initial_condition(gen, x, length))
        lengths.append(length)
        horizons.append(horizon)
        coeffs.append(c)
        xs.append(x)
    cat = torch.cat
    return {
        "length": cat(lengths),
        "horizon": cat(horizons),
        "coeffs": cat(coeffs),
        "u0": cat(u0s),
        "x": cat(xs),
    }


def solve_batch(
    eq: Equation1D, inputs: dict[str, torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u [B, nt, nx], t [B, nt])`` for a batch of trajectory inputs."""
    d = {k: v.to(device) for k, v in inputs.items()}
    t = eq.stored_times(d["horizon"])
    if isinstance(eq, Burgers):  # exact, as LPSDA: heat equation + Cole–Hopf
        psi0 = inverse_cole_hopf_state(d["u0"], eq.params["cole_hopf_scale"])
        u = burgers_cole_hopf(psi0, t, d["length"], d["coeffs"][:, 0])
    else:
        u = solve_etdrk4(
            eq, d["u0"], d["length"], d["horizon"], d["coeffs"], eq.nt, eq.substeps,
            eq.grid_points(),
        )  # fmt: skip
    return u.cpu(), t.cpu()


def _solver_text(eq: Equation1D | NavierStokes2D) -> str:
    if isinstance(eq, Burgers):
        return "Cole-Hopf, exact heat solution"
    if isinstance(eq, NavierStokes2D):
        return f"ETDRK4 pseudo-spectral, {eq.substeps} steps per stored frame, 2/3 dealiasing"
    return (
        f"ETDRK4 pseudo-spectral, {eq.substeps} steps per interval of "
        f"linspace(0, T, {eq.grid_points()}), 2/3 dealiasing"
    )


def generate_pde(
    equation: str,
    out: str | Path,
    *,
    num_trajectories: int,
    seed: int = 0,
    chunk: int = 0,
    num_chunks: int = 1,
    device: str | None = None,
    progress: bool = True,
    batch_size: int = 64,
    **overrides: object,
) -> dict:
    """Generate chunk ``chunk`` of ``num_chunks`` of a PDE dataset (see module docstring).

    ``overrides`` set equation fields (``nx``, ``nt``, ``nt_grid``, ``time_window``,
    ``substeps``, ``length``, ``horizon``, ``jitter``, ``num_sines``, ``l_range``) or entries
    of ``params`` (e.g. ``nu_range``).
    """
    if equation not in EQUATIONS:
        raise ValueError(f"unknown equation {equation!r}; choose from {EQUATIONS.names()}")
    if not 0 <= chunk < num_chunks:
        raise ValueError(f"chunk={chunk} must lie in [0, num_chunks={num_chunks})")
    cls = EQUATIONS.get(equation)
    fields = {k: v for k, v in overrides.items() if k in cls.__dataclass_fields__}
    eq = cls(**fields)
    eq.params = {**eq.params, **{k: v for k, v in overrides.items() if k not in fields}}
    out = Path(out)
    settings = {k: getattr(eq, k) for k in eq.__dataclass_fields__ if k != "params"}
    settings.update(eq.params)
    record = {
        "equation": equation,
        "generator_version": GENERATOR_VERSION,
        "num_trajectories": num_trajectories,
        "num_chunks": num_chunks,
        "seed": seed,
        "parameters": json.loads(json.dumps(settings)),
    }
    claim_output(
        out,
        out / RECORD_FILE,
        record,
        f"a {equation} dataset",
        adopt=lambda folder: _earlier_chunks(folder, record),
    )
    path = chunk_file(out, equation, chunk, num_chunks)
    lo = chunk * num_trajectories // num_chunks
    hi = (chunk + 1) * num_trajectories // num_chunks
    if is_complete(path):
        return {"file": str(path), "trajectories": hi - lo, "skipped": True, "seconds": 0.0}
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for stale in remove_stale_tmp(out, only_dead_writers=True):
        log.warning("removed %s, left by a killed generator", stale)
    tmp = path.with_name(f".{path.name}.{owner_tag()}.tmp")
    start = time.perf_counter()
    two_d = isinstance(eq, NavierStokes2D)
    with h5py.File(tmp, "w") as f:
        n = hi - lo
        if two_d:
            f.create_dataset("u", (n, eq.nt, len(CHANNELS), eq.nx, eq.nx), dtype="f8")
            f.create_dataset("y", (n, eq.nx), dtype="f8")
            f.attrs["channels"] = json.dumps(list(CHANNELS))
        else:
            f.create_dataset("u", (n, eq.nt, eq.nx), dtype="f8")
        f.create_dataset("t", (n, eq.nt), dtype="f8")
        f.create_dataset("x", (n, eq.nx), dtype="f8")
        f.create_dataset("coeffs", (n, len(eq.coeff_names)), dtype="f8")
        f.create_dataset("index", data=np.arange(lo, hi, dtype=np.int64))
        if not two_d:
            f.attrs["time_window"] = eq.time_window
        f.attrs.update(
            {
                "equation": equation,
                "equation_text": EQUATION_TEXT[equation],
                "parameters": json.dumps(settings),
                "generator_version": GENERATOR_VERSION,
                "coeff_names": json.dumps(list(eq.coeff_names)),
                "seed": seed,
                "chunk": chunk,
                "num_chunks": num_chunks,
                "complete": False,
                "solver": _solver_text(eq),
            }
        )
        for b0 in tqdm(
            range(lo, hi, batch_size),
            desc=f"{equation} chunk {chunk}/{num_chunks}",
            unit="batch",
            disable=not progress,
        ):
            ids = range(b0, min(hi, b0 + batch_size))
            if two_d:
                inputs = _ns_batch(eq, seed, ids, dev)
                u, t = inputs["u"], inputs["t"]
                f["y"][b0 - lo : b0 - lo + len(ids)] = inputs["y"].numpy()
            else:
                inputs = _trajectory_inputs(eq, seed, ids)
                u, t = solve_batch(eq, inputs, dev)
            if not torch.isfinite(u).all():
                bad = [ids[i] for i in torch.nonzero(~torch.isfinite(u).flatten(1).all(1))[:, 0]]
                raise FloatingPointError(f"{equation}: non-finite solution for trajectories {bad}")
            s = slice(b0 - lo, b0 - lo + len(ids))
            f["u"][s] = u.numpy()
            f["t"][s] = t.numpy()
            f["x"][s] = inputs["x"].numpy()
            f["coeffs"][s] = inputs["coeffs"].numpy()
        f.attrs["complete"] = True
    os.replace(tmp, path)
    return {
        "file": str(path),
        "trajectories": hi - lo,
        "skipped": False,
        "seconds": round(time.perf_counter() - start, 1),
    }


#: settings record of a generated PDE folder (the ``.h5`` files carry them too)
RECORD_FILE = "generate_config.json"


def _earlier_chunks(folder: Path, record: dict) -> bool:
    """Whether ``folder`` holds only chunk files of this very generation, written before the
    settings record existed (same equation, seed, chunking and parameters)."""
    for entry in folder.iterdir():
        if entry.suffix != ".h5" or not entry.name.startswith(f"{record['equation']}_chunk"):
            return False
        try:
            with h5py.File(entry, "r") as f:
                same = (
                    f.attrs.get("equation") == record["equation"]
                    and int(f.attrs.get("seed", -1)) == record["seed"]
                    and int(f.attrs.get("num_chunks", -1)) == record["num_chunks"]
                    and json.loads(f.attrs.get("parameters", "null")) == record["parameters"]
                )
        except (OSError, ValueError, TypeError):
            return False
        if not same:
            return False
    return True
