"""Parts defined outside equissl, as a user would write them (``docs/extending.md``).

``tests/test_extension_points.py`` copies this file into a temporary folder as the module
``toy_equissl_method`` and names it in ``EQUISSL_PLUGINS`` for the console scripts; the
in-process tests import it as ``tests.toy_parts``. It registers:

* the method ``toy`` (one loss term, 2 to 4 views) and ``toy_ema`` (an EMA target head);
* the backbone ``tiny_cnn`` (a two-layer CNN, fast on CPU);
* the probe ``feature_norm`` (mean norm of each part's features);
* the dataset ``toy_shapes`` (rotated 2-D bars made in memory, no ``data.root``) with its
  action space ``planar_rotation``, whose target ``rotation`` is an angle, not a quaternion.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from equissl.config import BackboneConfig, DataConfig, MethodConfig, ProbeConfig
from equissl.datasets.base import DataSpec, ViewDataset, num_classes_of
from equissl.datasets.contract import ActionSpace, make_item, register_action_space, wrap_angle
from equissl.datasets.keys import SampleKey, split_key
from equissl.eval.probes.base import EvalContext, Probe, ProbeResult
from equissl.models.ema import momentum_copy
from equissl.registries import BACKBONES, DATASETS, METHODS, PROBES
from equissl.ssl.base import LossOutput, SSLMethod


# ----------------------------------------------------------------------------- method
@dataclass
class ToyConfig(MethodConfig):
    """Toy method: cosine alignment of every view's projection with the first view's."""

    dim: int = 16  # projection width
    weights: dict[str, float] = field(default_factory=lambda: {"align": 1.0})


@METHODS.register("toy", config=ToyConfig)
class Toy(SSLMethod):
    """Toy: align the projections of 2 to 4 views of each object (one loss term)."""

    terms = ("align",)
    num_views_range = (2, 4)

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.head = nn.Linear(self.repr_dim, int(self.mcfg["dim"]))

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]  # [B, V, *view_shape]
        reps = [self.backbone(views[:, v]) for v in range(views.shape[1])]
        z0 = self.head(reps[0])
        align = torch.stack(
            [1 - F.cosine_similarity(z0, self.head(r)).mean() for r in reps[1:]]
        ).mean()
        return LossOutput({"align": align}, reps[0])


@METHODS.register("toy_ema", config=ToyConfig)
class ToyEMA(Toy):
    """Toy with an EMA target head (``momentum_pairs``): the second views' projections
    come from the target, as in BYOL."""

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.target_head = momentum_copy(self.head)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.head, self.target_head)]

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        r0, r1 = self.backbone(views[:, 0]), self.backbone(views[:, 1])
        with torch.no_grad():
            target = self.target_head(r1)
        align = 1 - F.cosine_similarity(self.head(r0), target).mean()
        return LossOutput({"align": align}, r0)


# --------------------------------------------------------------------------- backbone
@dataclass
class TinyCNNConfig(BackboneConfig):
    """A two-layer CNN (tests and examples only)."""

    width: int = 16


class TinyTrunk(nn.Module):
    """``[B, C, H, W] -> [B, width, H/4, W/4]`` (``forward_features``, as timm trunks)."""

    def __init__(self, in_chans: int, width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.layers(x)


@BACKBONES.register("tiny_cnn", config=TinyCNNConfig)
def tiny_cnn(cfg: dict[str, Any], in_chans: int) -> tuple[nn.Module, int]:
    """Two strided 3×3 convolutions; ``in_chans`` comes from the dataset's view shape."""
    width = int(cfg["width"])
    return TinyTrunk(in_chans, width), width


# ------------------------------------------------------------------------------ probe
@dataclass
class FeatureNormProbeConfig(ProbeConfig):
    """Mean L2 norm of a part's validation features (no training)."""

    scale: float = 1.0


@PROBES.register("feature_norm", config=FeatureNormProbeConfig)
class FeatureNormProbe(Probe):
    """Mean feature norm per part (a probe without training, for tests and examples)."""

    def skip_reason(self, ctx: EvalContext) -> str | None:
        return None if len(ctx.val.parts["full"]) else "no validation objects"

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        x = ctx.val.parts[part]  # [N, V, D]
        norms = x.norm(dim=-1).flatten() * float(self.cfg["scale"])
        return ProbeResult({"mean_norm": float(norms.mean())}, norms, norms)


# ---------------------------------------------------------------------------- dataset
@register_action_space("planar_rotation")
class PlanarRotation(ActionSpace):
    """Latents ``[angle]`` (radians); the relative rotation is the wrapped angle difference
    (a 2-D angle, deliberately named ``rotation`` like 3DIEBench's quaternion target)."""

    latent_dim = 1
    targets = {"rotation": 1}
    target_kinds = {"rotation": "angle"}
    default_action = ("rotation",)

    def target(self, name: str, latents_a: Tensor, latents_b: Tensor) -> Tensor:
        if name != "rotation":
            raise self.unknown_target(name)
        return wrap_angle(latents_b[..., :1] - latents_a[..., :1]).float()

    def params(self) -> dict[str, Any]:
        return {}


class PlanarShiftSpace(ActionSpace):
    """A third-party 2-D action space, unregistered: latents (θ, x, y); ``rotation`` (an
    angle difference) and ``shift``. Kinds are declared per instance (``None``: nothing
    declared, as action spaces written before kinds)."""

    kind = "planar_test"
    latent_dim = 3
    targets = {"rotation": 1, "shift": 2}
    default_action = ("rotation",)

    def __init__(self, kinds: dict[str, str] | None = None) -> None:
        if kinds is not None:
            self.target_kinds = kinds

    def params(self) -> dict[str, Any]:
        return {}

    def target(self, name: str, latents_a: Tensor, latents_b: Tensor) -> Tensor:
        if name == "rotation":
            return wrap_angle(latents_b[..., :1] - latents_a[..., :1])
        if name == "shift":
            return latents_b[..., 1:] - latents_a[..., 1:]
        raise self.unknown_target(name)


@dataclass
class ToyShapesConfig(DataConfig):
    """Rotated 2-D shapes generated in memory (no ``data.root``)."""

    objects: int = 24  # per split
    image_size: int = 16
    views: int = 6  # stored views per object


@DATASETS.register("toy_shapes", config=ToyShapesConfig)
class ToyShapes(ViewDataset):
    """A bar of a random length drawn at ``views`` random angles per object; the class is
    the length bucket (3 classes). Everything derives from the split name and the index."""

    default_eval_views = 4

    def __init__(self, cfg: dict[str, Any], split: str, num_views: int) -> None:
        self.split_name, self.num_views = split, num_views
        self.size, self.n = int(cfg["image_size"]), int(cfg["objects"])
        self.stored = int(cfg["views"])
        self.action_space = PlanarRotation()
        rng = np.random.default_rng(0 if split == cfg["train_split"] else 1)
        self.lengths = rng.uniform(0.3, 0.9, self.n)
        self.angles = rng.uniform(-np.pi, np.pi, (self.n, self.stored))
        self.labels = np.minimum((self.lengths - 0.3) // 0.2, 2).astype(np.int64)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], split: str, num_views: int) -> ToyShapes:
        return cls(cfg, split, num_views)

    def spec(self) -> DataSpec:
        return DataSpec(
            view_shape=(1, self.size, self.size),
            channels=("gray",),
            action_space=self.action_space.spec(),
            num_classes=num_classes_of(self.labels),
        )

    def __len__(self) -> int:
        return self.n

    def draw(self, index: int, view: int) -> Tensor:
        """``[1, S, S]`` image of the bar of object ``index`` at its angle ``view``."""
        s = torch.linspace(-1, 1, self.size)
        y, x = torch.meshgrid(s, s, indexing="ij")
        a = float(self.angles[index, view])
        along = x * np.cos(a) + y * np.sin(a)
        across = -x * np.sin(a) + y * np.cos(a)
        bar = (along.abs() < self.lengths[index]) & (across.abs() < 0.15)
        head = (along - self.lengths[index]).abs().lt(0.2) & (across.abs() < 0.35)
        return (bar | head).float().unsqueeze(0)

    def item(self, index: int, views: list[int]) -> dict[str, Tensor]:
        return make_item(
            torch.stack([self.draw(index, v) for v in views]),
            torch.tensor(self.angles[index, views], dtype=torch.float32).unsqueeze(-1),
            label=int(self.labels[index]),
            index=index,
        )

    def __getitem__(self, key: SampleKey) -> dict[str, Tensor]:
        index, gen = split_key(key)  # the documented (index, generator) contract
        views = torch.randperm(self.stored, generator=gen)[: self.num_views].tolist()
        return self.item(index, views)

    def evaluation_views(self, views_per_object: int, seed: int) -> Dataset:
        return _OneViewItems(self, min(views_per_object, self.stored))

    def draw_views(self, views: Tensor) -> Tensor:
        return views[:, :, :1].flatten(0, 1).mean(0).expand(3, -1, -1)

    def manifest(self) -> Iterable[str]:
        yield f"toy_shapes|{self.split_name}|{self.n}|{self.size}|{self.stored}"


class _OneViewItems(Dataset):
    """Evaluation views: view ``i % V`` of object ``i // V``, one view per item."""

    def __init__(self, data: ToyShapes, views: int) -> None:
        self.data, self.views = data, views

    def __len__(self) -> int:
        return len(self.data) * self.views

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return self.data.item(i // self.views, [i % self.views])
