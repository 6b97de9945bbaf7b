"""Is Burgers ν in the data, and in the frozen representation? Closed-form ridge readouts
beside ``bench/pde_ssl.py``'s coefficient probe.

    python bench/pde_nu_readout.py --run runs/pde_ssl/burgers_n1024_s400 [--random-init]
        [--out bench/results/pde_nu_readout.md]

On the probe-train / val trajectories of a ``bench/pde_ssl.py`` run (its data and cached
evaluation features), with all or 10 % of the probe-train labels, a ridge regression of
log ν (intercept not penalised, inputs standardised, the best of λ ∈ {1, …, 1e4} on val:
an optimistic readout) from

* ``spectrum``: the time-averaged log power spectrum of one random untransformed 16-frame
  window of u per trajectory (hand-made features: viscosity shows in the high-wavenumber tail);
* ``spectrum (views)``: the same of the u channel of the very evaluation views the encoder
  saw (symmetry-transformed windows, 8 per trajectory);
* ``ssl``: the run's cached features ``[N, 8 views, 512]`` (one row per view);
* ``random``: the same encoder re-initialised (``--random-init``), on the same views, and
  on them with every input channel standardised (the coordinate channels t ≈ 11 ± 4 and
  x ≈ 3 ± 3 dwarf u ≈ 0 ± 0.06 in the raw views).

Reports the relative error ``|ν̂ − ν| / ν`` beside predict-the-(geometric-)mean.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from equissl.apps.hydra_main import setup  # noqa: E402
from equissl.eval.evaluate import eval_datasets  # noqa: E402
from equissl.eval.features import load_features  # noqa: E402
from equissl.ssl.loading import load_method  # noqa: E402

setup()  # the configs, parts and resolvers the commands register at start-up

LAMBDAS = (1.0, 10.0, 100.0, 1e3, 1e4)


def ridge_rel_error(xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray) -> float:
    """Best-λ relative error of ν from a ridge fit of log ν: ``x [N, D]``, ``y [N]``."""
    mu, sd, ym = xt.mean(0), xt.std(0) + 1e-9, np.log(yt).mean()
    zt, zv = (xt - mu) / sd, (xv - mu) / sd
    best = np.inf
    for lam in LAMBDAS:
        w = np.linalg.solve(zt.T @ zt + lam * np.eye(zt.shape[1]), zt.T @ (np.log(yt) - ym))
        best = min(best, float(np.mean(np.abs(np.exp(zv @ w + ym) - yv) / yv)))
    return best


def spectrum_features(ds, seed: int) -> np.ndarray:
    """``[N, X/2+1]`` time-averaged log power spectra of one random 16-frame window each."""
    u = ds.u.numpy() if isinstance(ds.u, torch.Tensor) else np.asarray(ds.u)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, u.shape[1] - ds.window + 1, len(u))
    win = np.stack([u[i, s : s + ds.window] for i, s in enumerate(starts)])
    return np.log(np.abs(np.fft.rfft(win, axis=-1)) ** 2 + 1e-12).mean(1)


def view_spectra(ds, views: int, seed: int) -> np.ndarray:
    """``[N, V, X/2+1]`` spectra as :func:`spectrum_features` of the u channel of the split's
    evaluation views (the encoder's input, ``[3, T, X]`` each)."""
    items = ds.evaluation_views(views, seed)
    u = torch.stack([items[i]["views"][0, 2] for i in range(len(items))]).double().numpy()
    spec = np.log(np.abs(np.fft.rfft(u, axis=-1)) ** 2 + 1e-12).mean(1)
    return spec.reshape(len(ds), views, -1)


@torch.inference_mode()
def random_init_features(run: Path, standardise: bool) -> dict[str, np.ndarray]:
    """Evaluation features ``[N, V, D]`` of the run's encoder re-initialised (seed 0), on the
    same views; with ``standardise`` each input channel (t, x, u) is first scaled to zero
    mean and unit variance by statistics of the first 512 probe-train views."""
    method, meta = load_method(run / "checkpoints" / "last.ckpt")
    torch.manual_seed(0)
    for module in method.modules():
        if module is not method and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    method.eval()
    _, splits = eval_datasets(meta)
    seed, views = int(meta["config"]["eval"]["seed"]), 8
    items = {role: splits[role].evaluation_views(views, seed) for role in splits}
    mean, std = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    if standardise:
        sample = torch.stack([items["train"][i]["views"][0] for i in range(512)])
        mean = sample.mean((0, 2, 3))[:, None, None]
        std = sample.std((0, 2, 3))[:, None, None]
    out = {}
    for role, ds in items.items():
        loader = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=False)
        reps = [method.represent((b["views"][:, 0] - mean) / std)["full"] for b in loader]
        out[role] = torch.cat(reps).reshape(len(splits[role]), views, -1).double().numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run", required=True, help="a bench/pde_ssl.py run folder")
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--out", default="bench/results/pde_nu_readout.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run)
    cached = {
        role: load_features(next((run / "features").glob(f"{role}_*"))) for role in ("train", "val")
    }
    yt, yv = (cached[r].coeffs[:, 0].double().numpy() for r in ("train", "val"))
    meta = load_method(run / "checkpoints" / "last.ckpt")[1]
    _, splits = eval_datasets(meta)
    seed, views = int(meta["config"]["eval"]["seed"]), cached["train"].part("full").shape[1]
    sources = {
        "spectrum": {r: spectrum_features(splits[r], i)[:, None] for i, r in enumerate(cached)},
        "spectrum (views)": {r: view_spectra(splits[r], views, seed) for r in cached},
        "ssl": {r: cached[r].part("full").double().numpy() for r in cached},
    }
    if args.random_init:
        sources["random"] = random_init_features(run, standardise=False)
        sources["random, channels standardised"] = random_init_features(run, standardise=True)
    rng = np.random.default_rng(0)
    n = len(yt)
    rows = []
    for frac in (0.1, 1.0):
        keep = np.sort(rng.permutation(n)[: max(2, round(frac * n))])
        cells = []
        for feats in sources.values():
            xt, xv = feats["train"][keep], feats["val"]
            v_t, v_v = xt.shape[1], xv.shape[1]
            cells.append(
                ridge_rel_error(
                    xt.reshape(-1, xt.shape[-1]).astype(np.float64),
                    np.repeat(yt[keep], v_t),
                    xv.reshape(-1, xv.shape[-1]).astype(np.float64),
                    np.repeat(yv, v_v),
                )
            )
        mean = np.mean(np.abs(yt[keep].mean() - yv) / yv)
        geo = np.mean(np.abs(np.exp(np.log(yt[keep]).mean()) - yv) / yv)
        rows.append(
            f"| {len(keep)} | " + " | ".join(f"{100 * c:.1f}" for c in cells)
            + f" | {100 * mean:.1f} | {100 * geo:.1f} |"
        )  # fmt: skip
    command = f"python bench/pde_nu_readout.py --run {args.run}" + (
        " --random-init" if args.random_init else ""
    )
    text = "\n".join(
        [
            "# Burgers ν: ridge readouts of log ν (relative error %, val trajectories)",
            "",
            f"Command: `{command}`  ",
            f"Run: `{run.name}` ({n} probe-train, {len(yv)} val trajectories).",
            "",
            "| labelled | " + " | ".join(sources) + " | mean | geometric mean |",
            "|---" * (len(sources) + 3) + "|",
            *rows,
            "",
        ]
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
