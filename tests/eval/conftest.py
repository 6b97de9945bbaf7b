"""Shared pieces of the evaluation tests: a toy checkpoint as pretraining initialised it,
and fast versions of the SIE probes (two epochs, small heads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from equissl.training.pretrain import pretrain
from tests.conftest import TOY, compose_pretrain

FAST = {"epochs": 2, "batch_size": 16, "lr": 1e-2, "weight_decay": 0.0, "seed": 0}


def fast_probes(**settings: Any) -> dict[str, dict[str, Any]]:
    """Classification and rotation probes at :data:`FAST` (``settings`` override it)."""
    fast = {**FAST, **settings}
    return {
        "classification": {"impl": "classification", **fast},
        "rotation": {
            "impl": "pair_regression",
            "target": "rotation",
            "head": "mlp",
            "hidden_dim": 16,
            "val_pairs_per_object": 2,
            **fast,
        },
    }


@pytest.fixture
def initial_checkpoint(iebench_tree: Path, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """``(config, checkpoint)`` of a toy model as pretraining initialised it (no step)."""
    config = compose_pretrain([*TOY, f"data.root={iebench_tree}", "trainer.max_steps=0"])
    return config, pretrain(config, tmp_path / "run")
