"""Shared fixtures: a tiny tree in the real 3DIEBench layout, written without our generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy.spatial.transform import Rotation

SYNSETS = ("02691156", "02958343", "03001627")  # real ShapeNet synset ids


def write_iebench_tree(
    root: Path,
    objects_per_class: int = 4,
    views: int = 5,
    size: int = 32,
    latent_dim: int = 7,
    seed: int = 0,
    ood: bool = False,
) -> Path:
    """Write ``<root>/<synset>/<id>/image_i.jpg + latent_i.npy`` and ``<root>/data`` splits.

    Images are a projected, rotated 3-D arrow drawn with PIL, so pose is visible; labels are
    the synset's index in the sorted list of all 55 ShapeNet synsets would give — here fixed
    non-contiguous values (0, 7, 22) to exercise that case.
    """
    rng = np.random.default_rng(seed)
    labels_of = dict(zip(SYNSETS, (0, 7, 22), strict=True))
    arrow = np.array([[0.8, 0, 0], [-0.5, 0.3, 0], [-0.5, -0.3, 0], [-0.3, 0, 0.4]])
    entries: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}
    for synset in SYNSETS:
        for k in range(objects_per_class):
            obj = f"{rng.integers(16**12):012x}{k:04d}"
            d = root / synset / obj
            d.mkdir(parents=True)
            for v in range(views):
                angles = rng.uniform(-np.pi / 2, np.pi / 2, 3)
                if ood:  # 3DIEBench-OOD: each angle in [-pi, -pi/2] U [pi/2, pi]
                    angles = angles + np.where(angles < 0, -np.pi / 2, np.pi / 2)
                lat = np.concatenate(
                    [
                        angles,
                        rng.uniform(0, 1, 1),
                        rng.uniform(0, np.pi / 4, 1),
                        rng.uniform(0, 2 * np.pi, 1),
                        rng.uniform(0, 1, 1),
                    ]
                )
                if latent_dim == 10:
                    lat = np.concatenate([lat, rng.uniform(-0.5, 0.5, 3)])
                np.save(d / f"latent_{v}.npy", lat.astype(np.float64))
                pts = Rotation.from_euler("xyz", angles).apply(arrow)[:, :2] * size * 0.4 + size / 2
                img = Image.new("RGB", (size, size), (int(255 * lat[3]), 120, 90))
                ImageDraw.Draw(img).polygon([tuple(p) for p in pts], fill=(240, 240, 240))
                img.save(d / f"image_{v}.jpg", quality=90)
            split = "val" if k == 0 else "train"
            entries[split].append((f"/{synset}/{obj}/", labels_of[synset]))
    data = root / "data"
    data.mkdir(parents=True)
    for split, items in entries.items():
        np.save(data / f"{split}_images.npy", np.array([e for e, _ in items]))
        np.save(data / f"{split}_labels.npy", np.array([lab for _, lab in items], dtype=np.int64))
    return root


@pytest.fixture
def iebench_tree(tmp_path: Path) -> Path:
    return write_iebench_tree(tmp_path / "3DIEBench")


@pytest.fixture
def iebench_t_tree(tmp_path: Path) -> Path:
    return write_iebench_tree(tmp_path / "3DIEBench-T", latent_dim=10)


def compose_pretrain(overrides: list[str]) -> dict:
    """The resolved pretraining config of ``overrides``, with the test parts of
    ``tests/toy_parts.py`` registered (their schemas are options: ``method=toy_schema``)."""
    from hydra import compose, initialize_config_module

    import tests.toy_parts  # noqa: F401  (registers the toy parts)
    from equissl.apps.hydra_main import _resolved
    from equissl.plugins import register_configs

    register_configs()
    with initialize_config_module("equissl.configs", version_base="1.3"):
        return _resolved(compose("pretrain", overrides=overrides))


#: a toy method on a two-layer CNN, CPU, no progress bar: quick in-process runs
TOY = [
    "method=toy_schema",
    "method.name=toy",
    "backbone=tiny_cnn_schema",
    "trainer=cpu",
    "data.batch_size=4",
    "data.image_size=32",
    "data.num_workers=0",
    "logger=csv",
    "logger.name=none",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(autouse=True, scope="session")
def _configs_registered() -> None:
    """The schemas, parts and resolvers the Hydra commands register at start-up (the
    console scripts call ``setup()`` after their fast pre-Hydra checks)."""
    from equissl.apps.hydra_main import setup

    setup()
