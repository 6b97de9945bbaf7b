"""2-D Navier–Stokes with buoyancy: residual, convergence, symmetries, files."""

import math

import h5py
import pytest
import torch

from equissl.datasets.pde import PDEWindowDataset, generate_pde, validate_pde_path
from equissl.datasets.pde.ns2d import NavierStokes2D, vorticity_residual
from equissl.datasets.pde.symmetries import SymmetryGroup, apply_to_points_2d

F64 = torch.float64


@pytest.fixture(scope="module")
def flow():
    ns = NavierStokes2D(nx=48, length=16.0, nt=30, frame_dt=0.1, substeps=4)
    gen = torch.Generator().manual_seed(0)
    s0 = ns.initial_smoke(gen, 1)
    b = torch.tensor([0.4], dtype=F64)
    frames = ns.solve(s0, b)[0]
    t = torch.arange(ns.nt, dtype=F64) * ns.frame_dt
    return ns, frames, t, 0.4


def test_vorticity_residual_and_wrong_buoyancy(flow):
    ns, frames, t, b = flow
    assert frames[:, 1:].abs().max() > 0.05  # the smoke has set the fluid in motion
    good = vorticity_residual(frames, t, ns.length, ns.nu, b)
    assert good < 1e-2
    assert vorticity_residual(frames, t, ns.length, ns.nu, -b) > 0.3
    assert vorticity_residual(frames, t, ns.length, ns.nu, 2 * b) > 0.3


def test_time_convergence():
    out = []
    for sub in (2, 4, 16):
        ns = NavierStokes2D(nx=32, length=16.0, nt=6, frame_dt=0.5, substeps=sub)
        s0 = ns.initial_smoke(torch.Generator().manual_seed(1), 1)
        out.append(ns.solve(s0, torch.tensor([0.4], dtype=F64))[0, -1])
    e1, e2 = (out[0] - out[2]).abs().max(), (out[1] - out[2]).abs().max()
    assert e1 / e2 > 8  # 4th order: about 16


def regrid(t, x, y, fields):
    """Move every frame of a transformed window back onto frame 0's (scaled) grid."""
    n = x.shape[-2]
    dx = x[0, 1, 0] - x[0, 0, 0]
    k = 2 * math.pi * torch.fft.fftfreq(n, d=float(dx), dtype=F64)
    sx = (x[0, 0, 0] - x[:, 0, 0])[:, None, None, None]
    sy = (y[0, 0, 0] - y[:, 0, 0])[:, None, None, None]
    phase = torch.exp(1j * (k[:, None] * sx + k[None, :] * sy))
    out = torch.fft.ifft2(torch.fft.fft2(fields.movedim(1, 1)) * phase).real
    return t[:, 0, 0], float(dx * n), out


@pytest.mark.parametrize(
    "name, eps",
    [
        ("x_shift", 2.0),
        ("boost_x", 0.3),
        ("boost_y", -0.3),
        ("quad_boost_x", 0.2),
        ("scale", 0.2),
        ("t_shift", 1.0),
    ],
)
def test_symmetries_keep_solutions(flow, name, eps):
    ns, frames, t, b = flow
    group = SymmetryGroup.for_equation("ns")
    strengths = torch.tensor([eps if n == name else 0.0 for n in group.names], dtype=F64)
    g = group.element(strengths)
    grid = ns.grid()
    t2, x2, y2, f2 = apply_to_points_2d(
        g, t[:, None, None], grid[None, :, None], grid[None, None, :], frames
    )
    tt, length, aligned = regrid(t2, x2, y2, f2)
    res = vorticity_residual(aligned, tt, length, ns.nu, b)
    base = vorticity_residual(frames, t, ns.length, ns.nu, b)
    assert res < max(5 * base, 1e-4), (name, res, base)


def test_wrong_quadratic_boost_breaks_the_solution(flow):
    from equissl.datasets.pde import symmetries as S

    ns, frames, t, b = flow
    wrong = S._gen({(S.NS_X, S.T2): 1.0, (S.NS_VX, S.T): 1.0}, S.DIM_NS)  # should be 2εt
    g = torch.linalg.matrix_exp(0.3 * wrong)
    grid = ns.grid()
    t2, x2, y2, f2 = apply_to_points_2d(
        g, t[:, None, None], grid[None, :, None], grid[None, None, :], frames
    )
    tt, length, aligned = regrid(t2, x2, y2, f2)
    assert vorticity_residual(aligned, tt, length, ns.nu, b) > 0.05


def test_ns_files_and_views(tmp_path):
    info = generate_pde(
        "ns", tmp_path, num_trajectories=5, nx=32, nt=12, substeps=6, progress=False
    )
    assert validate_pde_path(tmp_path) == []
    with h5py.File(info["file"]) as f:
        assert f["u"].shape == (5, 12, 3, 32, 32) and f["y"].shape == (5, 32)
        assert f.attrs["channels"] == '["s", "vx", "vy"]'
        b = f["coeffs"][:, 0]
    assert ((b >= 0.2) & (b <= 0.5)).all()
    ds = PDEWindowDataset(tmp_path, split="train", window=8)
    item = ds[0]
    assert item["views"].shape == (2, 5, 8, 32, 32) and item["latents"].shape == (2, 9)
    with pytest.raises(ValueError, match="1-D"):
        PDEWindowDataset(tmp_path, window=8, mode="grid")


def test_released_quadratic_boosts_are_the_public_codes(flow):
    """``generators=released``: quad_boost_x is the linear boost again, quad_boost_y moves y by
    εt² and v_y by ε (SSLForPDEs' no-pressure path), at any strength and time."""
    ns, frames, t, _ = flow
    group = SymmetryGroup.for_equation("ns", generators="released")
    exact = SymmetryGroup.for_equation("ns")
    assert group.names == exact.names
    grid = ns.grid()
    tt, xx, yy = t[:, None, None] + 50.0, grid[None, :, None], grid[None, None, :]
    eps = 0.01

    def moved(name):
        strengths = torch.tensor([eps if n == name else 0.0 for n in group.names], dtype=F64)
        return apply_to_points_2d(group.element(strengths), tt, xx, yy, frames)

    t2, x2, y2, f2 = moved("quad_boost_x")
    torch.testing.assert_close(x2, (xx + eps * tt).expand_as(x2))
    torch.testing.assert_close(f2[:, 1], frames[:, 1] + eps)
    torch.testing.assert_close(y2, yy.expand_as(y2))
    t2, x2, y2, f2 = moved("quad_boost_y")
    torch.testing.assert_close(y2, (yy + eps * tt**2).expand_as(y2))
    torch.testing.assert_close(f2[:, 2], frames[:, 2] + eps)  # not + 2εt
    torch.testing.assert_close(f2[:, 1], frames[:, 1].double())
    # the exact quadratic boost moves v_y by 2εt: over 1 at t ≈ 50 for ε = 0.01
    strengths = torch.tensor([eps if n == "quad_boost_y" else 0.0 for n in exact.names])
    f3 = apply_to_points_2d(exact.element(strengths), tt, xx, yy, frames)[3]
    assert float((f3[:, 2] - frames[:, 2]).abs().max()) > 1.0


def test_released_relative_action():
    """The released set's x pair is one generator twice: the relative action's coordinates
    split it (minimum norm). On shifts and boosts it rebuilds g_a⁻¹ g_b exactly; with the
    scaling or a time shift the released quad_boost_y leaves the algebra (its commutators are
    not in the span), so the coordinates are the least-squares projection of the logarithm."""
    group = SymmetryGroup.for_equation("ns", generators="released")
    gen = torch.Generator().manual_seed(0)
    eps_a = (torch.rand(16, group.dim, generator=gen, dtype=F64) - 0.5) * 0.02
    eps_b = (torch.rand(16, group.dim, generator=gen, dtype=F64) - 0.5) * 0.02
    closing = torch.tensor([n not in ("t_shift", "scale") for n in group.names], dtype=F64)

    def residual(g, a, b):
        want = torch.linalg.inv(g.element(a)) @ g.element(b)
        return float((g.element(g.relative(a, b)) - want).abs().max())

    assert residual(group, eps_a * closing, eps_b * closing) < 1e-10
    rel = group.relative(eps_a, eps_b)
    i, j = group.names.index("boost_x"), group.names.index("quad_boost_x")
    torch.testing.assert_close(rel[:, i], rel[:, j])
    exact = SymmetryGroup.for_equation("ns")
    assert residual(exact, eps_a, eps_b) < 1e-10
    assert 1e-8 < residual(group, eps_a, eps_b) < 1e-3


def test_released_generators_are_named_and_recorded(tmp_path):
    from equissl.datasets.pde.dataset import PDEActionSpace

    with pytest.raises(ValueError, match=r"no kdv generators.*generators=exact"):
        SymmetryGroup.for_equation("kdv", generators="released")
    with pytest.raises(ValueError, match=r"generators='paper'"):
        SymmetryGroup.for_equation("ns", generators="paper")
    assert PDEActionSpace("ns").spec()["params"] == {"equation": "ns"}  # earlier specs hold
    released = PDEActionSpace("ns", generators="released").spec()["params"]
    assert released == {"equation": "ns", "generators": "released"}
