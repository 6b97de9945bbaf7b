"""HDF5 layout of PDE trajectories (docs/pde.md, "File format") and its validation.

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
``num_chunks``, ``solver``, ``complete`` (True once every trajectory is written), and for
1-D equations ``time_window``: ``lpsda`` (the last ``T`` points of LPSDA's solver grid on
``[0, T_end]``, generator version 2 on) or ``full`` (frames on ``[0, T_end]``; files
without the attribute, generator version 1 and Navier–Stokes, are read as ``full``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from equissl.datasets.iebench_format import DatasetFormatError

#: the equations with Lie point symmetries (the keys of ``symmetries.GENERATORS``, which
#: tests/datasets/pde/test_storage_names.py keeps equal), written out so that validating a
#: file never imports torch
KNOWN_EQUATIONS = frozenset({"kdv", "ks", "burgers", "ns"})

REQUIRED = ("u", "t", "x", "coeffs", "index")
REQUIRED_ATTRS = (
    "equation",
    "equation_text",
    "parameters",
    "generator_version",
    "coeff_names",
    "complete",
)


def chunk_file(out: Path, equation: str, chunk: int, num_chunks: int) -> Path:
    return out / f"{equation}_chunk{chunk:04d}of{num_chunks:04d}.h5"


def is_complete(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False))
    except (OSError, KeyError):
        return False


# Rows of ``u`` read at a time by the finiteness check (bounds its memory).
_CHECK_BYTES = 64 * 2**20


def _first_nonfinite(data: h5py.Dataset) -> tuple[int, list[int]]:
    """``(count, first rows)`` of the rows ``[N, ...]`` of ``data`` holding NaN or ±inf."""
    if data.ndim == 0:
        return (0, []) if np.isfinite(data[()]) else (1, [0])
    n = data.shape[0]
    row_bytes = max(1, int(np.prod(data.shape[1:])) * data.dtype.itemsize)
    step = max(1, _CHECK_BYTES // row_bytes)
    bad: list[int] = []
    count = 0
    for lo in range(0, n, step):
        block = data[lo : lo + step].reshape(min(step, n - lo), -1)
        rows = np.flatnonzero(~np.isfinite(block).all(axis=1))
        count += len(rows)
        bad += (rows + lo).tolist()[: max(0, 10 - len(bad))]
    return count, bad


def nonfinite_problem(path: Path, name: str, data: Any, ids: np.ndarray | None) -> str | None:
    """The message naming the trajectories of ``data`` (an HDF5 dataset or an array
    ``[N, ...]`` of ``path``'s entry ``name``) that hold NaN or ±inf; ``None`` if finite."""
    count, rows = _first_nonfinite(data)
    if not count:
        return None
    first = f" (trajectory id {int(ids[rows[0]])})" if ids is not None else ""
    return (
        f"{path}: {name} has non-finite values in {count} trajectory(ies) "
        f"{rows}{' …' if count > len(rows) else ''}; first at row {rows[0]}{first}"
    )


def _coeff_names(f: h5py.File, path: Path) -> tuple[list[str] | None, list[str]]:
    try:
        names = json.loads(f.attrs["coeff_names"])
    except (TypeError, ValueError) as err:
        return None, [f"{path}: attribute coeff_names is not a JSON list ({err})"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None, [f"{path}: attribute coeff_names must be a JSON list of names, got {names!r}"]
    return names, []


def validate_pde_file(path: Path, values: bool = True) -> list[str]:
    """Problems of one HDF5 trajectory file (each message names the file and the key).

    Checks: readable HDF5; datasets ``u t x coeffs index`` and the attributes of the module
    docstring present; ``complete`` true; ``u [N, T, X]`` (or ``[N, T, C, X, Y]`` with
    ``y [N, Y]`` and ``channels``) against ``t [N, T]``, ``x [N, X]``, ``coeffs [N, K]`` with
    K = ``len(coeff_names)``, ``index [N]`` integer and unique; a known equation; every
    float value finite (the first offending trajectories named; ``values=False`` leaves this
    full read to a caller that loads the arrays anyway and checks them with
    :func:`nonfinite_problem`); ``t`` increasing.
    """
    path = Path(path)
    if path.is_dir():
        return [f"{path}: is a directory, not an HDF5 file"]
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        return [f"{path}: not a readable HDF5 file ({err})"]
    with f:
        two_d = "u" in f and isinstance(f["u"], h5py.Dataset) and f["u"].ndim == 5
        need = REQUIRED + (("y",) if two_d else ())
        missing = [k for k in need if k not in f]
        not_data = [k for k in need if k in f and not isinstance(f[k], h5py.Dataset)]
        missing_attrs = [
            a for a in REQUIRED_ATTRS + (("channels",) if two_d else ()) if a not in f.attrs
        ]
        if missing or missing_attrs or not_data:
            what = [f"missing datasets {missing}"] if missing else []
            what += [f"groups where datasets belong {not_data}"] if not_data else []
            what += [f"missing attributes {missing_attrs}"] if missing_attrs else []
            return [f"{path}: {' / '.join(what)}"]
        problems: list[str] = []
        if not bool(f.attrs["complete"]):
            problems.append(
                f"{path}: generation did not finish (attribute complete=False: an interrupted "
                "chunk); delete it and re-run equissl-generate with the same chunk=k "
                "num_chunks=n"
            )
        equation = str(f.attrs["equation"])
        if equation not in KNOWN_EQUATIONS:
            problems.append(
                f"{path}: attribute equation={equation!r} is not one of {sorted(KNOWN_EQUATIONS)}"
            )
        u, t, x, coeffs, index = (f[k] for k in REQUIRED)
        if u.ndim not in (3, 5) or u.dtype.kind != "f":
            return problems + [
                f"{path}: u must be float [N, T, X] or [N, T, C, X, Y], got {u.dtype} {u.shape}"
            ]
        n, frames = u.shape[:2]
        expected = {"t": (n, frames), "x": (n, u.shape[-2] if two_d else u.shape[2]), "index": (n,)}
        if two_d:
            expected["y"] = (n, u.shape[-1])
            channels = json.loads(f.attrs["channels"])
            if len(channels) != u.shape[2]:
                problems.append(
                    f"{path}: attribute channels {channels} names {len(channels)} "
                    f"channels but u has {u.shape[2]}"
                )
        for key, shape in expected.items():
            if f[key].shape != shape:
                problems.append(
                    f"{path}: {key} has shape {f[key].shape}, expected {shape} (u is {u.shape})"
                )
        names, bad_names = _coeff_names(f, path)
        problems += bad_names
        if names is not None and coeffs.shape != (n, len(names)):
            problems.append(
                f"{path}: coeffs has shape {coeffs.shape}, expected "
                f"{(n, len(names))} (N trajectories x coeff_names {names})"
            )
        if index.dtype.kind not in "iu":
            problems.append(f"{path}: index must be integer trajectory ids, got {index.dtype}")
        elif index.shape == (n,) and len(np.unique(index[...])) != n:
            problems.append(f"{path}: index lists some trajectory ids more than once")
        ids = index[...] if index.shape == (n,) else None
        for name in need if values else ():
            if f[name].dtype.kind == "f":
                problem = nonfinite_problem(path, name, f[name], ids)
                problems += [problem] if problem else []
        if t.shape == (n, frames) and frames > 1 and not np.all(np.diff(t[...], axis=1) > 0):
            problems.append(f"{path}: t is not strictly increasing")
    return problems


def file_time_window(path: str | Path) -> str:
    """The ``time_window`` attribute of a trajectory file (``full`` where absent)."""
    with h5py.File(path, "r") as f:
        return str(f.attrs.get("time_window", "full"))


def _summary(path: Path) -> dict[str, Any]:
    """Equation, frame/grid shape, time window, coefficient names and ids of a valid file."""
    with h5py.File(path, "r") as f:
        return {
            "equation": str(f.attrs["equation"]),
            "time_window": str(f.attrs.get("time_window", "full")),
            "shape": tuple(f["u"].shape[1:]),
            "coeff_names": json.loads(f.attrs["coeff_names"]),
            "index": f["index"][...],
        }


def check_pde_files(files: list[Path], values: bool = True) -> list[str]:
    """Problems of a set of trajectory files read as one dataset.

    Each file on its own (:func:`validate_pde_file`), then across files: one equation per
    folder, the same frames, grid and time window, the same coefficient names, no
    trajectory id twice.
    """
    problems = [p for path in files for p in validate_pde_file(path, values)]
    valid = [p for p in files if not any(m.startswith(f"{p}:") for m in problems)]
    if len(valid) < 2:
        return problems
    info = {p: _summary(p) for p in valid}
    for key, what in (
        ("equation", "equations"),
        ("shape", "frame/grid shapes u[1:]"),
        ("time_window", "time windows"),
        ("coeff_names", "coefficient names"),
    ):
        groups: dict[str, list[str]] = {}
        for p, i in info.items():
            groups.setdefault(str(i[key]), []).append(p.name)
        if len(groups) > 1:
            listing = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(groups.items()))
            problems.append(
                f"{valid[0].parent}: files mix {what} ({listing}); keep one dataset per folder"
            )
    owners: dict[int, str] = {}
    for p, i in info.items():
        twice = sorted({int(j) for j in i["index"] if int(j) in owners})
        if twice:
            others = sorted({owners[j] for j in twice})
            problems.append(
                f"{p}: trajectory ids {twice[:10]} also in {', '.join(others)} "
                "(chunks of two different runs?)"
            )
        owners.update({int(j): p.name for j in i["index"]})
    return problems


def pde_files(path: str | Path) -> tuple[list[Path], list[str]]:
    """``(files, problems)``: one ``.h5`` file, or every ``*.h5`` entry of a folder."""
    path = Path(path)
    if not path.exists():
        return [], [f"{path}: not found"]
    if path.is_dir() and path.suffix not in (".h5", ".hdf5"):
        files = sorted(path.glob("*.h5"))
        return files, [] if files else [f"{path}: no .h5 trajectory files"]
    if path.is_dir():  # a folder named like a file: read its files only if it holds some
        files = sorted(path.glob("*.h5"))
        return files, [] if files else [f"{path}: is a directory, not an HDF5 file"]
    return [path], []


def validate_pde_path(path: str | Path) -> list[str]:
    """Validate one ``.h5`` file or every ``.h5`` file of a directory (every problem)."""
    files, problems = pde_files(path)
    return problems + check_pde_files(files)


def require_valid_pde(path: str | Path, values: bool = True) -> list[Path]:
    """The trajectory files of ``path``, after :func:`validate_pde_path` found no problem
    (``values=False``: all but the finiteness scan, see :func:`validate_pde_file`).

    Raises:
        DatasetFormatError: every problem found, each naming its file and key.
    """
    files, problems = pde_files(path)
    problems += check_pde_files(files, values)
    raise_problems(path, problems)
    return files


def raise_problems(path: str | Path, problems: list[str]) -> None:
    """Raise one :class:`DatasetFormatError` listing every problem of the PDE data ``path``."""
    if problems:
        raise DatasetFormatError(
            f"PDE data {path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems)
        )
