"""How strongly the Navier–Stokes recipe's augmentation moves a view: the exact quadratic
boosts against the released code's (``data.generators``), at the recipe's strengths.

For windows of generated trajectories (the default grid, 56 frames 1.5 apart, t ∈ [0, 82.5])
this draws the recipe's transformations (``experiment=lie_vicreg_ns``: its strengths and
Strang composition) as pretraining does, applies each to a window and to the same window
untransformed, and prints the change of every channel — the velocity in flow units beside
the flow's own rms, the coordinates in domain units beside the domain's width — for both
generator sets:

    python bench/pde_ns_augmentation.py --out bench/results/pde_ns_augmentation_cpu.md

``generators=exact`` applies ``x → x + εt², v → v + 2εt``; ``released`` applies what the
public code's no-pressure path does (a second linear boost in x; ``y + εt², v_y + ε``).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from equissl.datasets.pde import PDEWindowDataset, generate_pde

RECIPE = Path(__file__).resolve().parents[1] / "configs/experiment/lie_vicreg_ns.yaml"
CHANNELS = ("t", "x", "y", "vx", "vy")


def changes(ds: PDEWindowDataset, draws: int, seed: int) -> dict[str, torch.Tensor]:
    """``{channel: [draws] max |change| over a window}`` and the untransformed windows'
    velocity rms (``"rms_v"``), for ``draws`` windows of random trajectories, start frames
    and strengths (each strength uniform in ``±max``, as pretraining draws them)."""
    gen = torch.Generator().manual_seed(seed)
    frames = ds.u.shape[1]
    out: dict[str, list[float]] = {c: [] for c in (*CHANNELS, "rms_v")}
    for _ in range(draws):
        i = int(torch.randint(len(ds), (1,), generator=gen))
        start = int(torch.randint(frames - ds.window + 1, (1,), generator=gen))
        eps = (2 * torch.rand(ds.group.dim, generator=gen, dtype=torch.float64) - 1) * (
            ds.max_strength
        )
        moved = ds.view(i, start, eps)
        plain = ds.view(i, start, torch.zeros_like(eps))
        for c, name in enumerate(CHANNELS):
            out[name].append(float((moved[c] - plain[c]).abs().max()))
        out["rms_v"].append(float(plain[3:5].pow(2).sum(0).mean().sqrt()))
    return {k: torch.tensor(v) for k, v in out.items()}


def table(results: dict[str, dict[str, torch.Tensor]], width: float) -> str:
    lines = [
        "| generators | channel | median max change | 95th pct | largest | in units of |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        rms = float(r["rms_v"].median())
        for c in ("vx", "vy", "x", "y"):
            q = torch.quantile(r[c], torch.tensor([0.5, 0.95], dtype=r[c].dtype))
            unit = f"flow rms {rms:.2f}" if c.startswith("v") else f"domain width {width:g}"
            lines.append(
                f"| {name} | {c} | {q[0]:.3g} | {q[1]:.3g} | {float(r[c].max()):.3g} | {unit} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trajectories", type=int, default=4)
    parser.add_argument("--nx", type=int, default=32, help="grid (the CPU default 32)")
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()
    recipe = OmegaConf.to_container(OmegaConf.load(RECIPE))["data"]
    strengths, composition = recipe["strengths"], "strang"  # lie_vicreg_paper_base: strang
    with tempfile.TemporaryDirectory() as tmp:
        generate_pde("ns", tmp, num_trajectories=args.trajectories, nx=args.nx, progress=False)
        results, width = {}, 0.0
        for generators in ("exact", "released"):
            ds = PDEWindowDataset(
                tmp,
                split="train",
                window=16,
                strengths=strengths,
                composition=composition,
                generators=generators,
                val_every=10**6,
                labelled=False,
            )
            width = float(ds.x[0, -1] - ds.x[0, 0] + (ds.x[0, 1] - ds.x[0, 0]))
            results[generators] = changes(ds, args.draws, args.seed)
        t_max = float(ds.t.max())
    text = (
        "# Navier–Stokes augmentation: exact against released quadratic boosts\n\n"
        f"`python bench/pde_ns_augmentation.py` ({args.trajectories} generated trajectories, "
        f"{args.nx} × {args.nx} grid, t up to {t_max:g}; {args.draws} windows of 16 frames, "
        "each transformed as pretraining draws it and compared with itself untransformed); "
        f"strengths of `experiment=lie_vicreg_ns`: {strengths}, Strang composition; "
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores. Each figure is a "
        "window's largest absolute change of the channel.\n\n" + table(results, width) + "\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
