"""Target kinds: every target of the shipped action spaces declares its kind, undeclared
targets of third-party action spaces are vectors, and kinds leave the stored specs alone."""

from __future__ import annotations

import math

import pytest
import torch

from equissl.datasets.contract import (
    DEFAULT_TARGET_KIND,
    TARGET_KINDS,
    build_action_space,
    wrap_angle,
)
from equissl.datasets.iebench_actions import IEBenchActionSpace
from equissl.datasets.pde.dataset import DEFAULT_STRENGTHS, PDEActionSpace
from tests.toy_parts import PlanarShiftSpace

SHIPPED = [
    IEBenchActionSpace(latent_dim=7),
    IEBenchActionSpace(latent_dim=10, canonical_sign=True),
    *(PDEActionSpace(eq) for eq in DEFAULT_STRENGTHS),
]


@pytest.mark.parametrize("space", SHIPPED, ids=lambda s: f"{s.kind}-{s.latent_dim}")
def test_every_shipped_target_declares_a_valid_kind(space):
    undeclared = sorted(set(space.targets) - set(space.target_kinds))
    assert not undeclared, f"{type(space).__name__} leaves {undeclared} without a kind"
    kinds = space.kinds()
    assert set(kinds) == set(space.targets)
    assert set(kinds.values()) <= set(TARGET_KINDS)
    for name, kind in kinds.items():
        if kind == "quaternion":
            assert space.targets[name] == 4
        if kind == "scalar":
            assert space.targets[name] == 1


def test_shipped_kinds_are_the_expected_ones():
    t = IEBenchActionSpace(latent_dim=10).kinds()
    assert t["rotation"] == "quaternion" and t["color"] == "hue"
    assert t["rotation_matrix"] == t["transform_base"] == t["transform_object"] == "matrix"
    assert t["translation"] == t["translation_base"] == t["translation_object"] == "vector"
    assert IEBenchActionSpace().targets_of_kind("quaternion") == ["rotation"]
    pde = PDEActionSpace("burgers")
    assert pde.target_kind("lie") == "vector"
    assert {pde.target_kind(n) for n in pde.group.names} == {"scalar"}
    assert pde.targets_of_kind("quaternion") == []


def test_kinds_do_not_enter_the_stored_spec():
    """Checkpoints store ``spec()``; kinds belong to the class, so old specs still load."""
    for space in SHIPPED:
        spec = space.spec()
        assert set(spec) == {"kind", "params"}
        assert build_action_space(spec).kinds() == space.kinds()
    old = {"kind": "iebench", "params": {"latent_dim": 7, "canonical_sign": False}}
    assert build_action_space(old).target_kind("rotation") == "quaternion"


def test_undeclared_targets_are_vectors_and_bad_declarations_fail():
    space = PlanarShiftSpace()  # declares nothing, as action spaces written before kinds
    assert space.kinds() == {"rotation": DEFAULT_TARGET_KIND, "shift": DEFAULT_TARGET_KIND}
    assert space.targets_of_kind("quaternion") == []
    assert PlanarShiftSpace({"rotation": "angle"}).targets_of_kind("angle") == ["rotation"]
    assert PlanarShiftSpace({"rotation": "angle"}).select(["shift", "rotation"]).kinds == (
        "vector",
        "angle",
    )
    with pytest.raises(KeyError, match="colour"):
        space.target_kind("colour")
    with pytest.raises(ValueError, match="quaternion of width 1"):
        PlanarShiftSpace({"rotation": "quaternion"}).target_kind("rotation")
    with pytest.raises(ValueError, match="kind 'angel'"):
        PlanarShiftSpace({"rotation": "angel"}).target_kind("rotation")


def test_wrap_angle_lands_in_the_half_open_interval():
    x = torch.tensor([0.0, math.pi, -math.pi, 3 * math.pi / 2, -3 * math.pi / 2, 7.0])
    w = wrap_angle(x)
    expected = torch.tensor([0.0, math.pi, math.pi, -math.pi / 2, math.pi / 2, 7.0 - 2 * math.pi])
    torch.testing.assert_close(w, expected)
    assert bool((w > -math.pi).all() and (w <= math.pi).all())
