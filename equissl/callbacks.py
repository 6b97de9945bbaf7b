"""Lightning callbacks of the pretraining stage."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from equissl.datasets.iebench_format import MEAN, STD


class ViewGridLogger(pl.Callback):
    """Logs a grid of input views (rows = objects, columns = views) to TensorBoard.

    Only image batches (``views [B, V, 3, H, W]``) are drawn, de-normalised with the
    3DIEBench statistics.
    """

    def __init__(self, every_n_steps: int = 500, max_objects: int = 8) -> None:
        self.every_n_steps = every_n_steps
        self.max_objects = max_objects

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self.every_n_steps <= 0 or trainer.global_step % self.every_n_steps:
            return
        views = batch["views"]
        if views.ndim != 5 or views.shape[2] != 3 or not trainer.is_global_zero:
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        v = views[: self.max_objects].detach().float().cpu()
        mean = torch.tensor(MEAN).view(1, 1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 1, 3, 1, 1)
        v = (v * std + mean).clamp(0, 1)
        grid = make_grid(v.flatten(0, 1), nrow=v.shape[1], padding=2)
        for lg in loggers:
            lg.experiment.add_image("inputs/views", grid, trainer.global_step)
