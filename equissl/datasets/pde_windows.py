"""PDE trajectories as a registered dataset (``data=pde_<equation>``): symmetry-transformed
time windows (:class:`equissl.datasets.pde.PDEWindowDataset`) with their spec, evaluation
views, pictures and generator.

Views are ``[3, T, X]`` (t, x, u) for 1-D equations — the (t, x) window as a 2-D image with
coordinate channels, our carrying of the Navier–Stokes code's layout to 1-D (the paper's
public code has no 1-D pipeline; docs/pde.md says what is sourced) — and ``[5, T, X, Y]``
(t, x, y, vₓ, v_y) for Navier–Stokes, which 2-D backbones see with frames stacked as input
channels (5 × 16 = 80, the paper's NS encoder).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.utils import make_grid

from equissl.config import DataConfig, GenerateSettings
from equissl.datasets.base import DataSpec, ViewDataset
from equissl.datasets.contract import Item, make_item
from equissl.datasets.pde.dataset import PDEWindowDataset
from equissl.datasets.pde.storage import file_time_window, pde_files
from equissl.registries import DATASETS


@dataclass
class PDEGenerateSettings(GenerateSettings):
    """Settings of the batched spectral solvers (``equissl.datasets.pde.generate``)."""

    num_trajectories: int = 512
    device: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # equation overrides (nx=128, ...)


@dataclass
class PDEDataConfig(DataConfig):
    """Windows of PDE trajectories under Lie point symmetries."""

    equation: str = "???"  # kdv | ks | burgers | ns
    window: int = 16  # frames per view (the public code's crop_t)
    strengths: dict[str, float] = field(default_factory=dict)  # max |ε| per generator
    mode: str = "coords"  # coords (the paper's) | grid (Fourier-shift resampling)
    composition: str = "expm"  # expm (exact) | strang (public code's Lie–Trotter, 2 steps)
    # exact (the symmetries) | released (the public code's Navier-Stokes quadratic boosts,
    # which the paper trained with; equissl.datasets.pde.symmetries)
    generators: str = "exact"
    # Splits by trajectory id (datasets.pde.dataset.split_mask): id % val_every == 0 is val
    # (the test split), id % val_every == 1 the labelled split held out of pretraining for
    # the coefficient heads (labelled_split), the rest pretraining: 4:1:1 at 6, the
    # reference's train / valid / test.
    val_every: int = 6
    labelled_split: bool = True
    batch_size: int = 32  # 1-D setting of Mialon et al.
    generate: PDEGenerateSettings | None = None


CHANNELS_1D = ("t", "x", "u")
CHANNELS_2D = ("t", "x", "y", "vx", "vy")


@DATASETS.register("pde", config=PDEDataConfig)
class PDEWindows(PDEWindowDataset, ViewDataset):
    """``PDEWindowDataset`` on the dataset extension point (see the module docstring)."""

    default_eval_views = 8

    @classmethod
    def from_config(cls, cfg: dict[str, Any], split: str, num_views: int) -> PDEWindows:
        if split in (cfg.get("val_split", "val"), "val"):
            split_name = "val"
        else:
            split_name = "labelled" if split == "labelled" else "train"
        ds = cls(
            root=cfg["root"],
            split=split_name,
            num_views=num_views,
            window=int(cfg["window"]),
            strengths=dict(cfg.get("strengths") or {}),
            mode=cfg["mode"],
            composition=cfg["composition"],
            generators=str(cfg.get("generators") or "exact"),
            val_every=int(cfg["val_every"]),
            # checkpoints from before the labelled split stored none: their splits stay
            labelled=bool(cfg.get("labelled_split", False)),
        )
        if cfg.get("equation") not in (None, "???", ds.equation):
            raise ValueError(
                f"data.equation={cfg['equation']} but {cfg['root']} holds "
                f"{ds.equation} trajectories"
            )
        ds.root = Path(cfg["root"])
        return ds

    @property
    def channels(self) -> tuple[str, ...]:
        return CHANNELS_2D if self.two_d else CHANNELS_1D

    def spec(self) -> DataSpec:
        spatial = self.u.shape[3:] if self.two_d else self.u.shape[2:]  # u [N, T, (C,) X, (Y)]
        shape = (len(self.channels), self.window, *spatial)
        coords = self.channels[:3] if self.two_d else self.channels[:2]
        return DataSpec(
            view_shape=tuple(int(s) for s in shape),
            channels=self.channels,
            coord_channels=coords,
            action_space=self.action_space.spec(),
            num_classes=0,
            coeff_names=tuple(self.coeff_names),
        )

    def untransformed(self) -> PDEWindows:
        """The same windows with every symmetry strength 0 (random start frames only: the
        reference's evaluation crops, ``steps=0``)."""
        plain = copy.copy(self)
        plain.max_strength = torch.zeros_like(self.max_strength)
        return plain

    def evaluation_views(self, views_per_object: int, seed: int) -> PDEEvalViews:
        """``views_per_object`` windows per trajectory with start frames and strengths drawn
        from the training distribution by a generator seeded with ``seed``."""
        return PDEEvalViews(self, views_per_object, seed)

    def draw_views(self, views: Tensor) -> Tensor:
        """Space-time heat maps of the field (1-D: u over (t, x); 2-D: speed |v| of the
        window's middle frame), rows = objects, columns = views, each scaled to its range."""
        v = views.detach().float().cpu()
        if self.two_d:
            mid = v.shape[3] // 2
            field_ = v[:, :, 3:5, mid].pow(2).sum(2).sqrt()  # [B, V, X, Y]
        else:
            field_ = v[:, :, 2]  # [B, V, T, X]
        flat = field_.flatten(0, 1)
        lo = flat.flatten(1).min(1).values.view(-1, 1, 1)
        hi = flat.flatten(1).max(1).values.view(-1, 1, 1)
        scaled = ((flat - lo) / (hi - lo).clamp_min(1e-12)).numpy()
        import matplotlib  # only for pictures: not imported by a command that draws none

        rgb = torch.from_numpy(matplotlib.colormaps["viridis"](scaled)[..., :3]).float()
        return make_grid(rgb.permute(0, 3, 1, 2), nrow=v.shape[1], padding=2)

    def manifest(self) -> Iterable[str]:
        for path in pde_files(Path(self.root))[0]:
            st = path.stat()
            yield f"{path}|{st.st_size}|{st.st_mtime_ns}|time_window={file_time_window(path)}"
        # the generator set only when not exact: cache keys of earlier features still match
        released = "" if self.generators == "exact" else f"|generators={self.generators}"
        yield (
            f"split={self.split_name}|window={self.window}|mode={self.mode}|"
            f"composition={self.composition}|strengths={self.max_strength.tolist()}{released}"
        )

    @classmethod
    def needs_generation(cls, cfg: dict[str, Any]) -> bool:
        # Only into a root without trajectory files: the data yamls' default data.generate
        # (a small set at the default root) must never add a chunk to a user's data.root.
        return not pde_files(Path(cfg["root"]))[0]

    @classmethod
    def generate(
        cls, cfg: dict[str, Any], settings: dict[str, Any], progress: bool = True
    ) -> dict[str, Any]:
        from equissl.datasets.pde import generate_pde

        settings = dict(settings)
        params = dict(settings.pop("params", None) or {})
        return generate_pde(cfg["equation"], cfg["root"], progress=progress, **settings, **params)

    generate_schema = PDEGenerateSettings


class PDEEvalViews(Dataset):
    """Fixed, seeded windows of every trajectory of a split, one view per item."""

    def __init__(self, base: PDEWindows, views_per_object: int, seed: int) -> None:
        self.base = base
        self.views_per_object = views_per_object
        gen = torch.Generator().manual_seed(int(seed))
        n, frames = len(base), base.u.shape[1]
        self.starts = torch.randint(
            0, frames - base.window + 1, (n, views_per_object), generator=gen
        )
        eps = (
            2 * torch.rand(n, views_per_object, base.group.dim, generator=gen, dtype=torch.float64)
            - 1
        )
        self.eps = eps * base.max_strength

    def __len__(self) -> int:
        return len(self.base) * self.views_per_object

    def __getitem__(self, i: int) -> Item:
        obj, v = divmod(i, self.views_per_object)
        start, eps = int(self.starts[obj, v]), self.eps[obj, v]
        view = self.base.view(obj, start, eps)[None]
        latents = torch.cat([eps, self.base.t[obj, start, None]])[None].float()
        return make_item(
            view, latents, label=-1, coeffs=self.base.coeffs[obj], index=int(self.base.index[obj])
        )
