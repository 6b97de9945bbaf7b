"""Lightning callbacks of the pretraining stage."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger


class ViewGridLogger(pl.Callback):
    """Logs a picture of a batch's input views to TensorBoard every ``every_n_steps``.

    The training dataset draws its own views (``ViewDataset.draw_views``): images as a
    grid (rows = objects, columns = views), PDE windows as space-time heat maps.
    """

    def __init__(self, every_n_steps: int = 500, max_objects: int = 8) -> None:
        self.every_n_steps = every_n_steps
        self.max_objects = max_objects

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.every_n_steps <= 0 or trainer.global_step % self.every_n_steps:
            return
        if not trainer.is_global_zero:
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        dataset = getattr(trainer.datamodule, "dataset", None)
        if not loggers or dataset is None:
            return
        picture = dataset.draw_views(batch["views"][: self.max_objects])
        for lg in loggers:
            lg.experiment.add_image("inputs/views", picture, trainer.global_step)
