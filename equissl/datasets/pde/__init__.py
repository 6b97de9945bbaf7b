"""PDE trajectories: batched spectral solvers, Lie point symmetries, HDF5 datasets (docs/pde.md)."""

from equissl.datasets.pde.dataset import PDEActionSpace, PDEWindowDataset
from equissl.datasets.pde.equations import EQUATIONS
from equissl.datasets.pde.generate import generate_pde
from equissl.datasets.pde.storage import validate_pde_path

__all__ = ["EQUATIONS", "PDEActionSpace", "PDEWindowDataset", "generate_pde", "validate_pde_path"]
