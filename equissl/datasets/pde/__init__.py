"""PDE trajectories: batched spectral solvers, Lie point symmetries, HDF5 datasets (docs/pde.md).

The names below are imported on first use (PEP 562), so that ``equissl-validate`` on PDE
files, which needs only :mod:`.storage` (h5py and numpy), never imports torch."""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule that defines it
_WHERE = {
    "EQUATIONS": "generate",  # registered in equations and ns2d, which generate imports
    "PDEActionSpace": "dataset",
    "PDEWindowDataset": "dataset",
    "generate_pde": "generate",
    "validate_pde_path": "storage",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
