import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from equissl.geometry import (
    canonical_quaternion,
    euler_xyz_to_matrix,
    euler_xyz_to_quaternion,
    quaternion_angle,
    quaternion_geodesic_distance,
    quaternion_multiply,
    quaternion_to_matrix,
    relative_rotation,
)

rng = np.random.default_rng(0)
IN_RANGE = rng.uniform(-np.pi / 2, np.pi / 2, (500, 3))  # 3DIEBench ranges
ANY = rng.uniform(-np.pi, np.pi, (500, 3))  # OOD-like ranges


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x)


@pytest.mark.parametrize("angles", [IN_RANGE, ANY])
def test_euler_to_quaternion_matches_scipy_sign_for_sign(angles):
    ours = euler_xyz_to_quaternion(t(angles)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_euler("xyz", angles).as_quat(), atol=1e-12)


@pytest.mark.parametrize("angles", [IN_RANGE, ANY])
def test_euler_to_matrix_matches_scipy(angles):
    ours = euler_xyz_to_matrix(t(angles)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_euler("xyz", angles).as_matrix(), atol=1e-12)


def test_relative_rotation_is_the_sie_reference_target():
    a, b = IN_RANGE[:250], IN_RANGE[250:]
    ref = (Rotation.from_euler("xyz", a).inv() * Rotation.from_euler("xyz", b)).as_quat()
    ours = relative_rotation(t(a), t(b)).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-12)  # same sign too, as the SIE code
    # and it takes view a to view b: R_a · R_rel = R_b
    ra, rb = euler_xyz_to_matrix(t(a)), euler_xyz_to_matrix(t(b))
    np.testing.assert_allclose((ra @ quaternion_to_matrix(t(ours))).numpy(), rb.numpy(), atol=1e-12)


def test_quaternion_multiply_composes_rotations():
    q1 = Rotation.random(100, random_state=1)
    q2 = Rotation.random(100, random_state=2)
    ours = quaternion_multiply(t(q1.as_quat()), t(q2.as_quat())).numpy()
    np.testing.assert_allclose(
        Rotation.from_quat(ours).as_matrix(), (q1 * q2).as_matrix(), atol=1e-12
    )


def test_canonical_sign_and_angles():
    q = t(Rotation.random(200, random_state=3).as_quat())
    c = canonical_quaternion(q)
    assert (c[:, 3] >= 0).all()
    assert torch.allclose(quaternion_to_matrix(c), quaternion_to_matrix(q), atol=1e-12)
    expected = Rotation.from_quat(q.numpy()).magnitude()
    np.testing.assert_allclose(quaternion_angle(q).numpy(), expected, atol=1e-9)
    np.testing.assert_allclose(quaternion_angle(-q).numpy(), expected, atol=1e-9)
    d = quaternion_geodesic_distance(q[:100], q[100:]).numpy()
    r = Rotation.from_quat(q[:100].numpy()).inv() * Rotation.from_quat(q[100:].numpy())
    np.testing.assert_allclose(d, r.magnitude(), atol=1e-9)
