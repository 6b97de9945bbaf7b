"""Tiny renders shared by the renderer tests (32 px, 4 spp: a few milliseconds per view)."""

from __future__ import annotations

from pathlib import Path

import pytest

from equissl.datasets.render import generate_iebench

TINY = dict(
    num_classes=2,
    objects_per_class=2,
    views=2,
    resolution=32,
    spp=4,
    seed=3,
    workers=1,
    progress=False,
)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A 2 classes × 2 objects × 2 views dataset and the summary of the call that made it."""
    out = tmp_path_factory.mktemp("render") / "tiny"
    return out, generate_iebench(out, **TINY)


@pytest.fixture
def tiny() -> dict:
    """The settings of ``tiny_dataset`` (a fresh copy per test)."""
    return dict(TINY)
