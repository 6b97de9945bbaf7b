"""LPSDA's time window: the stored grid, its metadata, and an independent re-integration.

LPSDA (``generate/generate_data.py``) solves on ``t = np.linspace(0, T, nt)`` with
``nt = 250`` (KdV), 500 (KS), 180 (Burgers; README commands) and stores ``t[-140:]``.
"""

import json

import h5py
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from equissl.datasets.pde import generate_pde
from equissl.datasets.pde.equations import EQUATIONS
from equissl.datasets.pde.generate import _trajectory_inputs
from equissl.datasets.pde.storage import check_pde_files, file_time_window

LPSDA_NT = {"kdv": 250, "ks": 500, "burgers": 180}
# first stored time / T and dt for T = 100 (KdV, KS) and 18 (Burgers), from the grid above
LPSDA_FIRST_DT = {
    "kdv": (110 / 249, 100 / 249),
    "ks": (360 / 499, 100 / 499),
    "burgers": (40 / 179, 18 / 179),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Small FFT batches: a second intra-op thread only contends on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def read(path):
    with h5py.File(path) as f:
        return {k: f[k][...] for k in ("u", "t", "x", "coeffs")}, dict(f.attrs)


@pytest.mark.parametrize("equation", ["kdv", "ks", "burgers"])
def test_lpsda_grid_numbers(equation):
    """At the default T: the first stored time, dt and the last time of LPSDA's runs."""
    eq = EQUATIONS.get(equation)()
    assert (eq.time_window, eq.nt, eq.nt_grid) == ("lpsda", 140, LPSDA_NT[equation])
    horizon = 18.0 if equation == "burgers" else 100.0
    t = eq.stored_times(torch.tensor([horizon], dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(t, np.linspace(0, horizon, LPSDA_NT[equation])[-140:], rtol=1e-13)
    first, dt = LPSDA_FIRST_DT[equation]
    np.testing.assert_allclose([t[0], t[1] - t[0], t[-1]], [first * horizon, dt, horizon])
    expected = {"kdv": (44.18, 0.402), "ks": (72.14, 0.200), "burgers": (4.02, 0.101)}
    np.testing.assert_allclose([t[0], t[1] - t[0]], expected[equation], atol=0.005)


@pytest.mark.parametrize("equation", ["kdv", "ks", "burgers"])
def test_default_window_is_lpsdas_last_140_steps(tmp_path, equation):
    nominal = 2.0 if equation == "burgers" else 10.0  # short horizons keep the test fast
    info = generate_pde(
        equation, tmp_path, num_trajectories=3, nx=64, horizon=nominal, progress=False
    )
    data, attrs = read(info["file"])
    t = data["t"]
    horizon = t[:, -1]  # the last stored step is T itself
    assert t.shape == (3, 140) and data["u"].shape == (3, 140, 64)
    assert np.all(np.abs(horizon / nominal - 1) <= 0.1 + 1e-12)
    for i in range(3):
        np.testing.assert_allclose(
            t[i], np.linspace(0, horizon[i], LPSDA_NT[equation])[-140:], rtol=1e-13, atol=1e-12
        )
    first, dt = LPSDA_FIRST_DT[equation]
    np.testing.assert_allclose(t[:, 0] / horizon, first, rtol=1e-12)
    step = np.diff(t, axis=1) / horizon[:, None]
    np.testing.assert_allclose(step, dt / (18.0 if equation == "burgers" else 100.0), rtol=1e-9)
    assert attrs["time_window"] == "lpsda"
    params = json.loads(attrs["parameters"])
    assert params["time_window"] == "lpsda" and params["nt_grid"] == LPSDA_NT[equation]
    assert params["nt"] == 140


def test_full_window_is_the_old_grid_and_windows_do_not_mix(tmp_path):
    small = {"num_trajectories": 2, "nx": 32, "horizon": 4.0, "progress": False}
    full = generate_pde("kdv", tmp_path / "full", time_window="full", **small)["file"]
    data, attrs = read(full)
    for i in range(2):
        np.testing.assert_allclose(data["t"][i], np.linspace(0, data["t"][i, -1], 140))
    assert attrs["time_window"] == "full" and file_time_window(full) == "full"
    assert json.loads(attrs["parameters"])["time_window"] == "full"
    lpsda = generate_pde("kdv", tmp_path / "lpsda", **small)["file"]
    assert file_time_window(lpsda) == "lpsda"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.h5").write_bytes(open(full, "rb").read())
    with h5py.File(lpsda) as f, h5py.File(mixed / "b.h5", "w") as g:
        for key in f:
            g[key] = f[key][...]
        g.attrs.update(dict(f.attrs))
        g["index"][...] = g["index"][...] + 100
    problems = check_pde_files(sorted(mixed.glob("*.h5")))
    assert any("time windows" in p for p in problems), problems
    with pytest.raises(ValueError, match="time_window"):
        generate_pde("kdv", tmp_path / "bad", time_window="last", **small)


def test_manifest_records_the_time_window(tmp_path):
    from equissl.datasets.pde_windows import PDEWindows

    small = {"num_trajectories": 5, "nx": 32, "horizon": 4.0, "progress": False}
    generate_pde("kdv", tmp_path / "a", **small)
    generate_pde("kdv", tmp_path / "b", time_window="full", **small)
    for name, window in (("a", "lpsda"), ("b", "full")):
        ds = PDEWindows(root=tmp_path / name, split="train", num_views=2, window=16)
        ds.root = tmp_path / name
        assert any(f"time_window={window}" in line for line in ds.manifest())


def mol_rhs(equation, length, n, nu=0.0):
    """numpy method of lines: spectral x-derivatives, advection dealiased by the 2/3 rule."""
    k = 2 * np.pi * np.fft.rfftfreq(n, d=length / n)
    keep = np.arange(n // 2 + 1) < n / 3
    linear = {"kdv": 1j * k**3, "ks": k**2 - k**4, "burgers": -nu * k**2}[equation]
    if equation == "burgers":
        keep = np.ones_like(keep)  # resolved here; the exact solution is not truncated

    def rhs(_t, u):
        v = np.fft.rfft(u)
        w = np.fft.irfft(v * keep, n)
        return np.fft.irfft(linear * v - 0.5j * k * np.fft.rfft(w * w) * keep, n)

    return rhs


# equation -> (generation overrides, tolerance on max |ours − Radau| / max |u|)
REINTEGRATION = {
    "kdv": ({"nx": 32}, 1e-7),
    "ks": ({"nx": 64, "horizon": 30.0}, 1e-7),
    "burgers": ({"nx": 64, "cole_hopf_scale": 1.0, "nu_range": (0.05, 0.1)}, 1e-7),
}


@pytest.mark.parametrize("equation", ["kdv", "ks", "burgers"])
def test_stored_trajectories_match_an_independent_reintegration(tmp_path, equation):
    """scipy Radau (rtol = atol = 1e-10) on a numpy pseudo-spectral method of lines, from
    the initial condition (re-drawn by the generator's seeded sampler) at t = 0 on LPSDA's
    grid, compared on the 140 stored steps. KS runs to T = 30 ± 10 %: it is chaotic, and
    over T = 100 any two integrators part by far more than their tolerances. Burgers is
    resolved at nx = 64 (scale 1, ν ≥ 0.05), so the sampled Cole–Hopf solution and the
    method of lines agree to the time-integration tolerance."""
    overrides, tol = REINTEGRATION[equation]
    info = generate_pde(equation, tmp_path, num_trajectories=2, seed=3, progress=False, **overrides)
    data, attrs = read(info["file"])
    eq = EQUATIONS.get(equation)(**{k: v for k, v in overrides.items() if k in ("nx", "horizon")})
    eq.params = {**eq.params, **{k: v for k, v in overrides.items() if k not in ("nx", "horizon")}}
    inputs = _trajectory_inputs(eq, 3, range(2))
    n, points = eq.nx, LPSDA_NT[equation]
    for i in range(2):
        length = float(inputs["length"][i])
        horizon = float(inputs["horizon"][i])
        u0 = inputs["u0"][i].numpy()
        nu = float(data["coeffs"][i, 0]) if equation == "burgers" else 0.0
        if equation == "burgers":  # u(0) = −2ν ∂ₓ log ψ₀, ψ₀ the rescaled exponential
            scale = overrides["cole_hopf_scale"]
            k = 2 * np.pi * np.fft.rfftfreq(n, d=length / n)
            du0 = np.fft.irfft(1j * k * np.fft.rfft(u0), n)
            u0 = -2 * nu * 2 * scale * du0 / np.ptp(u0)
        t_grid = np.linspace(0, horizon, points)
        sol = solve_ivp(
            mol_rhs(equation, length, n, nu), (0, horizon), u0, method="Radau",
            t_eval=t_grid, rtol=1e-10, atol=1e-10,
        )  # fmt: skip
        assert sol.success
        np.testing.assert_allclose(data["t"][i], t_grid[-140:], rtol=1e-13)
        np.testing.assert_allclose(data["x"][i], np.arange(n) * length / n, rtol=1e-13)
        ref = sol.y.T[-140:]
        err = np.abs(data["u"][i] - ref).max() / np.abs(ref).max()
        assert err < tol, (equation, i, err)
        # the transient is not stored: the file's first frame is not the initial state
        assert np.abs(data["u"][i, 0] - u0).max() > 100 * tol * np.abs(u0).max()
