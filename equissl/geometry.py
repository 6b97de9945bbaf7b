"""Rotation, quaternion and hue maths shared by datasets, methods and evaluation.

Conventions (those of 3DIEBench and scipy, checked against
``scipy.spatial.transform.Rotation`` in the tests):

* Euler angles are **extrinsic XYZ** in radians, ``R = Rz(γ) · Ry(β) · Rx(α)``, exactly
  ``Rotation.from_euler("xyz", [α, β, γ])``.
* Quaternions are **scalar-last** ``(x, y, z, w)`` like ``Rotation.as_quat()``; products
  are Hamilton products, ``q1 ⊗ q2`` being the rotation ``R(q1) · R(q2)``.
* Quaternion signs follow scipy's non-canonical output (built by composing elementary
  quaternions whose scalar parts are ``cos(θ/2)``), so targets match the reference code
  sign for sign; :func:`canonical_quaternion` (``w ≥ 0``) is the opt-in alternative.

All functions are batched over leading dimensions and keep the input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _axis_quaternion(angle: Tensor, axis: int) -> Tensor:
    """Quaternion ``[..., 4]`` of a rotation by ``angle`` (rad) about a coordinate axis."""
    half = 0.5 * angle
    q = torch.zeros(*angle.shape, 4, dtype=angle.dtype, device=angle.device)
    q[..., axis] = torch.sin(half)
    q[..., 3] = torch.cos(half)
    return q


def quaternion_multiply(q1: Tensor, q2: Tensor) -> Tensor:
    """Hamilton product ``q1 ⊗ q2`` of ``[..., 4]`` scalar-last quaternions."""
    x1, y1, z1, w1 = q1.unbind(-1)
    x2, y2, z2, w2 = q2.unbind(-1)
    return torch.stack(
        (
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        ),
        dim=-1,
    )


def quaternion_conjugate(q: Tensor) -> Tensor:
    """Conjugate (the inverse for unit quaternions) of ``[..., 4]`` quaternions."""
    return torch.cat((-q[..., :3], q[..., 3:]), dim=-1)


def euler_xyz_to_quaternion(angles: Tensor) -> Tensor:
    """Extrinsic XYZ Euler angles ``[..., 3]`` (rad) -> unit quaternions ``[..., 4]``.

    Same value and sign as ``Rotation.from_euler("xyz", angles).as_quat()``.
    """
    qx = _axis_quaternion(angles[..., 0], 0)
    qy = _axis_quaternion(angles[..., 1], 1)
    qz = _axis_quaternion(angles[..., 2], 2)
    # Extrinsic x then y then z: R = Rz Ry Rx, i.e. qz ⊗ (qy ⊗ qx).
    return quaternion_multiply(qz, quaternion_multiply(qy, qx))


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` (x, y, z, w) -> rotation matrices ``[..., 3, 3]``."""
    q = q / q.norm(dim=-1, keepdim=True)
    x, y, z, w = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def euler_xyz_to_matrix(angles: Tensor) -> Tensor:
    """Extrinsic XYZ Euler angles ``[..., 3]`` (rad) -> rotation matrices ``[..., 3, 3]``."""
    return quaternion_to_matrix(euler_xyz_to_quaternion(angles))


def relative_rotation(angles_a: Tensor, angles_b: Tensor) -> Tensor:
    """Quaternion ``[..., 4]`` of ``R_a⁻¹ · R_b`` (the rotation taking view a to view b).

    Args:
        angles_a, angles_b: ``[..., 3]`` extrinsic XYZ Euler angles (rad).
    Returns:
        Same value and sign as ``(from_euler("xyz", a).inv() * from_euler("xyz", b)).as_quat()``
        — the SIE reference target.
    """
    qa = euler_xyz_to_quaternion(angles_a)
    qb = euler_xyz_to_quaternion(angles_b)
    return quaternion_multiply(quaternion_conjugate(qa), qb)


def canonical_quaternion(q: Tensor) -> Tensor:
    """Pick the representative with ``w ≥ 0`` of each ``[..., 4]`` quaternion (q ≡ −q)."""
    sign = torch.where(q[..., 3:] < 0, -1.0, 1.0).to(q.dtype)
    return q * sign


def quaternion_angle(q: Tensor) -> Tensor:
    """Rotation angle in radians ``[...]``, in ``[0, π]``, of ``[..., 4]`` quaternions."""
    q = q / q.norm(dim=-1, keepdim=True)
    return 2 * torch.atan2(q[..., :3].norm(dim=-1), q[..., 3].abs())


def quaternion_geodesic_distance(q1: Tensor, q2: Tensor) -> Tensor:
    """Angle in radians ``[...]`` of the rotation between ``q1`` and ``q2`` (sign-blind)."""
    return quaternion_angle(quaternion_multiply(quaternion_conjugate(q1), q2))


def hue_difference(hue_a: Tensor, hue_b: Tensor) -> Tensor:
    """Plain difference ``hue_b − hue_a`` of hues in [0, 1), as the SIE reference uses.

    Not wrapped onto the circle, for comparability with published colour numbers.
    """
    return hue_b - hue_a


def rigid_transform(rotation: Tensor, translation: Tensor) -> Tensor:
    """Homogeneous ``[..., 4, 4]`` matrix ``[[R, t], [0, 1]]`` of ``rotation [..., 3, 3]``
    and ``translation [..., 3]`` (``x ↦ R x + t``)."""
    top = torch.cat((rotation, translation.unsqueeze(-1)), dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1
    return torch.cat((top, bottom), dim=-2)


def rigid_inverse(transform: Tensor) -> Tensor:
    """Inverse ``[[Rᵀ, −Rᵀ t], [0, 1]]`` of rigid ``[..., 4, 4]`` transforms."""
    rot_t = transform[..., :3, :3].transpose(-1, -2)
    return rigid_transform(rot_t, -(rot_t @ transform[..., :3, 3:]).squeeze(-1))
