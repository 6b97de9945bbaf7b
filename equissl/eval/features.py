"""Feature cache of the evaluation stage (DESIGN §5.1).

The frozen model runs once, in ``eval()`` mode (BatchNorm uses its running statistics;
the reference probes leave it in train mode, letting probe data shift them), over the
evaluation views of every object of a split (the dataset's protocol:
:meth:`ViewDataset.evaluation_views`). Every named part of the representation is stored,
with latents, labels, coefficients and object ids. Probes then train on the cache.

The cache file is keyed by content: the checkpoint's bytes, the dataset's manifest (split
files' content, every data file's path, size and mtime), and the settings that change
features, so replacing data under the same root or retraining re-extracts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from equissl.checkpointing import atomic_torch_save
from equissl.datasets.base import ViewDataset
from equissl.ssl.base import SSLMethod


@dataclass
class FeatureSet:
    """Cached representations of one split's evaluation views.

    Attributes:
        parts: ``{part: [N, V, D_part]}`` float32 representation of every view.
        latents: ``[N, V, P]`` float32 latents of every view.
        labels: ``[N]`` int64 class labels (-1 unknown).
        coeffs: ``[N, K]`` float32 invariant targets (``K = 0`` for images).
        index: ``[N]`` int64 object ids.
        sequences: ``{"<part>@M<m>": [N, 1, D_part]}`` sequence representations of the first
            ``m`` evaluation views of each object (methods with a sequence representation).
    """

    parts: dict[str, Tensor]
    latents: Tensor
    labels: Tensor
    coeffs: Tensor
    index: Tensor
    sequences: dict[str, Tensor] = field(default_factory=dict)

    def part(self, name: str) -> Tensor:
        """``[N, V, D]`` features of a part, or ``[N, 1, D]`` of a sequence part."""
        return self.parts[name] if name in self.parts else self.sequences[name]

    @property
    def num_objects(self) -> int:
        return int(self.latents.shape[0])

    @property
    def views_per_object(self) -> int:
        return int(self.latents.shape[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "parts": self.parts,
            "latents": self.latents,
            "labels": self.labels,
            "coeffs": self.coeffs,
            "index": self.index,
            "sequences": self.sequences,
        }


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-1 of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(checkpoint_digest: str, manifest: Iterable[str], settings: dict[str, Any]) -> str:
    """Key of one split's features: checkpoint content, data manifest, settings."""
    h = hashlib.sha1(checkpoint_digest.encode())
    for line in manifest:
        h.update(line.encode())
        h.update(b"\n")
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@torch.inference_mode()
def extract_features(
    method: SSLMethod,
    dataset: ViewDataset,
    views_per_object: int,
    seed: int = 0,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    sequence_views: Iterable[int] = (),
) -> FeatureSet:
    """Represent every evaluation view of every object of ``dataset`` with the frozen model
    (and, for methods with a sequence representation, sequences of ``sequence_views``
    views)."""
    method.eval().to(device)
    single = dataset.evaluation_views(views_per_object, seed)
    n, v = len(dataset), single.views_per_object
    loader = DataLoader(single, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    parts: dict[str, list[Tensor]] = {}
    lats, labels, coeffs, index = [], [], [], []
    for batch in tqdm(
        loader, desc=f"features {dataset.split_name}", unit="batch", disable=not progress
    ):
        x = batch["views"][:, 0].to(device, non_blocking=True)
        for name, rep in method.represent(x).items():
            parts.setdefault(name, []).append(rep.float().cpu())
        lats.append(batch["latents"][:, 0])
        labels.append(batch["label"])
        coeffs.append(batch["coeffs"])
        index.append(batch["index"])
    fs = FeatureSet(
        parts={k: torch.cat(p).view(n, v, -1) for k, p in parts.items()},
        latents=torch.cat(lats).view(n, v, -1),
        labels=torch.cat(labels).view(n, v)[:, 0].clone(),
        coeffs=torch.cat(coeffs).view(n, v, -1)[:, 0].clone(),
        index=torch.cat(index).view(n, v)[:, 0].clone(),
    )
    if getattr(method, "sequence_representation", False) and sequence_views:
        fs.sequences = extract_sequences(
            method, single, n, v, sequence_views, batch_size, device, progress
        )
    return fs


@torch.inference_mode()
def extract_sequences(
    method: SSLMethod,
    single: Any,
    n: int,
    v: int,
    lengths: Iterable[int],
    batch_size: int,
    device: str | torch.device,
    progress: bool,
) -> dict[str, Tensor]:
    """``method.represent_sequence`` of the first ``m`` evaluation views of every object,
    for every ``m`` in ``lengths`` (capped at the views available): ``{"<part>@M<m>":
    [N, 1, D]}``."""
    out: dict[str, list[Tensor]] = {}
    lengths = sorted({min(int(m), v) for m in lengths if int(m) > 0})
    per_batch = max(1, batch_size // max(lengths, default=1))
    for start in tqdm(
        range(0, n, per_batch),
        desc="sequence features",
        unit="batch",
        disable=not progress or not lengths,
    ):
        objs = range(start, min(n, start + per_batch))
        items = [[single[o * v + j] for j in range(max(lengths))] for o in objs]
        views = torch.stack([torch.cat([it["views"] for it in row]) for row in items])
        lats = torch.stack([torch.cat([it["latents"] for it in row]) for row in items])
        for m in lengths:
            reps = method.represent_sequence(views[:, :m].to(device), lats[:, :m].to(device))
            for name, rep in reps.items():
                out.setdefault(f"{name}@M{m}", []).append(rep.float().cpu()[:, None])
    return {k: torch.cat(t) for k, t in out.items()}


def cached_features(
    method: SSLMethod, dataset: ViewDataset, cache_file: Path, **kwargs: Any
) -> FeatureSet:
    """Load ``cache_file`` if present (its name is the content key), else extract and
    write it atomically."""
    if cache_file.is_file():
        try:
            data = torch.load(cache_file, map_location="cpu", weights_only=True)
            return FeatureSet(**data)
        except Exception:  # a damaged cache is re-extracted, never trusted
            cache_file.unlink(missing_ok=True)
    fs = extract_features(method, dataset, **kwargs)
    atomic_torch_save(fs.to_dict(), cache_file)
    return fs
