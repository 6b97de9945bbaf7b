"""Feature cache of the evaluation stage (DESIGN §5.1).

The frozen backbone runs once, in ``eval()`` mode (BatchNorm uses its running statistics;
the reference probes leave it in train mode, letting probe data shift them), over every
view of every object of a split. Probes then train on the cached ``[N, V, D]`` tensor.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from equissl.checkpointing import atomic_torch_save
from equissl.ssl.base import SSLMethod


@dataclass
class FeatureSet:
    """Cached representations of one split.

    Attributes:
        features: ``[N, V, D]`` float32 representations of every view.
        latents: ``[N, V, P]`` float32 latents of every view.
        labels: ``[N]`` int64 class labels (-1 unknown).
    """

    features: Tensor
    latents: Tensor
    labels: Tensor

    def to_dict(self) -> dict[str, Tensor]:
        return {"features": self.features, "latents": self.latents, "labels": self.labels}


def cache_key(checkpoint: str | Path, split: str, extra: str = "") -> str:
    """Key identifying (checkpoint file version, split, data settings)."""
    p = Path(checkpoint).resolve()
    st = p.stat()
    raw = f"{p}|{st.st_size}|{st.st_mtime_ns}|{split}|{extra}"
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


@torch.inference_mode()
def extract_features(
    method: SSLMethod,
    dataset: torch.utils.data.Dataset,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> FeatureSet:
    """Represent every view of every object of ``dataset`` (which must offer
    ``all_views()`` and ``views_per_object``) with the frozen ``method``."""
    method.eval().to(device)
    single = dataset.all_views()
    n, v = len(dataset), dataset.views_per_object
    loader = DataLoader(single, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    feats, lats, labels = [], [], []
    for batch in tqdm(loader, desc=f"features {getattr(dataset, 'split_name', '')}",
                      unit="batch", disable=not progress):
        x = batch["views"][:, 0].to(device, non_blocking=True)
        feats.append(method.represent(x).float().cpu())
        lats.append(batch["latents"][:, 0])
        labels.append(batch["label"])
    features = torch.cat(feats).view(n, v, -1)
    latents = torch.cat(lats).view(n, v, -1)
    return FeatureSet(features, latents, torch.cat(labels).view(n, v)[:, 0].clone())


def cached_features(
    method: SSLMethod,
    dataset: torch.utils.data.Dataset,
    cache_file: Path,
    **kwargs: object,
) -> FeatureSet:
    """Load ``cache_file`` if present, else extract and write it atomically."""
    if cache_file.is_file():
        data = torch.load(cache_file, map_location="cpu", weights_only=True)
        if data["features"].shape[:2] == (len(dataset), dataset.views_per_object):
            return FeatureSet(**data)
    fs = extract_features(method, dataset, **kwargs)
    atomic_torch_save(fs.to_dict(), cache_file)
    return fs
