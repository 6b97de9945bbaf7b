"""The quickstart's run-to-run spread: ``experiment=quickstart`` over several seeds and thread
counts, each in its own run folder, then a table of the headline metrics per run with mean ±
sample std, the constant-predictor floor, and the per-run margin the quickstart exists to
show (SIE's equivariant part over its invariant part on relative rotation).

    python bench/quickstart_spread.py --work runs/qs --seeds 0,1,2,3,4 --threads 1 \\
        --also 0:2 --parallel 2 --out bench/results/quickstart_spread_cpu.md
    python bench/quickstart_spread.py ... --override method.weights.invariance=10   # a variant
    python bench/quickstart_spread.py --work runs/qs --collect --out ...   # tabulate only

Runs share ``<work>/data/quickstart`` (rendered once, first). ``--parallel 2`` runs two at a
time (use one thread each on a 2-core machine). Every figure is read from the runs'
``eval/results.json``; nothing is recomputed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

METRICS = (
    ("equi", "rotation/r2_global"),
    ("inv", "rotation/r2_global"),
    ("full", "rotation/r2_global"),
    ("full", "rotation/constant_r2_global"),
    ("full", "classification/top1"),
    ("inv", "classification/top1"),
    ("equi", "color/r2_global"),
    ("equi", "predictor/mrr"),
)
SCRIPT = Path(sys.executable).parent / "equissl-pretrain"


def run(work: Path, seed: int, threads: int, overrides: tuple[str, ...] = ()) -> float:
    """One quickstart run in ``<work>/outputs/seed<s>_t<n>`` (``overrides`` appended to the
    command line); returns its wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    name = f"seed{seed}_t{threads}"
    start = time.perf_counter()
    with open(work / f"{name}.log", "w") as log:
        subprocess.run(
            [
                str(SCRIPT),
                "experiment=quickstart",
                f"seed={seed}",
                "trainer.enable_progress_bar=false",
                f"hydra.run.dir=outputs/{name}",
                *overrides,
            ],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return time.perf_counter() - start


def collect(work: Path) -> tuple[list[tuple[str, dict[str, float]]], str]:
    """The runs' headline metrics, and the recipe they share in words (from their configs)."""
    rows, recipes = [], set()
    for folder in sorted((work / "outputs").glob("seed*_t*")):
        results = folder / "eval" / "results.json"
        if results.is_file():
            saved = json.loads(results.read_text())
            metrics, config = saved["metrics"], saved["config"]
            rows.append((folder.name, {f"{p}/{m}": metrics[f"{p}/{m}"] for p, m in METRICS}))
            recipes.add(
                f"{config['trainer']['max_steps']} steps at {config['data']['image_size']} px, "
                f"{config['backbone']['name']}"
            )
    return rows, " / ".join(sorted(recipes))


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    keys = [f"{p}/{m}" for p, m in METRICS]
    lines = [
        "| run | " + " | ".join(keys) + " | equi − inv rotation |",
        "|---" * (len(keys) + 2) + "|",
    ]
    margins = []
    for name, r in rows:
        margin = r["equi/rotation/r2_global"] - r["inv/rotation/r2_global"]
        margins.append(margin)
        lines.append(
            f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + f" | {margin:+.3f} |"
        )
    if len(rows) > 1:
        cells = []
        for k in keys:
            vals = [r[k] for _, r in rows]
            cells.append(f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}")
        m = f"{statistics.mean(margins):+.3f} ± {statistics.stdev(margins):.3f}"
        lines.append(f"| mean ± std ({len(rows)} runs) | " + " | ".join(cells) + f" | {m} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="runs and data go here")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--threads", type=int, default=1, help="threads per seeded run")
    parser.add_argument("--also", default="", help="more seed:threads runs, e.g. 0:2")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--collect", action="store_true", help="only tabulate existing runs")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument(
        "--override", action="append", default=[], help="extra key=value for every run"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.collect:
        jobs = [(int(s), args.threads) for s in args.seeds.split(",") if s]
        jobs += [tuple(int(x) for x in j.split(":")) for j in args.also.split(",") if j]
        extra = tuple(args.override)
        run(args.work, jobs[0][0], jobs[0][1], extra)  # renders the data once
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda j: run(args.work, *j, extra), jobs[1:]))
    rows, recipe = collect(args.work)
    text = (
        f"# Quickstart spread (`experiment=quickstart`, SIE, {recipe})\n\n"
        f"{len(rows)} runs from `{args.work}`; each row one run (seed, threads). The floor "
        "is the rotation probe's constant predictor (train-set mean relative quaternion).\n\n"
        + table(rows)
        + "\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
