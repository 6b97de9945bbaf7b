"""Space-time contact sheets of PDE trajectory files.

python -m equissl.datasets.pde.contact_sheet FILE.h5 OUT.png [trajectories]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def make_pde_contact_sheet(path: str | Path, out_png: str | Path, trajectories: int = 4) -> Path:
    """Plot ``u(t, x)`` of the first trajectories of a file as space-time images (2-D data:
    the smoke field at six times, one row per trajectory)."""
    with h5py.File(path, "r") as f:
        if f["u"].ndim == 5:
            return _frames_sheet(f, Path(out_png), trajectories)
        n = min(trajectories, f["u"].shape[0])
        u, t, x, c = (f[k][:n] for k in ("u", "t", "x", "coeffs"))
        names = json.loads(f.attrs["coeff_names"])
        title = f"{f.attrs['equation']}: {f.attrs['equation_text']}"
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    for i, ax in enumerate(axes[0]):
        extent = (x[i, 0], x[i, -1], t[i, -1], t[i, 0])
        im = ax.imshow(u[i], aspect="auto", extent=extent, cmap="RdBu_r")
        label = ", ".join(f"{k}={v:.3g}" for k, v in zip(names, c[i], strict=True))
        ax.set_title(f"#{i} L={x[i, 1] * len(x[i]):.1f} {label}", fontsize=8)
        ax.set_xlabel("x")
        if i == 0:
            ax.set_ylabel("t")
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def _frames_sheet(f: h5py.File, out_png: Path, trajectories: int) -> Path:
    n = min(trajectories, f["u"].shape[0])
    frames = f["u"].shape[1]
    picks = [round(i * (frames - 1) / 5) for i in range(6)]
    fig, axes = plt.subplots(n, 6, figsize=(12, 2.1 * n), squeeze=False)
    names = json.loads(f.attrs["coeff_names"])
    for i in range(n):
        label = ", ".join(f"{k}={v:.3g}" for k, v in zip(names, f["coeffs"][i], strict=True))
        for j, fr in enumerate(picks):
            ax = axes[i, j]
            ax.imshow(f["u"][i, fr, 0].T, origin="lower", cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t={f['t'][i, fr]:.1f}" + (f"  {label}" if j == 0 else ""), fontsize=8)
    fig.suptitle(f"{f.attrs['equation']}: smoke density s (y up)", fontsize=10)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) < 2:
        raise SystemExit(__doc__)
    make_pde_contact_sheet(a[0], a[1], *(int(v) for v in a[2:3]))
