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
    """Plot ``u(t, x)`` of the first trajectories of a file as space-time images."""
    with h5py.File(path, "r") as f:
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


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) < 2:
        raise SystemExit(__doc__)
    make_pde_contact_sheet(a[0], a[1], *(int(v) for v in a[2:3]))
