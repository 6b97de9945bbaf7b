"""Hydra callback: after a multirun, one combined table of every ``results.json`` below the
sweep directory (``equissl-evaluate -m checkpoint=a.ckpt,b.ckpt``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from equissl.eval.sweep import combine


class CombineResults(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        files = sorted(sweep_dir.rglob("results.json"))
        if not files:
            return
        table = combine(files, sweep_dir)
        print(f"\ncombined results of {len(files)} run(s): {sweep_dir / 'results.md'}\n")
        print(table)
