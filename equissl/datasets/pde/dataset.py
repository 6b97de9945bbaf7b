"""Views of PDE trajectories on the batch contract: random time windows under sampled
Lie point symmetries (docs/pde.md).

Each item is one trajectory seen in V views. A view is a window of ``window`` consecutive
stored frames starting at a random frame, transformed by a group element
``g = exp(Σ εᵢ Aᵢ)`` with ``εᵢ ~ U(−sᵢ, sᵢ)``:

* ``views [V, 3, window, X]`` float32, channels ``(t, x, u)`` — coordinates stacked with
  the field as in the public code of Mialon et al.;
* ``latents [V, P + 1]``: the strengths ``ε`` of every generator, then the window's start
  time (absolute coordinates are kept, so the window position is visible in the t channel
  and is not part of the group element);
* ``coeffs [K]`` (ν for Burgers), ``label = -1``, ``index`` = global trajectory id.

``mode="coords"`` (default, the paper's) moves only coordinates and values — exact, nothing
is resampled. ``mode="grid"`` (LPSDA-style) then resamples every row by an exact Fourier
shift onto the unshifted (possibly scaled) grid, so the x channel is the same in every row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from equissl.datasets.contract import ActionSpace, Item, make_item, register_action_space
from equissl.datasets.keys import SampleKey, split_key
from equissl.datasets.pde.residual import align_rows
from equissl.datasets.pde.storage import nonfinite_problem, raise_problems, require_valid_pde
from equissl.datasets.pde.symmetries import SymmetryGroup, apply_to_points, apply_to_points_2d

# Default maximal strengths per generator (our choice, small relative to each axis: a tenth
# of the domain for shifts, ~0.3 velocity units for boosts, ±0.1 in log-scale).
DEFAULT_STRENGTHS = {
    "kdv": {"t_shift": 1.0, "x_shift": 12.8, "boost": 0.3, "scale": 0.1},
    "ks": {"t_shift": 1.0, "x_shift": 6.4, "boost": 0.3},
    "burgers": {"t_shift": 0.2, "x_shift": 0.6, "boost": 0.1, "scale": 0.1},
    "ns": {
        "t_shift": 1.0,
        "x_shift": 3.2,
        "y_shift": 3.2,
        "boost_x": 0.1,
        "boost_y": 0.1,
        "quad_boost_x": 0.01,
        "quad_boost_y": 0.01,
        "scale": 0.1,
    },
}


@register_action_space("pde")
class PDEActionSpace(ActionSpace):
    """Relative group elements between views, as strengths of ``g_a⁻¹ g_b`` (exact; the
    convention of 3DIEBench's ``R_a⁻¹ R_b``).

    Targets: ``lie`` (the default action), every generator's strength of the relative
    element, ``[..., group.dim]``; and one target per generator (``x_shift``, ``boost``, …,
    ``[..., 1]``), that generator's exponential coordinate of the same element — a method
    conditioned on a subgroup sets ``method.action=[x_shift]`` (or ``[x_shift, boost]``).
    ``composition`` is how the views' elements were built from their strengths (the
    dataset's), so the relative element is that of the views actually seen.

    Kinds (:attr:`target_kinds`): ``lie`` a ``vector``, each generator's target a ``scalar``.
    """

    default_action = ("lie",)

    def __init__(self, equation: str, composition: str = "expm", generators: str = "exact") -> None:
        self.equation = equation
        self.composition = composition
        self.generators = generators
        self.group = SymmetryGroup.for_equation(equation, generators=generators)
        self.latent_dim = self.group.dim + 1
        self.targets = {"lie": self.group.dim, **{n: 1 for n in self.group.names}}
        self.target_kinds = {"lie": "vector", **{n: "scalar" for n in self.group.names}}

    def params(self) -> dict[str, Any]:
        # non-default settings only, so specs of earlier checkpoints still match
        extra = {} if self.composition == "expm" else {"composition": self.composition}
        if self.generators != "exact":
            extra["generators"] = self.generators
        return {"equation": self.equation, **extra}

    def target(self, name: str, latents_a: Tensor, latents_b: Tensor) -> Tensor:
        if name not in self.targets:
            raise self.unknown_target(name)
        p = self.group.dim
        rel = self.group.relative(
            latents_a[..., :p].double(), latents_b[..., :p].double(), self.composition
        )
        if name != "lie":
            rel = rel[..., self.group.names.index(name), None]
        return rel.float()


SPLITS = ("train", "labelled", "val")


def split_mask(index: np.ndarray, split: str, val_every: int, labelled: bool) -> np.ndarray:
    """Which trajectories (``index [N]``, their generator ids) belong to ``split``.

    ``val`` (the test split): ``id % val_every == 0``. ``labelled``, when ``labelled`` is
    set: ``id % val_every == 1``, held out of pretraining for the heads of the invariant
    coefficient probe and its supervised baseline, as the reference trains them on its
    ``valid`` split that pretraining never saw. ``train`` (pretraining): the rest. At the
    default ``val_every=6`` that is 4 : 1 : 1, the released Navier-Stokes split (128 / 32 /
    32 trajectories per seed); the 1-D equations use the same rule (the paper releases no
    1-D split). Without ``labelled`` it is ``val_every − 1 : 1`` train : val.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if val_every < 2 or (labelled and val_every < 3):
        raise ValueError(
            f"val_every={val_every} leaves no pretraining trajectories; use at least "
            f"{3 if labelled else 2}"
        )
    rest = index % val_every
    if split == "val":
        return rest == 0
    if split == "labelled":
        if not labelled:
            raise ValueError("there is no labelled split: data.labelled_split is false")
        return rest == 1
    return (rest != 0) & ~((rest == 1) & labelled)


class PDEWindowDataset(Dataset):
    """Trajectories of ``<root>/*.h5`` (or one file) seen through symmetry-transformed windows.

    Args:
        root: folder of chunk files written by :func:`generate_pde`, or one file.
        split: ``train`` (pretraining), ``labelled`` or ``val`` (see :func:`split_mask`).
        num_views: windows per item.
        window: frames per window (16 in the paper's Navier–Stokes setting).
        strengths: maximal strength of each generator (missing ones: defaults; 0 disables).
        mode: ``coords`` or ``grid`` (see module docstring).
        composition: ``expm`` (exact) or ``strang`` (the public code's Lie–Trotter).
        val_every, labelled: the split rule of :func:`split_mask`.
        generators: ``exact`` or ``released`` (the public code's Navier–Stokes quadratic
            boosts; :data:`~equissl.datasets.pde.symmetries.GENERATOR_SETS`).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_views: int = 2,
        window: int = 16,
        strengths: dict[str, float] | None = None,
        mode: str = "coords",
        composition: str = "expm",
        val_every: int = 6,
        labelled: bool = True,
        generators: str = "exact",
    ) -> None:
        # Structure checked up front; values are checked below on the arrays as they are
        # loaded, so every file is read once (DatasetFormatError naming file and key).
        files = require_valid_pde(root, values=False)
        us, ts, xs, ys, cs, ids = [], [], [], [], [], []
        equations = set()
        bad: list[str] = []
        for path in files:
            try:
                with h5py.File(path, "r") as f:
                    equations.add(str(f.attrs["equation"]))
                    self.coeff_names = json.loads(f.attrs["coeff_names"])
                    arrays = {k: f[k][...] for k in ("u", "t", "x", "y", "coeffs") if k in f}
                    ids.append(f["index"][...])
            except (OSError, KeyError) as err:
                raise RuntimeError(f"cannot read trajectories from {path}: {err}") from err
            bad += [m for k, a in arrays.items() if (m := nonfinite_problem(path, k, a, ids[-1]))]
            us.append(arrays["u"].astype(np.float32))
            ts.append(arrays["t"])
            xs.append(arrays["x"])
            if "y" in arrays:
                ys.append(arrays["y"])
            cs.append(arrays["coeffs"].astype(np.float32))
        raise_problems(root, bad)
        if len(equations) != 1:
            raise ValueError(f"{root} mixes equations {sorted(equations)}")
        self.equation = equations.pop()
        index = np.concatenate(ids)
        keep = split_mask(index, split, val_every, labelled)
        self.u = torch.from_numpy(np.concatenate(us)[keep])
        self.t = torch.from_numpy(np.concatenate(ts)[keep])
        self.x = torch.from_numpy(np.concatenate(xs)[keep])
        self.two_d = self.u.ndim == 5
        self.y = torch.from_numpy(np.concatenate(ys)[keep]) if self.two_d else None
        self.coeffs = torch.from_numpy(np.concatenate(cs)[keep])
        self.index = torch.from_numpy(index[keep])
        if len(self.index) == 0:
            raise ValueError(f"split {split!r} of {root} is empty")
        if not 1 <= window <= self.u.shape[1]:
            raise ValueError(f"window={window} but trajectories have {self.u.shape[1]} frames")
        self.split_name = split
        self.num_views = num_views
        self.window = window
        self.mode = mode
        self.composition = composition
        self.generators = generators
        if mode not in ("coords", "grid"):
            raise ValueError(f"mode must be coords or grid, not {mode!r}")
        if mode == "grid" and self.two_d:
            raise ValueError("grid mode is implemented for 1-D equations only; use mode=coords")
        self.group = SymmetryGroup.for_equation(self.equation, generators=generators)
        limits = {**DEFAULT_STRENGTHS[self.equation], **(strengths or {})}
        unknown = set(limits) - set(self.group.names)
        if unknown:
            raise ValueError(f"{self.equation} has no symmetries {sorted(unknown)}")
        self.max_strength = torch.tensor([limits[n] for n in self.group.names], dtype=torch.float64)
        self.action_space = PDEActionSpace(self.equation, composition, generators)
        self.labels = np.full(len(self.index), -1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def view(self, i: int, start: int, eps: Tensor) -> Tensor:
        """One transformed window: ``[3, window, X]`` (t, x, u) in 1-D, ``[5, window, X, Y]``
        (t, x, y, v_x, v_y) for Navier–Stokes (the paper's 5 channels; s is not shown)."""
        s = slice(start, start + self.window)
        g = self.group.element(eps, self.composition)
        if self.two_d:
            t, x, y, fields = apply_to_points_2d(
                g,
                self.t[i, s, None, None],
                self.x[i][None, :, None],
                self.y[i][None, None, :],
                self.u[i, s],
            )
            return torch.stack((t, x, y, fields[:, 1], fields[:, 2])).float()
        t, x, u = apply_to_points(g, self.t[i, s, None], self.x[i][None, :], self.u[i, s])
        if self.mode == "grid":  # back onto the unshifted (scaled) grid
            scale = (x[0, 1] - x[0, 0]) / (self.x[i, 1] - self.x[i, 0]).double()
            grid, u = align_rows(x, u, start=scale * self.x[i, 0].double())
            x = grid.expand_as(u)
        return torch.stack((t.expand_as(u), x, u)).float()

    def __getitem__(self, key: SampleKey) -> Item:
        # (index, sample_seed) keys of the training sampler fix the draws; int: global RNG
        i, gen = split_key(key)
        frames = self.u.shape[1]
        starts = torch.randint(0, frames - self.window + 1, (self.num_views,), generator=gen)
        eps = 2 * torch.rand(self.num_views, self.group.dim, generator=gen, dtype=torch.float64) - 1
        eps = eps * self.max_strength
        views = torch.stack([self.view(i, int(s), e) for s, e in zip(starts, eps, strict=True)])
        latents = torch.cat([eps, self.t[i, starts, None]], dim=1).float()
        return make_item(views, latents, label=-1, coeffs=self.coeffs[i], index=int(self.index[i]))
