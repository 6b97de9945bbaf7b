"""EquiCaps' relative transformations ρ(g) and 3DIEBench-T translation targets against
numpy/scipy, written as the reference computes them (AberdeenML/EquiCaps src/dataset.py
``get_object_frame_matrix`` / ``get_base_frame_matrix`` and ``np.linalg.inv(M1) @ M2``;
eval_translation_prediction_{object,final}_frame.py)."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from equissl.datasets.iebench_actions import IEBenchActionSpace
from equissl.geometry import rigid_inverse, rigid_transform


def latents(n: int, dim: int = 10, seed: int = 0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    lat = np.concatenate(
        [g.uniform(-np.pi / 2, np.pi / 2, (n, 3)), g.uniform(0, 1, (n, 4))], axis=1
    )
    if dim == 10:
        lat = np.concatenate([lat, g.uniform(-0.5, 0.5, (n, 3))], axis=1)
    return torch.from_numpy(lat).float()


def homogeneous(angles: np.ndarray, t: np.ndarray, base: bool) -> np.ndarray:
    rot, trans = np.eye(4), np.eye(4)
    rot[:3, :3] = Rotation.from_euler("xyz", angles).as_matrix()
    trans[:3, 3] = t
    return rot @ trans if base else trans @ rot


@pytest.mark.parametrize("target, base", [("transform_object", False), ("transform_base", True)])
def test_4x4_relative_transform_matches_numpy(target, base):
    a, b = latents(8), latents(8, seed=1)
    got = IEBenchActionSpace(10).target(target, a, b).double().numpy().reshape(-1, 4, 4)
    an, bn = a.double().numpy(), b.double().numpy()
    for i in range(8):
        m1 = homogeneous(an[i, :3], an[i, 7:], base)
        m2 = homogeneous(bn[i, :3], bn[i, 7:], base)
        np.testing.assert_allclose(got[i], np.linalg.inv(m1) @ m2, atol=1e-6)
    np.testing.assert_allclose(got[:, 3], np.tile([0, 0, 0, 1.0], (8, 1)), atol=0)


def test_the_two_frames_differ_and_agree_without_translation():
    a, b = latents(8), latents(8, seed=1)
    space = IEBenchActionSpace(10)
    obj, base = space.target("transform_object", a, b), space.target("transform_base", a, b)
    assert (obj - base).abs().max() > 0.1
    rot = space.target("rotation_matrix", a, b).view(-1, 3, 3)
    torch.testing.assert_close(obj.view(-1, 4, 4)[:, :3, :3], rot)
    torch.testing.assert_close(base.view(-1, 4, 4)[:, :3, :3], rot)
    a[:, 7:], b[:, 7:] = 0, 0
    torch.testing.assert_close(
        space.target("transform_object", a, b), space.target("transform_base", a, b)
    )


@pytest.mark.parametrize("dim", [7, 10])
def test_3x3_relative_rotation_matches_scipy(dim):
    a, b = latents(8, dim), latents(8, dim, seed=1)
    got = IEBenchActionSpace(dim).target("rotation_matrix", a, b).double().numpy()
    ra = Rotation.from_euler("xyz", a[:, :3].double().numpy())
    rb = Rotation.from_euler("xyz", b[:, :3].double().numpy())
    np.testing.assert_allclose(got.reshape(-1, 3, 3), (ra.inv() * rb).as_matrix(), atol=1e-6)


def test_translation_targets_of_both_reference_conventions():
    a, b = latents(8), latents(8, seed=1)
    space = IEBenchActionSpace(10)
    an, bn = a.double().numpy(), b.double().numpy()
    ra, rb = Rotation.from_euler("xyz", an[:, :3]), Rotation.from_euler("xyz", bn[:, :3])
    # object frame (eval_translation_prediction_object_frame.py): latent_2[-3:] - latent_1[-3:]
    obj = space.target("translation", a, b).double().numpy()
    np.testing.assert_allclose(obj, bn[:, 7:] - an[:, 7:], atol=1e-6)
    # base frame (..._final_frame.py): M2[:3, 3] - M1[:3, 3] with M = R·T
    base = space.target("translation_base", a, b).double().numpy()
    np.testing.assert_allclose(base, rb.apply(bn[:, 7:]) - ra.apply(an[:, 7:]), atol=1e-6)
    # translation_object: the translation column of transform_object
    col = space.target("transform_object", a, b).view(-1, 4, 4)[:, :3, 3]
    torch.testing.assert_close(space.target("translation_object", a, b), col)


def test_rigid_inverse_inverts():
    rot = torch.from_numpy(Rotation.random(5, random_state=0).as_matrix())
    m = rigid_transform(rot, torch.randn(5, 3, dtype=torch.float64))
    torch.testing.assert_close(
        rigid_inverse(m) @ m, torch.eye(4, dtype=torch.float64).expand(5, 4, 4)
    )


def test_translation_targets_need_10_value_latents():
    assert {"rotation_matrix"} <= set(IEBenchActionSpace(7).targets)
    for name in ("translation_base", "transform_object", "transform_base"):
        assert name not in IEBenchActionSpace(7).targets
        with pytest.raises(KeyError, match=name):
            IEBenchActionSpace(7).target(name, latents(2, 7), latents(2, 7))
