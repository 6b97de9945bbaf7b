"""HDF5 layout of PDE trajectories (DESIGN §2.4) and its validation.

One file per generation chunk, readable without our code:

=========== =============================== ==============================================
name        shape                           meaning
=========== =============================== ==============================================
``u``       ``[N, T, X]`` float64           the field (2-D: ``[N, T, C, X, Y]``, channel
                                            names in attribute ``channels``)
``t``       ``[N, T]`` float64              times of the stored frames (per trajectory)
``x``       ``[N, X]`` float64              grid points (periodic, ``x_j = j L / X``)
``coeffs``  ``[N, K]`` float64              invariant coefficients, names in attribute
                                            ``coeff_names`` (JSON list; empty for KdV/KS)
``index``   ``[N]`` int64                   global trajectory ids (stable across chunking)
=========== =============================== ==============================================

File attributes: ``equation`` (registry name), ``equation_text`` (the PDE), ``parameters``
(JSON of every generation setting), ``generator_version``, ``seed``, ``chunk``,
``num_chunks``, ``solver``, ``complete`` (True once every trajectory is written).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

REQUIRED = ("u", "t", "x", "coeffs", "index")
REQUIRED_ATTRS = ("equation", "equation_text", "parameters", "generator_version",
                  "coeff_names", "complete")


def chunk_file(out: Path, equation: str, chunk: int, num_chunks: int) -> Path:
    return out / f"{equation}_chunk{chunk:04d}of{num_chunks:04d}.h5"


def is_complete(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False))
    except (OSError, KeyError):
        return False


def validate_pde_file(path: Path) -> list[str]:
    """Problems of one HDF5 file (each message names the file)."""
    problems: list[str] = []
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        return [f"{path}: not a readable HDF5 file ({err})"]
    with f:
        missing = [k for k in REQUIRED if k not in f]
        missing_attrs = [a for a in REQUIRED_ATTRS if a not in f.attrs]
        if missing or missing_attrs:
            return [f"{path}: missing datasets {missing} / attributes {missing_attrs}"]
        if not bool(f.attrs["complete"]):
            problems.append(f"{path}: generation did not finish (attribute complete=False)")
        u, t, x, coeffs = (f[k] for k in ("u", "t", "x", "coeffs"))
        n = u.shape[0]
        frames = u.shape[1]
        if t.shape != (n, frames):
            problems.append(f"{path}: t has shape {t.shape}, expected {(n, frames)}")
        if u.ndim == 3 and x.shape != (n, u.shape[2]):
            problems.append(f"{path}: x has shape {x.shape}, expected {(n, u.shape[2])}")
        names = json.loads(f.attrs["coeff_names"])
        if coeffs.shape != (n, len(names)):
            problems.append(f"{path}: coeffs {coeffs.shape} but coeff_names {names}")
        if u.ndim == 5 and "channels" not in f.attrs:
            problems.append(f"{path}: 2-D field without a 'channels' attribute")
        for name in REQUIRED:
            data = f[name][...]
            if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
                bad = np.unique(np.nonzero(~np.isfinite(data.reshape(n, -1)))[0])
                problems.append(f"{path}: {name} has non-finite values in trajectories "
                                f"{bad[:10].tolist()}{' …' if len(bad) > 10 else ''}")
        tt = t[...]
        if tt.shape[1] > 1 and not np.all(np.diff(tt, axis=1) > 0):
            problems.append(f"{path}: t is not strictly increasing")
    return problems


def validate_pde_path(path: str | Path) -> list[str]:
    """Validate one ``.h5`` file or every ``.h5`` file of a directory."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.h5"))
        if not files:
            return [f"{path}: no .h5 files"]
        return [p for f in files for p in validate_pde_file(f)]
    if not path.exists():
        return [f"{path}: not found"]
    return validate_pde_file(path)
