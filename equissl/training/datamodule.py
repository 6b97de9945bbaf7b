"""The Lightning datamodule of the pretraining stage, over any registered dataset
(:mod:`equissl.datasets.base`)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from equissl.datasets.base import DataSpec, ViewDataset, build_dataset
from equissl.datasets.on_error import check_policy, wrap_on_error
from equissl.progress import usable_workers
from equissl.speed import PLAIN
from equissl.training.sampler import build_train_loader


class PretrainDataModule(pl.LightningDataModule):
    """Training loader of the SSL stage (no validation loop: evaluation is a separate stage).

    Args:
        data: resolved ``data`` config section (per-device ``batch_size``).
        num_views: views per object the method consumes (``method.num_views``).
        seed: the run's seed (data order and per-sample randomness, equissl.training.sampler).
        speed: the run's ``speed`` section (loader pinning, prefetch, persistent workers;
            ``normalize_on_device``: the dataset's views are finished in
            :meth:`on_after_batch_transfer`, where it can, :meth:`ViewDataset.defer_to_device`).

    ``data.on_error`` (``fail`` | ``skip``) wraps the training set
    (:mod:`equissl.datasets.on_error`); evaluation never skips.
    """

    def __init__(
        self,
        data: dict[str, Any],
        num_views: int,
        seed: int = 0,
        speed: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.data_cfg = data
        self.seed = int(seed)
        self.speed = speed
        policy = check_policy(str(data.get("on_error", "fail")))  # before any file is read
        self.dataset: ViewDataset = build_dataset(data, data["train_split"], int(num_views))
        self.train_set = wrap_on_error(self.dataset, policy)
        on_device = {**PLAIN, **(speed or {})}["normalize_on_device"]
        self.on_device = bool(on_device) and self.dataset.defer_to_device()

    @property
    def spec(self) -> DataSpec:
        return self.dataset.spec()

    @property
    def batch_size(self) -> int:
        return int(self.data_cfg["batch_size"])

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Views served as pixels (``speed.normalize_on_device``) normalised on the device."""
        if self.on_device:
            batch["views"] = self.dataset.device_transform(batch["views"])
        return batch

    def train_dataloader(self) -> DataLoader:
        # Resumable, seeded, sharded per rank (the Trainer runs use_distributed_sampler=False).
        trainer = self.trainer
        return build_train_loader(
            self.train_set,
            batch_size=int(self.data_cfg["batch_size"]),
            num_workers=usable_workers(int(self.data_cfg["num_workers"])),
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            speed=self.speed,
        )
