"""3DIEBench / 3DIEBench-T reader on the batch contract (:mod:`equissl.datasets.contract`),
registered as the ``iebench`` dataset (``data=3diebench``, ``data=3diebench_t``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.utils import make_grid

from equissl.config import DataConfig, GenerateSettings, at_least
from equissl.datasets.base import DataSpec, ViewDataset, num_classes_of
from equissl.datasets.contract import Item, make_item
from equissl.datasets.iebench_actions import IEBenchActionSpace
from equissl.datasets.iebench_format import (
    MEAN,
    RENDER_RECORD,
    SPLITS_DIR,
    STD,
    default_splits_dir,
)
from equissl.datasets.keys import SampleKey, split_key
from equissl.datasets.packed import open_store
from equissl.registries import DATASETS


@dataclass
class RenderSettings(GenerateSettings):
    """Settings of the 3DIEBench-style renderer (``equissl.datasets.render``)."""

    num_classes: int = 10
    objects_per_class: int = 20
    views: int = 50
    resolution: int = 256
    spp: int = 16
    ood: bool = False
    val_fraction: float = 0.2
    mesh_root: str | None = None
    workers: int | None = None
    # loose: the published per-view files | packed: straight into equissl-pack's shards
    # (read with data.format=auto|packed; same items as rendering loose and packing)
    format: str = "loose"
    encoding: str = "jpeg"  # packed payload: jpeg (the files' bytes) | raw (decoded pixels)


@dataclass
class IEBenchDataConfig(DataConfig):
    """3DIEBench(-T) in its published on-disk format (``data.root``), or our renders of it."""

    splits_dir: str | None = None  # default <root>/data
    image_size: int = at_least(8, 256)  # SIE trains at 256 px
    translation: bool = False  # 3DIEBench-T: latents carry a translation (10 values)
    canonical_sign: bool = False  # quaternion sign as the reference (not canonicalised)
    # loose (image_{v}.jpg + latent_{v}.npy files) | packed (equissl-pack shards) | auto:
    # packed when root holds packed.json. Same items either way (equissl.datasets.packed).
    format: str = "auto"
    generate: RenderSettings | None = None  # render the dataset into root if it is absent


# Built once: two small tensors per view were a tenth of the per-item loading time.
_MEAN_CHW = torch.tensor(MEAN).view(3, 1, 1)
_STD_CHW = torch.tensor(STD).view(3, 1, 1)


def to_float_image(img: Tensor, size: int | None, normalize: bool = True) -> Tensor:
    """uint8 ``[..., 3, H, W]`` -> float32 ``[..., 3, size, size]``, resized (antialiased) and
    normalised: one view in a loader worker, or a whole ``[B, V, 3, H, W]`` batch on the
    device (``speed.normalize_on_device``), on the device the batch is on."""
    x = img.float().div_(255.0)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        flat = x.reshape(-1, *x.shape[-3:])
        x = F.interpolate(
            flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        ).reshape(*x.shape[:-2], size, size)
    if normalize:  # in place: x is this function's own tensor (a batch's copy is 4 x its bytes)
        x = x.sub_(_MEAN_CHW.to(x.device)).div_(_STD_CHW.to(x.device))
    return x


@DATASETS.register("iebench", config=IEBenchDataConfig)
class IEBenchDataset(ViewDataset):
    """Objects of one split, each returned as ``num_views`` distinct random views.

    Args:
        root: dataset root holding ``<synset>/<obj_id>/``.
        split: ``"train"`` or ``"val"`` (any name with ``{split}_images.npy``).
        num_views: views sampled (without replacement) per object per item.
        image_size: side in pixels after resizing; ``None`` keeps the stored size.
        splits_dir: folder of the split files (default ``<root>/data``).
        canonical_sign: canonicalise quaternion signs (``w ≥ 0``).
        data_format: ``loose`` files, ``packed`` shards (``equissl-pack``) or ``auto``
            (:func:`~equissl.datasets.packed.open_store`); the items are the same.

    Items follow the batch contract: ``views [V, 3, S, S]`` normalised float32,
    ``latents [V, 7 or 10]``, ``label``, ``coeffs [0]``, ``index``.
    Loose trees: the number of views per object and the latent length are the majority over
    a sample of objects (:func:`~equissl.datasets.validate.check_split`, which also checks the
    split); packed ones: from the index, whose shard files are checked.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_views: int = 2,
        image_size: int | None = None,
        splits_dir: str | Path | None = None,
        canonical_sign: bool = False,
        data_format: str = "auto",
    ) -> None:
        self.root = Path(root)
        self.split_name = split
        self.store = open_store(self.root, split, splits_dir, data_format)  # errors name files
        self.split, self.views_per_object = self.store.split, self.store.views_per_object
        if not 1 <= num_views <= self.views_per_object:
            raise ValueError(
                f"num_views={num_views} but objects of {self.root} have "
                f"{self.views_per_object} views"
            )
        self.num_views = num_views
        self.image_size = image_size
        self.latent_dim = self.store.latent_dim
        self.action_space = IEBenchActionSpace(self.latent_dim, canonical_sign)
        self.splits_dir = Path(splits_dir) if splits_dir else default_splits_dir(self.root)
        self.pixels = False  # uint8 views at the stored size, finished by device_transform

    @classmethod
    def from_config(cls, cfg: dict[str, Any], split: str, num_views: int) -> IEBenchDataset:
        ds = cls(
            root=cfg["root"],
            split=split,
            num_views=num_views,
            image_size=cfg.get("image_size"),
            splits_dir=cfg.get("splits_dir"),
            canonical_sign=bool(cfg.get("canonical_sign", False)),
            data_format=str(cfg.get("format", "auto")),
        )
        expected = 10 if cfg.get("translation") else 7
        if ds.latent_dim != expected:
            fits = "3diebench_t" if ds.latent_dim == 10 else "3diebench"
            raise ValueError(
                f"data={cfg.get('name')} expects {expected}-value latents "
                f"(data.translation={bool(cfg.get('translation'))}) but {ds.root} has "
                f"{ds.latent_dim}-value latents; use data={fits}"
            )
        return ds

    def spec(self) -> DataSpec:
        size = self.image_size or int(self.store.image(0, 0).shape[-1])
        return DataSpec(
            view_shape=(3, size, size),
            channels=("r", "g", "b"),
            action_space=self.action_space.spec(),
            num_classes=num_classes_of(self.labels),
        )

    def __len__(self) -> int:
        return len(self.split)

    @property
    def labels(self) -> np.ndarray:
        return self.split.labels

    def load(self, index: int, views: Sequence[int]) -> Item:
        """The item of object ``index`` seen in the given view ids (after
        :meth:`defer_to_device`: uint8 views at the stored size)."""
        imgs = [self.store.image(index, v) for v in views]
        if not self.pixels:
            imgs = [to_float_image(img, self.image_size) for img in imgs]
        lats = self.store.latents(index, views)
        return make_item(
            torch.stack(imgs),
            torch.from_numpy(lats).float(),
            label=int(self.split.labels[index]),
            index=index,
            pixels=self.pixels,
        )

    def defer_to_device(self) -> bool:
        """Serve uint8 views at the stored size; :meth:`device_transform` resizes and
        normalises the batch (the views of one batch must share a stored size, as every
        3DIEBench and rendered tree does)."""
        self.pixels = True
        return True

    def device_transform(self, views: Tensor) -> Tensor:
        """``[B, V, 3, H, W]`` uint8 -> the plain path's float32 views, on their device."""
        return to_float_image(views, self.image_size)

    def __getitem__(self, key: SampleKey) -> Item:
        # (index, sample_seed) keys of the training sampler fix the views; int: global RNG
        index, gen = split_key(key)
        views = torch.randperm(self.views_per_object, generator=gen)[: self.num_views].tolist()
        return self.load(index, views)

    def evaluation_views(self, views_per_object: int, seed: int) -> IEBenchEvalViews:
        """Every stored view of every object (the SIE protocol; ``views_per_object`` and
        ``seed`` are unused: the views are the files)."""
        return IEBenchEvalViews(self)

    def draw_views(self, views: Tensor) -> Tensor:
        """Rows = objects, columns = views, de-normalised with the 3DIEBench statistics."""
        v = views.detach().float().cpu()
        mean = torch.tensor(MEAN).view(1, 1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 1, 3, 1, 1)
        v = (v * std + mean).clamp(0, 1)
        return make_grid(v.flatten(0, 1), nrow=v.shape[1], padding=2)

    def manifest(self) -> Iterable[str]:
        """Split files' content hashes, then a fingerprint of each object folder (listing,
        mtime, view 0's files: :func:`~equissl.datasets.packed.folder_fingerprint`), or the
        packed index's hash and the shard files' sizes and mtimes."""
        yield from self._manifest_head()
        yield from self.store.manifest()

    def full_manifest(self) -> Iterable[str]:
        """Split files' content hashes, then every object's files (or the shard files) with
        sizes and mtimes."""
        yield from self._manifest_head()
        yield from self.store.full_manifest()

    def _manifest_head(self) -> Iterable[str]:
        for suffix in ("images", "labels"):
            f = self.splits_dir / f"{self.split_name}_{suffix}.npy"
            yield f"{f}|{hashlib.sha1(f.read_bytes()).hexdigest()}"
        yield f"image_size={self.image_size}|canonical_sign={self.action_space.canonical_sign}"

    @classmethod
    def needs_generation(cls, cfg: dict[str, Any]) -> bool:
        """True without split files, and for a folder a render made (its record
        ``data/render_config.json``): the render then finishes missing views (a killed render
        writes its split files first) or refuses other settings. A dataset from elsewhere
        is used as it is."""
        root = Path(cfg["root"])
        if (root / SPLITS_DIR / RENDER_RECORD).is_file():
            return True
        splits_dir = Path(cfg.get("splits_dir") or default_splits_dir(root))
        return not (splits_dir / f"{cfg['train_split']}_images.npy").is_file()

    @classmethod
    def generate(
        cls, cfg: dict[str, Any], settings: dict[str, Any], progress: bool = True
    ) -> dict[str, Any]:
        try:
            from equissl.datasets.render import generate_iebench
        except ImportError as err:  # PDE-only installs need neither mitsuba nor trimesh
            raise ImportError(
                f"rendering 3DIEBench-style data needs mitsuba and trimesh "
                f"({err.name} is missing): pip install mitsuba trimesh"
            ) from err
        return generate_iebench(
            cfg["root"], translation=bool(cfg.get("translation")), progress=progress, **settings
        )

    generate_schema = RenderSettings


class IEBenchEvalViews(Dataset):
    """Every (object, view) pair of a split, one view per item: ``[1, 3, S, S]`` views.

    Used by the evaluation stage's feature cache; ``index`` is the object id and the view
    id is ``item_index % views_per_object``.
    """

    def __init__(self, base: IEBenchDataset) -> None:
        self.base = base
        self.views_per_object = base.views_per_object

    def __len__(self) -> int:
        return len(self.base) * self.base.views_per_object

    def __getitem__(self, i: int) -> Item:
        obj, view = divmod(i, self.base.views_per_object)
        return self.base.load(obj, [view])
