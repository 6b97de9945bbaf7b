"""Per-view generative parameters of 3DIEBench(-T) and the per-object random streams.

A latent vector (float64) holds, in this order:

====  =================  ===========================================================
idx   meaning            distribution
====  =================  ===========================================================
0-2   rotation           extrinsic XYZ Euler angles (``Rotation.from_euler("xyz")``),
                         each U(−π/2, π/2); OOD: U([−π, −π/2] ∪ [π/2, π])
3     floor hue          U(0, 1)
4     spot-light θ       U(0, π/4), polar angle from +z
5     spot-light φ       U(0, 2π), azimuth from +x towards +y
6     spot-light hue     U(0, 1)
7-9   translation        (3DIEBench-T only) x, y, z each U(−0.5, 0.5)
====  =================  ===========================================================

Every object draws from its own stream seeded by ``(seed, class index, object index)``,
so which process renders it, and in which order, never changes its latents or its shape.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

LATENT_DIM = 7
LATENT_DIM_TRANSLATION = 10
ROTATION_RANGE = (-np.pi / 2, np.pi / 2)
SPOT_THETA_RANGE = (0.0, np.pi / 4)
SPOT_PHI_RANGE = (0.0, 2 * np.pi)
TRANSLATION_RANGE = (-0.5, 0.5)


def object_seed(seed: int, class_index: int, object_index: int) -> np.random.SeedSequence:
    """Root seed sequence of one object."""
    return np.random.SeedSequence([int(seed), int(class_index), int(object_index)])


class ObjectStreams(NamedTuple):
    """Independent random streams of one object."""

    shape: np.random.Generator  # proportions and optional parts of a procedural shape
    views: np.random.Generator  # the latents of its views
    render_seed: int  # path-tracer seed of view 0; view v uses render_seed + v (< 2**31)


def object_streams(seed: int, class_index: int, object_index: int) -> ObjectStreams:
    """The streams of object ``object_index`` of class ``class_index`` under ``seed``."""
    shape_ss, views_ss, render_ss = object_seed(seed, class_index, object_index).spawn(3)
    return ObjectStreams(
        np.random.default_rng(shape_ss),
        np.random.default_rng(views_ss),
        int(render_ss.generate_state(1)[0]) & 0x7FFF_0000,
    )


def object_hex_id(seed: int, synset: str, object_index: int) -> str:
    """32-hex-digit object id (ShapeNet style), a deterministic hash of its identity."""
    key = f"equissl-render/{int(seed)}/{synset}/{int(object_index)}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def sample_latents(
    rng: np.random.Generator, views: int, *, translation: bool = False, ood: bool = False
) -> np.ndarray:
    """Draw ``[views, 7]`` (or ``[views, 10]`` with ``translation``) float64 latents.

    The stream is consumed identically whatever the options, so the same seed gives the same
    hues and light positions with and without translation, and the first ``V`` views of a
    ``V' > V`` draw equal the ``V`` draw.
    """
    u = rng.random((views, LATENT_DIM_TRANSLATION))
    lat = np.empty_like(u)
    if ood:  # |angle| in [π/2, π], sign from the lower/upper half of u
        a = u[:, :3]
        lat[:, :3] = np.where(a < 0.5, -np.pi + a * np.pi, np.pi / 2 + (a - 0.5) * np.pi)
    else:
        lat[:, :3] = ROTATION_RANGE[0] + u[:, :3] * (ROTATION_RANGE[1] - ROTATION_RANGE[0])
    lat[:, 3] = u[:, 3]
    lat[:, 4] = SPOT_THETA_RANGE[0] + u[:, 4] * (SPOT_THETA_RANGE[1] - SPOT_THETA_RANGE[0])
    lat[:, 5] = SPOT_PHI_RANGE[0] + u[:, 5] * (SPOT_PHI_RANGE[1] - SPOT_PHI_RANGE[0])
    lat[:, 6] = u[:, 6]
    lat[:, 7:] = TRANSLATION_RANGE[0] + u[:, 7:] * (TRANSLATION_RANGE[1] - TRANSLATION_RANGE[0])
    return lat if translation else np.ascontiguousarray(lat[:, :LATENT_DIM])
