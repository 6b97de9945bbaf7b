"""Generated HDF5 files: layout, determinism, resume, validation, and an independent check."""

import json
import math

import h5py
import numpy as np
import pytest
import torch

from equissl.datasets.pde import PDEWindowDataset, generate_pde, validate_pde_path
from equissl.datasets.pde.equations import KdV
from equissl.datasets.pde.residual import relative_residual

# frames spanning [0, T] (the `full` window): the finite-difference residual needs u to move
# between frames; LPSDA's default window is checked in test_time_window.py
SMALL = {
    "nx": 64,
    "nt": 41,
    "horizon": 4.0,
    "substeps": 10,
    "time_window": "full",
    "progress": False,
}


def independent_residual(path, wrong=None):
    """Recompute each equation's residual from u, t, x, coeffs with numpy alone."""
    with h5py.File(path, "r") as f:
        eq = f.attrs["equation"]
        u, t, x, c = (f[k][...] for k in ("u", "t", "x", "coeffs"))
    out = []
    for i in range(len(u)):
        n = u.shape[-1]
        length = (x[i, 1] - x[i, 0]) * n
        k = 2 * np.pi * np.fft.fftfreq(n, d=length / n)

        def d(f, order, k=k):
            return np.real(np.fft.ifft((1j * k) ** order * np.fft.fft(f, axis=-1), axis=-1))

        dt = t[i, 1] - t[i, 0]
        w = u[i]
        ut = (-w[4:] + 8 * w[3:-1] - 8 * w[1:-3] + w[:-4]) / (12 * dt)
        w = w[2:-2]
        sign = -1.0 if wrong == "sign" else 1.0  # of the dispersive / diffusive term
        adv = 1.5 if wrong == "advection" else 1.0
        if eq == "kdv":
            rhs = -adv * w * d(w, 1) - sign * d(w, 3)
        elif eq == "ks":
            rhs = -adv * w * d(w, 1) - sign * d(w, 2) - d(w, 4)
        else:
            rhs = -adv * w * d(w, 1) + sign * c[i, 0] * d(w, 2)
        out.append(np.linalg.norm(ut - rhs) / np.linalg.norm(ut))
    return np.array(out)


@pytest.mark.parametrize("equation", ["kdv", "ks", "burgers"])
def test_files_pass_an_independent_residual_check(tmp_path, equation):
    extra = {"cole_hopf_scale": 2.0, "nu_range": (0.02, 0.05)} if equation == "burgers" else {}
    info = generate_pde(equation, tmp_path, num_trajectories=4, **SMALL, **extra)
    path = info["file"]
    assert validate_pde_path(path) == []
    with h5py.File(path) as f:
        assert f["u"].shape == (4, 41, 64) and f["t"].shape == (4, 41) and f["x"].shape == (4, 64)
        names = json.loads(f.attrs["coeff_names"])
        assert f["coeffs"].shape == (4, len(names))
        assert f.attrs["equation"] == equation and f.attrs["generator_version"]
        params = json.loads(f.attrs["parameters"])
        assert params["nx"] == 64
    good = independent_residual(path)
    assert good.max() < 1e-2, good
    assert independent_residual(path, "advection").min() > 0.05
    assert independent_residual(path, "sign").min() > 3 * good.max()


def test_kdv_and_ks_jitter_domains(tmp_path):
    path = generate_pde("kdv", tmp_path, num_trajectories=6, **SMALL)["file"]
    with h5py.File(path) as f:
        lengths = f["x"][:, 1] * 64
        horizons = f["t"][:, -1]
    assert np.all(np.abs(lengths / 128 - 1) <= 0.1) and np.ptp(lengths) > 0
    assert np.all(np.abs(horizons / 4.0 - 1) <= 0.1) and np.ptp(horizons) > 0


def test_chunks_resume_and_validation_errors(tmp_path):
    whole = generate_pde("ks", tmp_path / "a", num_trajectories=6, **SMALL)
    parts = [
        generate_pde("ks", tmp_path / "b", num_trajectories=6, chunk=k, num_chunks=2, **SMALL)
        for k in range(2)
    ]
    with h5py.File(whole["file"]) as f:
        u = f["u"][...]
    chunks = []
    for p in parts:
        with h5py.File(p["file"]) as f:
            chunks.append(f["u"][...])
    np.testing.assert_array_equal(u, np.concatenate(chunks))
    again = generate_pde("ks", tmp_path / "a", num_trajectories=6, **SMALL)
    assert again["skipped"]
    with h5py.File(whole["file"], "r+") as f:
        f["u"][2, 3, 5] = np.nan
        del f.attrs["coeff_names"]
    problems = validate_pde_path(tmp_path / "a")
    assert any("coeff_names" in p and whole["file"] in p for p in problems)
    with h5py.File(whole["file"], "r+") as f:
        f.attrs["coeff_names"] = "[]"
    problems = validate_pde_path(tmp_path / "a")
    assert any("non-finite" in p and "[2]" in p for p in problems)
    (tmp_path / "c.h5").write_bytes(b"junk")
    assert "not a readable HDF5" in validate_pde_path(tmp_path / "c.h5")[0]


def write_soliton_file(path, n=128, frames=60, length=40.0, c=0.8, dt=0.05):
    """A trajectory file written by hand (not our generator): exact KdV solitons."""
    x = np.arange(n) * length / n
    t = np.arange(frames) * dt
    u = []
    for shift in (10.0, 20.0, 30.0):
        xi = (x[None] - shift - c * t[:, None] + length / 2) % length - length / 2
        u.append(3 * c / np.cosh(0.5 * np.sqrt(c) * xi) ** 2)
    with h5py.File(path, "w") as f:
        f["u"] = np.stack(u)
        f["t"] = np.tile(t, (3, 1))
        f["x"] = np.tile(x, (3, 1))
        f["coeffs"] = np.zeros((3, 0))
        f["index"] = np.arange(1, 4)
        f.attrs.update(
            {
                "equation": "kdv",
                "equation_text": "u_t + u u_x + u_xxx = 0",
                "parameters": "{}",
                "generator_version": "hand",
                "coeff_names": "[]",
                "complete": True,
            }
        )
    return path


@pytest.mark.parametrize("mode", ["coords", "grid"])
def test_dataset_views_are_solutions_and_actions_follow_the_group_law(tmp_path, mode):
    path = write_soliton_file(tmp_path / "solitons.h5")
    assert validate_pde_path(path) == []
    ds = PDEWindowDataset(
        path,
        num_views=3,
        window=24,
        mode=mode,
        strengths={"boost": 0.4, "scale": 0.15, "x_shift": 5.0},
        labelled=False,  # 4 trajectories: id 0 is val, the other three train
    )
    assert len(ds) == 3
    torch.manual_seed(0)
    item = ds[0]
    assert item["views"].shape == (3, 3, 24, 128) and item["latents"].shape == (3, 5)
    eq = KdV(nx=128)
    for v in item["views"].double():
        t, x, u = v
        if mode == "grid":
            assert torch.allclose(x, x[:1].expand_as(x))
        assert relative_residual(eq, t[:, 0], x, u, torch.zeros(0)) < 2e-3
    lat = item["latents"].double()
    g = ds.group.element(lat[:, :4])
    rel = ds.action_space.relative(lat[0], lat[1]).double()
    torch.testing.assert_close(
        ds.group.element(rel), torch.linalg.inv(g[0]) @ g[1], atol=1e-5, rtol=1e-5
    )
    assert ds.action_space.relative(lat[0], lat[0]).abs().max() < 1e-6
    with pytest.raises(ValueError, match="no symmetries"):
        PDEWindowDataset(path, strengths={"rotation": 1.0})
    assert math.isfinite(float(item["views"].sum()))


def test_contact_sheet(tmp_path):
    from equissl.datasets.pde.contact_sheet import make_pde_contact_sheet

    path = generate_pde("burgers", tmp_path, num_trajectories=2, **SMALL)["file"]
    out = make_pde_contact_sheet(path, tmp_path / "sheet.png", 2)
    assert out.stat().st_size > 1000
