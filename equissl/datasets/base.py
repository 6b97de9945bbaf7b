"""The dataset extension point: a registry of view datasets and what each declares.

A dataset is one module that registers a :class:`ViewDataset` subclass with its config
schema (``@DATASETS.register("iebench", config=IEBenchDataConfig)``) plus one YAML option
in ``configs/data/``. The class builds itself from its config section, serves items on
the batch contract (:mod:`equissl.datasets.contract`), declares a :class:`DataSpec`
(view shape, channels, action space, classes — stored in checkpoints so a model is rebuilt
without the data), offers the evaluation protocol's fixed views, draws its views for
TensorBoard, and may generate itself (``equissl-generate``, ``data.generate``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from equissl.datasets.contract import ActionSpace, build_action_space
from equissl.registries import DATASETS as DATASETS  # where plugins written for 0.1 import it


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data, without the data.

    Attributes:
        view_shape: one view's shape: ``[C, H, W]`` images, ``[C, T, X]`` 1-D PDE windows,
            ``[C, T, X, Y]`` 2-D PDE windows.
        channels: name of each of the ``C`` channels (``("r", "g", "b")``, ``("t", "x", "u")``).
        coord_channels: names of the channels that hold coordinates rather than fields.
        action_space: :meth:`ActionSpace.spec` of the dataset's action space.
        num_classes: ``max label + 1`` of the training split (0 when unlabelled).
        coeff_names: names of the ``coeffs`` entries (invariant physical targets).
    """

    view_shape: tuple[int, ...]
    channels: tuple[str, ...]
    coord_channels: tuple[str, ...] = ()
    action_space: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 0
    coeff_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("view_shape", "channels", "coord_channels", "coeff_names"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        return cls(
            view_shape=tuple(int(v) for v in d["view_shape"]),
            channels=tuple(d["channels"]),
            coord_channels=tuple(d.get("coord_channels", ())),
            action_space=dict(d["action_space"]),
            num_classes=int(d.get("num_classes", 0)),
            coeff_names=tuple(d.get("coeff_names", ())),
        )

    def build_action_space(self) -> ActionSpace:
        return build_action_space(self.action_space)

    def mismatch(self, other: DataSpec) -> list[str]:
        """What differs between a model's spec and another dataset's (empty: compatible)."""
        problems = []
        if self.view_shape != other.view_shape:
            problems.append(
                f"view shape {list(other.view_shape)} (the model was trained on "
                f"{list(self.view_shape)})"
            )
        if self.channels != other.channels:
            problems.append(f"channels {list(other.channels)} (the model's: {list(self.channels)})")
        if self.action_space != other.action_space:
            problems.append(f"action space {other.action_space} (the model's: {self.action_space})")
        return problems


class ViewDataset(Dataset):
    """Base of every registered dataset: one item = one object in ``num_views`` views.

    Subclasses set ``split_name``, ``labels`` (``[N]`` int64, -1 unknown), ``action_space``
    and implement the abstract-by-convention methods below.
    """

    split_name: str
    labels: np.ndarray
    action_space: ActionSpace
    #: default views per object of the evaluation protocol (``data.eval_views`` overrides)
    default_eval_views: ClassVar[int] = 8

    @classmethod
    def from_config(cls, cfg: dict[str, Any], split: str, num_views: int) -> ViewDataset:
        """Split ``split`` of the dataset described by the resolved ``data`` section."""
        raise NotImplementedError

    def spec(self) -> DataSpec:
        raise NotImplementedError

    def evaluation_views(self, views_per_object: int, seed: int) -> Dataset:
        """The evaluation protocol: ``views_per_object`` fixed views of every object, as
        one-view items ``views [1, *view_shape]``, object-major (item ``i`` is view
        ``i % views_per_object`` of object ``i // views_per_object``); reproducible from
        ``seed``."""
        raise NotImplementedError

    def untransformed(self) -> ViewDataset:
        """This split with its views' transformations switched off (the untransformed
        evaluation views some protocols score on), or itself where the views are the data
        (rendered images); its :meth:`manifest` tells the two apart."""
        return self

    def defer_to_device(self) -> bool:
        """Serve items whose views :meth:`device_transform` finishes once the batch is on the
        device (``speed.normalize_on_device``: e.g. uint8 pixels, a quarter of float32's bytes
        between loader processes and over the bus, normalised by the device).

        Returns:
            Whether the dataset did; the default cannot, and its items stay as they are.
        """
        return False

    def device_transform(self, views: Tensor) -> Tensor:
        """Finish ``views [B, V, ...]`` of a batch served after :meth:`defer_to_device` into
        the batch contract's float32 views (the plain path's values)."""
        return views

    def draw_views(self, views: Tensor) -> Tensor:
        """A picture of ``views [B, V, *view_shape]`` for TensorBoard: ``[3, H, W]`` in [0, 1]."""
        raise NotImplementedError

    def manifest(self) -> Iterable[str]:
        """Lines that change whenever the data behind this split changes (paths, sizes,
        mtimes, split-file content): the evaluation feature cache is keyed by them, on every
        evaluation, before the cache is looked at, so they should be cheap to compute (a
        dataset of millions of files may fingerprint folders rather than files: say what it
        trusts in the docstring)."""
        raise NotImplementedError

    def full_manifest(self) -> Iterable[str]:
        """Like :meth:`manifest`, from every file (``eval.data_check=files``); by default
        the manifest itself."""
        return self.manifest()

    @classmethod
    def needs_generation(cls, cfg: dict[str, Any]) -> bool:
        """Whether ``data.generate`` still has to write the data into ``cfg["root"]``."""
        return False

    @classmethod
    def generate(
        cls, cfg: dict[str, Any], settings: dict[str, Any], progress: bool = True
    ) -> dict[str, Any]:
        """Write the dataset into ``cfg["root"]`` with the generator ``settings`` (its
        :attr:`generate_schema` fields). Returns a summary."""
        raise NotImplementedError(f"{cls.__name__} cannot generate data")

    #: the dataclass of :meth:`generate`'s settings (``None``: no generator)
    generate_schema: ClassVar[type | None] = None


def num_classes_of(*labels: np.ndarray) -> int:
    """``max label + 1`` over the label arrays (labels may be non-contiguous); 0 if none."""
    top = max((int(np.max(lab)) for lab in labels if len(lab)), default=-1)
    return top + 1


def build_dataset(cfg: dict[str, Any], split: str, num_views: int) -> ViewDataset:
    """Split ``split`` of the registered dataset ``cfg["impl"]``."""
    return DATASETS.get(cfg["impl"]).from_config(cfg, split, num_views)


def generate_dataset(
    cfg: dict[str, Any], settings: dict[str, Any] | None = None, progress: bool = True
) -> dict[str, Any] | None:
    """The one generation dispatcher: write ``cfg``'s data with ``settings`` (default:
    ``cfg["generate"]``) unless it is already there."""
    cls = DATASETS.get(cfg["impl"])
    settings = settings if settings is not None else cfg.get("generate")
    if settings is None:
        return None
    if cls.generate_schema is None:
        raise ValueError(f"dataset {cfg['impl']!r} has no generator (data.generate)")
    return cls.generate(cfg, dict(settings), progress=progress)
