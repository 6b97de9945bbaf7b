"""What the Lie-symmetry recipe needs from the ``pde`` dataset (issue 11): channel order of
the views and of the 80-channel stack, two independent windows and group elements per item,
labels that no transformation touches, and actions that are the group element between the
two views (including on a chosen subgroup)."""

import h5py
import numpy as np
import pytest
import torch

from equissl.datasets.contract import build_action_space
from equissl.datasets.pde import PDEWindowDataset, generate_pde
from equissl.datasets.pde.symmetries import SymmetryGroup
from equissl.datasets.pde_windows import PDEEvalViews, PDEWindows
from equissl.models.backbones import build_backbone

F64 = torch.float64
TIMM = {"impl": "timm", "name": "resnet18", "cifar_stem": False, "zero_init_residual": False}


def write_ns_file(path, n=5, frames=18, nx=8, seed=0):
    """A Navier–Stokes file written by hand (random fields: every value distinct, so the
    channel order is unambiguous); ``u [N, T, (s, vx, vy), X, Y]``, buoyancy in [0.2, 0.5]."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f["u"] = rng.normal(size=(n, frames, 3, nx, nx)).astype(np.float32)
        f["t"] = np.tile(1.5 * np.arange(frames), (n, 1))
        f["x"] = np.tile(np.arange(nx) * 32.0 / nx, (n, 1))
        f["y"] = np.tile(np.arange(nx) * 32.0 / nx + 0.1, (n, 1))
        f["coeffs"] = rng.uniform(0.2, 0.5, (n, 1))
        f["index"] = np.arange(n)
        f.attrs.update(
            {
                "equation": "ns",
                "equation_text": "hand-made fields",
                "parameters": "{}",
                "generator_version": "hand",
                "coeff_names": '["buoyancy"]',
                "channels": '["s", "vx", "vy"]',
                "complete": True,
            }
        )
    return path


@pytest.fixture(scope="module")
def ns_root(tmp_path_factory):
    return write_ns_file(tmp_path_factory.mktemp("ns") / "ns.h5")


@pytest.fixture(scope="module")
def burgers_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("burgers")
    generate_pde("burgers", root, num_trajectories=5, nx=32, nt=20, progress=False)
    return root


def test_ns_views_stack_to_80_channels_channel_major(ns_root):
    ds = PDEWindowDataset(ns_root, window=16, val_every=99)
    i, start = 1, 2
    view = ds.view(i, start, torch.zeros(ds.group.dim, dtype=F64))  # the identity element
    assert view.shape == (5, 16, 8, 8)
    s = slice(start, start + 16)
    t, x, y, vx, vy = view.double()
    torch.testing.assert_close(t, ds.t[i, s, None, None].double().expand(16, 8, 8))
    torch.testing.assert_close(x, ds.x[i][None, :, None].double().expand(16, 8, 8))
    torch.testing.assert_close(y, ds.y[i][None, None, :].double().expand(16, 8, 8))
    torch.testing.assert_close(vx, ds.u[i, s, 1].double())  # u [N, T, (s, vx, vy), X, Y]
    torch.testing.assert_close(vy, ds.u[i, s, 2].double())
    backbone = build_backbone(TIMM, view.shape)
    assert backbone.trunk.conv1.in_channels == 80
    stacked = backbone.adapt(view[None])[0]  # [80, X, Y]: channel c * 16 + frame k
    for c in range(5):
        for k in range(16):
            assert torch.equal(stacked[c * 16 + k], view[c, k])
    assert backbone.eval()(view[None]).shape == (1, 512)


def test_1d_views_are_t_x_u(burgers_root):
    ds = PDEWindowDataset(burgers_root, window=16)
    view = ds.view(0, 3, torch.zeros(ds.group.dim, dtype=F64))
    assert view.shape == (3, 16, 32)
    t, x, u = view.double()
    torch.testing.assert_close(t, ds.t[0, 3:19, None].double().expand(16, 32))
    torch.testing.assert_close(x, ds.x[0][None].double().expand(16, 32))
    torch.testing.assert_close(u, ds.u[0, 3:19].double())
    assert build_backbone(TIMM, view.shape).trunk.conv1.in_channels == 3


def test_two_views_have_independent_windows_and_group_elements(burgers_root):
    ds = PDEWindowDataset(burgers_root, window=4, strengths={"t_shift": 0.0})
    torch.manual_seed(0)
    items = [ds[0] for _ in range(40)]
    lat = torch.stack([it["latents"] for it in items])  # [40, 2, P + 1]
    eps, start = lat[..., :-1], lat[..., -1]
    assert (eps[:, 0, 1:] != eps[:, 1, 1:]).all()  # t_shift is off; the others all differ
    assert (start[:, 0] != start[:, 1]).float().mean() > 0.5  # starts drawn independently
    corr = torch.corrcoef(torch.stack([eps[:, 0, 1], eps[:, 1, 1]]))[0, 1]
    assert abs(float(corr)) < 0.5


def test_transformed_windows_keep_the_trajectory_coefficient(burgers_root):
    ds = PDEWindowDataset(burgers_root, window=8)
    torch.manual_seed(1)
    for i in range(len(ds)):
        item = ds[i]
        plain = ds.view(i, 0, torch.zeros(ds.group.dim, dtype=F64))
        assert not torch.equal(item["views"][0], plain)  # transformed ...
        assert torch.equal(item["coeffs"], ds.coeffs[i])  # ... but the label is the file's
    ev = PDEWindows.from_config(
        {
            "root": str(burgers_root),
            "window": 8,
            "strengths": {},
            "mode": "coords",
            "composition": "expm",
            "val_every": 5,
        },
        "train",
        1,
    )
    views = PDEEvalViews(ev, 3, seed=0)  # the evaluation protocol's views: transformed too
    assert views.eps.abs().sum() > 0
    for k in range(len(views)):
        assert torch.equal(views[k]["coeffs"], ev.coeffs[k // 3])
    assert ev.spec().coeff_names == ("nu",)


@pytest.mark.parametrize("composition", ["expm", "strang"])
def test_action_is_the_group_element_between_the_views(burgers_root, composition):
    ds = PDEWindowDataset(burgers_root, window=8, composition=composition)
    torch.manual_seed(2)
    lat = ds[0]["latents"].double()
    eps = lat[:, : ds.group.dim]
    g = ds.group.element(eps, composition)  # what produced each view
    space = build_action_space(ds.action_space.spec())  # as a checkpoint rebuilds it
    rel = space.target("lie", lat[0], lat[1]).double()
    torch.testing.assert_close(
        ds.group.element(rel), torch.linalg.inv(g[0]) @ g[1], atol=1e-5, rtol=1e-5
    )
    # each generator's target is its coordinate of the same element
    for k, name in enumerate(ds.group.names):
        assert space.target(name, lat[0], lat[1]).shape == (1,)
        torch.testing.assert_close(space.target(name, lat[0], lat[1]), rel[k : k + 1].float())


def test_commuting_subgroup_action_is_the_difference_of_strengths():
    space = build_action_space({"kind": "pde", "params": {"equation": "burgers"}})
    gen = torch.Generator().manual_seed(0)
    lat = torch.zeros(2, 8, 5, dtype=F64)  # (t_shift, x_shift, boost, scale, t0)
    lat[..., 1:3] = torch.randn(2, 8, 2, generator=gen, dtype=F64)  # shift and boost commute
    got = space.select(["x_shift", "boost"]).relative(lat[0], lat[1])
    torch.testing.assert_close(got.double(), lat[1, :, 1:3] - lat[0, :, 1:3], atol=1e-5, rtol=0)
    assert space.select(["boost"]).dim == 1


def test_non_commuting_action_is_the_exact_product_not_the_difference():
    group = SymmetryGroup.for_equation("burgers")
    a = torch.tensor([0.5, 0.0, 0.3, 0.0], dtype=F64)  # time shift then boost: [∂t, t∂x] = ∂x
    b = torch.tensor([-0.4, 0.0, -0.2, 0.0], dtype=F64)
    rel = group.relative(a, b)
    torch.testing.assert_close(
        group.element(rel), torch.linalg.inv(group.element(a)) @ group.element(b)
    )
    assert abs(float(rel[1])) > 1e-3  # an x-shift component neither view had
    assert not torch.allclose(rel, b - a, atol=1e-4)


def test_action_space_spec_keeps_earlier_checkpoints_valid():
    from equissl.datasets.pde.dataset import PDEActionSpace

    assert PDEActionSpace("kdv").spec() == {"kind": "pde", "params": {"equation": "kdv"}}
    strang = PDEActionSpace("kdv", "strang").spec()
    assert strang["params"] == {"equation": "kdv", "composition": "strang"}
    assert build_action_space(strang).composition == "strang"
