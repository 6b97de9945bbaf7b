"""Action space of 3DIEBench(-T) latents: the relative transformation from view a to view b.

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
from equissl.datasets.iebench_format import LATENT_DIMS as LATENT_DIMS
from equissl.geometry import (
    canonical_quaternion,
    euler_xyz_to_quaternion,
    hue_difference,
    quaternion_conjugate,
    quaternion_to_matrix,
    relative_rotation,
    rigid_inverse,
    rigid_transform,
)

ROTATION = slice(0, 3)
FLOOR_HUE = 3
SPOT_HUE = 6
TRANSLATION = slice(7, 10)


@register_action_space("iebench")
class IEBenchActionSpace(ActionSpace):
    """Relative transformations between two views of one 3DIEBench object.

    Args:
        latent_dim: 7 (3DIEBench) or 10 (3DIEBench-T).
        canonical_sign: return quaternions with ``w ≥ 0`` (off by default, as the reference).

    Targets (all ``[..., D]`` float32, computed in float64), with ``R`` the rotation of the
    Euler angles and ``t`` the translation latent of a view:
        ``rotation`` (4): quaternion of ``R_a⁻¹ R_b`` (x, y, z, w) — the default action.
        ``rotation_matrix`` (9): ``R_a⁻¹ R_b`` row-major (EquiCaps' 3×3 ρ(g)).
        ``color`` (2): (Δ floor hue, Δ spot hue), plain differences.
        ``translation`` (3, 3DIEBench-T): ``t_b − t_a``, the difference of the translation
        latents — EquiCaps' "object frame" target
        (``eval_translation_prediction_object_frame.py``).
        ``translation_base`` (3, 3DIEBench-T): ``R_b t_b − R_a t_a``, the difference of the
        translation columns of ``M = R·T(t)`` — EquiCaps' "base frame" target
        (``eval_translation_prediction_final_frame.py``). The 3DIEBench-T renderer sets the
        object's ``matrix_basis = R·T(t)`` (and so does ``equissl-generate``), so this is the
        displacement of the object's centre in the world.
        ``translation_object`` (3, 3DIEBench-T): ``R_a⁻¹ (t_b − t_a)``, the translation
        column of ``transform_object``: ``t_b − t_a`` in view a's rotated axes.
        ``transform_object`` (16, 3DIEBench-T): ``M_a⁻¹ M_b`` row-major with
        ``M = T(t)·R`` (EquiCaps' 4×4 ρ(g) without ``--base-frame``, "object frame").
        ``transform_base`` (16, 3DIEBench-T): ``M_a⁻¹ M_b`` with ``M = R·T(t)`` (EquiCaps'
        4×4 ρ(g) with ``--base-frame``).

    Kinds (:attr:`target_kinds`): ``rotation`` a quaternion, ``color`` hue differences, the
    matrices ``matrix``, the translations ``vector``.
    """

    default_action = ("rotation",)
    target_kinds = {
        "rotation": "quaternion",
        "rotation_matrix": "matrix",
        "color": "hue",
        "translation": "vector",
        "translation_base": "vector",
        "translation_object": "vector",
        "transform_object": "matrix",
        "transform_base": "matrix",
    }

    def __init__(self, latent_dim: int = 7, canonical_sign: bool = False) -> None:
        if latent_dim not in LATENT_DIMS:
            raise ValueError(f"3DIEBench latents have 7 or 10 values, not {latent_dim}")
        self.latent_dim = latent_dim
        self.canonical_sign = canonical_sign
        self.targets = {"rotation": 4, "rotation_matrix": 9, "color": 2}
        if latent_dim == 10:
            self.targets.update(
                translation=3,
                translation_base=3,
                translation_object=3,
                transform_object=16,
                transform_base=16,
            )

    def params(self) -> dict[str, Any]:
        return {"latent_dim": self.latent_dim, "canonical_sign": self.canonical_sign}

    def target(self, name: str, latents_a: Tensor, latents_b: Tensor) -> Tensor:
        a = latents_a.double()
        b = latents_b.double()
        if name == "rotation":
            q = relative_rotation(a[..., ROTATION], b[..., ROTATION])
            return (canonical_quaternion(q) if self.canonical_sign else q).float()
        if name == "rotation_matrix":
            rot_a, rot_b = rotation_of(a), rotation_of(b)
            return (rot_a.transpose(-1, -2) @ rot_b).flatten(-2).float()
        if name == "color":
            idx = [FLOOR_HUE, SPOT_HUE]
            return hue_difference(a[..., idx], b[..., idx]).float()
        if name in self.targets and self.latent_dim == 10:
            return self._translation_target(name, a, b).float()
        raise self.unknown_target(name)

    def _translation_target(self, name: str, a: Tensor, b: Tensor) -> Tensor:
        """The 3DIEBench-T targets of float64 latents ``[..., 10]``."""
        if name == "translation":
            return b[..., TRANSLATION] - a[..., TRANSLATION]
        if name == "translation_object":
            q_inv = quaternion_conjugate(euler_xyz_to_quaternion(a[..., ROTATION]))
            delta = b[..., TRANSLATION] - a[..., TRANSLATION]
            return (quaternion_to_matrix(q_inv) @ delta.unsqueeze(-1)).squeeze(-1)
        if name == "translation_base":
            return base_frame_matrix(b)[..., :3, 3] - base_frame_matrix(a)[..., :3, 3]
        frame = {"transform_object": object_frame_matrix, "transform_base": base_frame_matrix}
        m_a, m_b = frame[name](a), frame[name](b)
        return (rigid_inverse(m_a) @ m_b).flatten(-2)


def rotation_of(latents: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` of 3DIEBench latents ``[..., P]``."""
    return quaternion_to_matrix(euler_xyz_to_quaternion(latents[..., ROTATION]))


def object_frame_matrix(latents: Tensor) -> Tensor:
    """``M = T(t)·R`` ``[..., 4, 4]`` of 3DIEBench-T latents (EquiCaps
    ``get_object_frame_matrix``): ``x ↦ R x + t``."""
    return rigid_transform(rotation_of(latents), latents[..., TRANSLATION])


def base_frame_matrix(latents: Tensor) -> Tensor:
    """``M = R·T(t)`` ``[..., 4, 4]`` of 3DIEBench-T latents (EquiCaps
    ``get_base_frame_matrix``, the renderer's ``matrix_basis``): ``x ↦ R (x + t)``."""
    rot = rotation_of(latents)
    return rigid_transform(rot, (rot @ latents[..., TRANSLATION].unsqueeze(-1)).squeeze(-1))
