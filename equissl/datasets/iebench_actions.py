"""Action space of 3DIEBench(-T) latents (DESIGN §2.2).

Latent layout of one view (float64 on disk, float32 here):

=====  ======================================================
index  meaning
=====  ======================================================
0-2    object rotation, extrinsic XYZ Euler angles (rad)
3      floor hue in [0, 1)
4      spot-light polar angle θ (rad)
5      spot-light azimuth φ (rad)
6      spot-light hue in [0, 1)
7-9    object translation (3DIEBench-T only), scene units
=====  ======================================================
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from equissl.datasets.contract import ActionSpace, register_action_space
from equissl.geometry import (
    canonical_quaternion,
    euler_xyz_to_quaternion,
    hue_difference,
    quaternion_conjugate,
    quaternion_to_matrix,
    relative_rotation,
)

ROTATION = slice(0, 3)
FLOOR_HUE = 3
SPOT_HUE = 6
TRANSLATION = slice(7, 10)
LATENT_DIMS = (7, 10)


@register_action_space("iebench")
class IEBenchActionSpace(ActionSpace):
    """Relative transformations between two views of one 3DIEBench object.

    Args:
        latent_dim: 7 (3DIEBench) or 10 (3DIEBench-T).
        canonical_sign: return quaternions with ``w ≥ 0`` (off by default, as the reference).

    Targets (all ``[..., D]`` float32):
        ``rotation`` (4): quaternion of ``R_a⁻¹ R_b`` (x, y, z, w) — the default action.
        ``color`` (2): (Δ floor hue, Δ spot hue), plain differences.
        ``translation`` (3, 3DIEBench-T): ``t_b − t_a`` in the base (world) frame.
        ``translation_object`` (3, 3DIEBench-T): ``R_a⁻¹ (t_b − t_a)``, in view a's object frame.
    """

    default_action = ("rotation",)

    def __init__(self, latent_dim: int = 7, canonical_sign: bool = False) -> None:
        if latent_dim not in LATENT_DIMS:
            raise ValueError(f"3DIEBench latents have 7 or 10 values, not {latent_dim}")
        self.latent_dim = latent_dim
        self.canonical_sign = canonical_sign
        self.targets = {"rotation": 4, "color": 2}
        if latent_dim == 10:
            self.targets.update(translation=3, translation_object=3)

    def params(self) -> dict[str, Any]:
        return {"latent_dim": self.latent_dim, "canonical_sign": self.canonical_sign}

    def target(self, name: str, latents_a: Tensor, latents_b: Tensor) -> Tensor:
        a = latents_a.double()
        b = latents_b.double()
        if name == "rotation":
            q = relative_rotation(a[..., ROTATION], b[..., ROTATION])
            return (canonical_quaternion(q) if self.canonical_sign else q).float()
        if name == "color":
            idx = [FLOOR_HUE, SPOT_HUE]
            return hue_difference(a[..., idx], b[..., idx]).float()
        if name in ("translation", "translation_object") and self.latent_dim == 10:
            delta = b[..., TRANSLATION] - a[..., TRANSLATION]
            if name == "translation":
                return delta.float()
            q_inv = quaternion_conjugate(euler_xyz_to_quaternion(a[..., ROTATION]))
            rot_inv = quaternion_to_matrix(q_inv)
            return (rot_inv @ delta.unsqueeze(-1)).squeeze(-1).float()
        raise self.unknown_target(name)
