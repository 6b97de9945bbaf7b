"""Dataset builders keyed by the data config's ``impl`` and the Lightning datamodule.

A builder maps ``(data_cfg, method_cfg, split) -> Dataset`` whose items follow the batch
contract and which exposes ``action_space`` and ``labels`` (``[N]`` int64, -1 unknown).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from equissl.datasets.contract import ActionSpace
from equissl.datasets.iebench import IEBenchDataset
from equissl.registry import Registry
from equissl.training.sampler import build_train_loader

Builder = Callable[[dict[str, Any], dict[str, Any], str], Dataset]
DATASETS: Registry[Builder] = Registry("dataset")


@DATASETS.register("iebench")
def build_iebench(data: dict[str, Any], method: dict[str, Any], split: str) -> IEBenchDataset:
    return IEBenchDataset(
        root=data["root"],
        split=split,
        num_views=int(method.get("num_views", data["num_views"])),
        image_size=data.get("image_size"),
        splits_dir=data.get("splits_dir"),
        action_components=tuple(method.get("action", ("rotation",))),
        canonical_sign=bool(data.get("canonical_sign", False)),
    )


@DATASETS.register("pde")
def build_pde(data: dict[str, Any], method: dict[str, Any], split: str) -> Dataset:
    from equissl.datasets.pde import PDEWindowDataset

    split_name = "val" if split == data.get("val_split", "val") else "train"
    return PDEWindowDataset(
        root=data["root"], split=split_name,
        num_views=int(method.get("num_views", data["num_views"])), window=int(data["window"]),
        strengths=dict(data.get("strengths") or {}), mode=data["mode"],
        composition=data["composition"], val_every=int(data["val_every"]),
    )


def build_dataset(data: dict[str, Any], method: dict[str, Any], split: str) -> Dataset:
    """Build split ``split`` of the dataset described by ``data`` for ``method``."""
    return DATASETS.get(data.get("impl", "iebench"))(data, method, split)


def _single_threaded_worker(_: int) -> None:
    # Loader workers decode and resize; intra-op threads there only fight the training step.
    torch.set_num_threads(1)


def num_classes_of(*datasets: Dataset) -> int:
    """``max label + 1`` over the datasets (labels may be non-contiguous); 0 if unlabelled."""
    top = max((int(np.max(ds.labels)) for ds in datasets if len(ds.labels)), default=-1)
    return top + 1


class PretrainDataModule(pl.LightningDataModule):
    """Training loader of the SSL stage (no validation loop: evaluation is a separate stage).

    Args:
        data: resolved ``data`` config section (per-device ``batch_size``).
        method: resolved ``method`` config section (``num_views``, ``action``).
        seed: the run's seed (data order and per-sample randomness, equissl.training.sampler).
    """

    def __init__(self, data: dict[str, Any], method: dict[str, Any], seed: int = 0) -> None:
        super().__init__()
        self.data_cfg = data
        self.method_cfg = method
        self.seed = int(seed)
        if int(data["num_views"]) != int(method["num_views"]):
            raise ValueError(
                f"data.num_views={data['num_views']} but method {method['name']} uses "
                f"{method['num_views']} views per object; set data.num_views={method['num_views']}"
            )
        self.train_set = build_dataset(data, method, data["train_split"])

    @property
    def action_space(self) -> ActionSpace:
        return self.train_set.action_space

    @property
    def num_classes(self) -> int:
        return num_classes_of(self.train_set)

    def train_dataloader(self) -> DataLoader:
        # Resumable, seeded, sharded per rank (the Trainer runs use_distributed_sampler=False).
        trainer = self.trainer
        return build_train_loader(
            self.train_set, batch_size=int(self.data_cfg["batch_size"]),
            num_workers=int(self.data_cfg["num_workers"]), seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )
