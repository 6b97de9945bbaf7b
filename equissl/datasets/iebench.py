"""3DIEBench / 3DIEBench-T reader on the batch contract (DESIGN §2.1–2.2)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from equissl.datasets.contract import Item, make_item
from equissl.datasets.iebench_actions import IEBenchActionSpace
from equissl.datasets.iebench_format import (
    MEAN,
    STD,
    count_views,
    image_path,
    latent_path,
    load_split,
    read_image,
    read_latent,
)
from equissl.training.keys import SampleKey, split_key


def to_float_image(img: Tensor, size: int | None, normalize: bool = True) -> Tensor:
    """uint8 ``[3, H, W]`` -> float32 ``[3, size, size]``, resized (antialiased) and normalised."""
    x = img.float().div_(255.0)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)[0]
    if normalize:
        mean = torch.tensor(MEAN).view(3, 1, 1)
        std = torch.tensor(STD).view(3, 1, 1)
        x = (x - mean) / std
    return x


class IEBenchDataset(Dataset):
    """Objects of one split, each returned as ``num_views`` distinct random views.

    Args:
        root: dataset root holding ``<synset>/<obj_id>/``.
        split: ``"train"`` or ``"val"`` (any name with ``{split}_images.npy``).
        num_views: views sampled (without replacement) per object per item.
        image_size: side in pixels after resizing; ``None`` keeps the stored size.
        splits_dir: folder of the split files (default ``<root>/data``).
        action_components: targets composing the action (see :class:`IEBenchActionSpace`).
        canonical_sign: canonicalise quaternion signs (``w ≥ 0``).

    Items follow the batch contract: ``views [V, 3, S, S]`` normalised float32,
    ``latents [V, 7 or 10]``, ``label``, ``coeffs [0]``, ``index``.
    The number of views per object and the latent length are read from the first object.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_views: int = 2,
        image_size: int | None = None,
        splits_dir: str | Path | None = None,
        action_components: Sequence[str] = ("rotation",),
        canonical_sign: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split_name = split
        self.split = load_split(self.root, split, splits_dir)
        if len(self.split) == 0:
            raise ValueError(f"split {split!r} of {self.root} is empty")
        first = self.split.entries[0]
        self.views_per_object = count_views(self.root / first)
        if not 1 <= num_views <= self.views_per_object:
            raise ValueError(
                f"num_views={num_views} but objects of {self.root} have "
                f"{self.views_per_object} views"
            )
        self.num_views = num_views
        self.image_size = image_size
        self.latent_dim = len(read_latent(latent_path(self.root, first, 0)))
        self.action_space = IEBenchActionSpace(action_components, self.latent_dim, canonical_sign)

    def __len__(self) -> int:
        return len(self.split)

    @property
    def labels(self) -> np.ndarray:
        return self.split.labels

    def load(self, index: int, views: Sequence[int]) -> Item:
        """The item of object ``index`` seen in the given view ids."""
        entry = self.split.entries[index]
        imgs = [to_float_image(read_image(image_path(self.root, entry, v)), self.image_size)
                for v in views]
        lats = np.stack([read_latent(latent_path(self.root, entry, v), self.latent_dim)
                         for v in views])
        return make_item(torch.stack(imgs), torch.from_numpy(lats).float(),
                         label=int(self.split.labels[index]), index=index)

    def __getitem__(self, key: SampleKey) -> Item:
        # (index, sample_seed) keys of the training sampler fix the views; int: global RNG
        index, gen = split_key(key)
        views = torch.randperm(self.views_per_object, generator=gen)[: self.num_views].tolist()
        return self.load(index, views)

    def all_views(self) -> IEBenchAllViews:
        """Every (object, view) as a one-view item, object-major (for feature caches)."""
        return IEBenchAllViews(self)


class IEBenchAllViews(Dataset):
    """Every (object, view) pair of a split, one view per item: ``[1, 3, S, S]`` views.

    Used by the evaluation stage's feature cache; ``index`` is the object id and the view
    id is recoverable as ``item_index % views_per_object``.
    """

    def __init__(self, base: IEBenchDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base) * self.base.views_per_object

    def __getitem__(self, i: int) -> Item:
        obj, view = divmod(i, self.base.views_per_object)
        return self.base.load(obj, [view])
