"""The Lightning datamodule of the pretraining stage, over any registered dataset
(:mod:`equissl.datasets.base`)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from equissl.datasets.base import DataSpec, ViewDataset, build_dataset, num_classes_of
from equissl.datasets.on_error import check_policy, wrap_on_error

__all__ = ["PretrainDataModule", "build_dataset", "num_classes_of"]


def _single_threaded_worker(_: int) -> None:
    # Loader workers decode and resize; intra-op threads there only fight the training step.
    torch.set_num_threads(1)


class PretrainDataModule(pl.LightningDataModule):
    """Training loader of the SSL stage (no validation loop: evaluation is a separate stage).

    Args:
        data: resolved ``data`` config section (per-device ``batch_size``).
        num_views: views per object the method consumes (``method.num_views``).

    ``data.on_error`` (``fail`` | ``skip``) wraps the training set
    (:mod:`equissl.datasets.on_error`); evaluation never skips.
    """

    def __init__(self, data: dict[str, Any], num_views: int) -> None:
        super().__init__()
        self.data_cfg = data
        policy = check_policy(str(data.get("on_error", "fail")))  # before any file is read
        self.dataset: ViewDataset = build_dataset(data, data["train_split"], int(num_views))
        self.train_set = wrap_on_error(self.dataset, policy)

    @property
    def spec(self) -> DataSpec:
        return self.dataset.spec()

    @property
    def batch_size(self) -> int:
        return int(self.data_cfg["batch_size"])

    def train_dataloader(self) -> DataLoader:
        workers = int(self.data_cfg["num_workers"])
        batch = int(self.data_cfg["batch_size"])
        if len(self.train_set) < batch:
            raise ValueError(
                f"data.batch_size={batch} exceeds the {len(self.train_set)} training objects of "
                f"{self.data_cfg['root']}; lower data.batch_size"
            )
        return DataLoader(
            self.train_set,
            batch_size=batch,
            shuffle=True,
            drop_last=True,  # batch statistics (variance, covariance) need full batches
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=_single_threaded_worker,
        )
