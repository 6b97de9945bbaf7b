"""Mialon et al. (NeurIPS 2023) Table 1 at CPU scale: Lie-symmetry VICReg pretrained on a
small Burgers and a small KdV set, then the paper's two downstream tasks, under the released
protocol; optionally a budget curve over pretraining steps.

    nice python bench/pde_ssl.py [--trajectories 120] [--steps 40] [--equations burgers,kdv]
        [--ts-epochs 10] [--ts-samples 4] [--ts-width 32] [--labelled 1.0] [--coef-epochs 30]
        [--probes coefficients,time_stepping] [--name pde_ssl_cpu] [--input-norm]
        [--budgets 0,100,400] [--work runs/pde_ssl] [--out bench/results]

Per equation: ``experiment=cpu/lie_vicreg_<eq>`` (the paper's recipe: VICReg 25/25/1,
projector 512-512-512, AdamW 3e-4, wd 1e-6, batch 32, two independently transformed 16-frame
windows, ResNet-18 on (t, x, u); LPSDA's strengths), on ``--trajectories`` trajectories
generated on 64 points and split by id 4 : 1 : 1 into pretraining, labelled (held out of
pretraining) and val (``data.val_every: 6``), pretrained ``--steps`` steps; then the
evaluation stage with two probes, as docs/protocols.md describes:

* ``coefficients`` (Burgers ν; KdV has none here): SSL + linear head vs the same ResNet-18
  and head trained from scratch vs predict-the-mean vs the head on a random encoder, the
  released protocol (Adam 7e-4, ``--coef-epochs`` epochs, 30 there, untransformed windows),
  all fitted on the labels of a ``--labelled`` share of the labelled split and tested on val;
* ``time_stepping``: LPSDA's CNN without conditioning / with the frozen first-window
  representation / with the true ν (Burgers only), LPSDA's protocol (model selected on the
  labelled split) with ``--ts-epochs`` epochs of ``--ts-samples`` random starts per
  trajectory (LPSDA: 20 epochs of 280 passes) and width ``--ts-width``.

``--budgets`` runs the whole table at each pretraining step count (0 = the untrained
encoder) and adds a budget curve: ``<name>_budget.{md,png}``, the SSL figures against the
steps beside the supervised, mean and unconditioned ones. ``--input-norm`` sets
``backbone.input_norm=true`` (the run folder gets ``_inorm``). Writes ``<out>/<name>.{md,json}``.
Resumable: data, checkpoints and results stay under ``--work``. One torch thread
(``OMP_NUM_THREADS=1``): on the shared 2-core development machine a second thread made small
convolutions ~100× slower.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402

from equissl.apps.hydra_main import _resolved, setup  # noqa: E402
from equissl.eval.evaluate import evaluate_checkpoint  # noqa: E402
from equissl.training.pretrain import pretrain  # noqa: E402

setup()  # the configs, parts and resolvers the commands register at start-up

# Mialon et al. 2023 Table 1 as recalled from the paper ([P?]:
# the paper's body could not be read; medium / low confidence).
PAPER = {
    "burgers": {
        "coef_metric": "relative error % (ν)",
        "supervised": "1.18 ± 0.07",
        "ssl": "0.97 ± 0.04",
        "ts_none": "0.110 ± 0.008",
        "ts_ssl": "0.108 ± 0.011",
    },
    "kdv": {
        "coef_metric": "NMSE (initial-condition coefficients)",
        "supervised": "0.102 ± 0.007",
        "ssl": "0.033 ± 0.004",
        "ts_none": "0.508 ± 0.102",
        "ts_ssl": "0.330 ± 0.081",
    },
}


def config_for(eq: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    overrides = [
        f"experiment=cpu/lie_vicreg_{eq}",
        f"data.root={work / f'data_{eq}'}",
        f"data.generate.num_trajectories={args.trajectories}",
        f"trainer.max_steps={args.steps}",
        f"probe=[{args.probes}]",
        "logger=csv",
    ]
    if args.input_norm:
        overrides.append("backbone.input_norm=true")
    probes = args.probes.split(",")
    if "time_stepping" in probes:
        overrides += [
            f"eval.probes.time_stepping.epochs={args.ts_epochs}",
            f"eval.probes.time_stepping.samples_per_trajectory={args.ts_samples}",
            f"eval.probes.time_stepping.width={args.ts_width}",
        ]
    if "coefficients" in probes:
        overrides += [
            f"eval.probes.coefficients.labelled_fraction={args.labelled}",
            f"eval.probes.coefficients.epochs={args.coef_epochs}",
        ]
    with initialize_config_module("equissl.configs", version_base="1.3"):
        return _resolved(compose("pretrain", overrides=overrides))


def run(eq: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Pretrain (or reuse) and evaluate (or reuse) one equation; its metrics and timings."""
    run_dir = work / f"{eq}_n{args.trajectories}_s{args.steps}{'_inorm' if args.input_norm else ''}"
    eval_dir = run_dir / (
        f"eval_{args.probes.replace(',', '+')}_ts{args.ts_epochs}x{args.ts_samples}"
        f"w{args.ts_width}_l{args.labelled:g}_ce{args.coef_epochs}"
    )
    config = config_for(eq, work, args)
    times_file = run_dir / "seconds.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    if "pretrain" not in times:
        start = time.perf_counter()
        pretrain(config, run_dir)  # generates the data first when absent
        times["pretrain"] = time.perf_counter() - start
        times_file.write_text(json.dumps(times))
    if not (eval_dir / "results.json").is_file():
        start = time.perf_counter()
        evaluate_checkpoint(
            run_dir / "checkpoints" / "last.ckpt", config["eval"], eval_dir, progress=False
        )
        times[f"eval:{eval_dir.name}"] = time.perf_counter() - start
        times_file.write_text(json.dumps(times))
    results = json.loads((eval_dir / "results.json").read_text())
    times["eval"] = times.get(f"eval:{eval_dir.name}", 0.0)
    return {"metrics": results["metrics"], "skipped": results["skipped"], "seconds": times}


def pick(metrics: dict[str, float], probe: str, key: str) -> float | None:
    """``full/<probe>/<key>`` (the lie_vicreg representation has one part, ``full``)."""
    return metrics.get(f"full/{probe}/{key}")


def labelled_text(runs: dict[str, dict[str, Any]]) -> str:
    """How many trajectories' labels the coefficient heads used, per equation with one."""
    counts = {
        eq: pick(r["metrics"], "coefficients", "labelled")
        for eq, r in runs.items()
        if pick(r["metrics"], "coefficients", "labelled") is not None
    }
    return ", ".join(f"{int(n)} ({eq})" for eq, n in counts.items()) or "all"


def fmt(v: float | None, scale: float = 1.0, digits: int = 4) -> str:
    return "—" if v is None else f"{v * scale:.{digits}g}"


def table(runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| equation | task | metric | mean | supervised | SSL + linear / + SSL | random + "
        "linear | truth | paper: supervised / none | paper: SSL |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for eq, res in runs.items():
        m, paper = res["metrics"], PAPER[eq]
        if pick(m, "coefficients", "mse") is not None:
            for key, name, scale in (
                ("rel_error", "relative error % (ν)", 100.0),
                ("mse", "MSE (ν)", 1.0),
            ):
                row = [
                    fmt(pick(m, "coefficients", k), scale)
                    for k in (f"mean_{key}", f"supervised_{key}", key, f"random_{key}")
                ]
                lines.append(
                    f"| {eq} | coefficient | {name} | "
                    + " | ".join(row)
                    + " | — "
                    + (
                        f"| {paper['supervised']} | {paper['ssl']} |"
                        if key == "rel_error"
                        else "| — | — |"
                    )
                )
        else:
            lines.append(
                f"| {eq} | coefficient | — (no coefficient varies) | — | — | — | — | — "
                f"| {paper['supervised']} | {paper['ssl']} |"
            )
        frames = pick(m, "time_stepping", "rollout_frames")
        for key, name in (
            ("nmse_1step", "NMSE one step (20 → 20 frames)"),
            ("nmse_rollout", f"NMSE rollout ({fmt(frames, digits=3)} frames)"),
        ):
            lines.append(
                f"| {eq} | time-stepping | {name} | — "
                f"| {fmt(pick(m, 'time_stepping', f'none_{key}'))} "
                f"| {fmt(pick(m, 'time_stepping', key))} | — "
                f"| {fmt(pick(m, 'time_stepping', f'oracle_{key}'))} "
                + (
                    f"| {paper['ts_none']} | {paper['ts_ssl']} |"
                    if key == "nmse_rollout"
                    else "| — | — |"
                )
            )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--equations", default="burgers,kdv")
    ap.add_argument("--trajectories", type=int, default=120, help="per equation (val: 1 in 5)")
    ap.add_argument("--steps", type=int, default=40, help="pretraining steps (batch 32)")
    ap.add_argument("--ts-epochs", type=int, default=10, help="time-stepping epochs")
    ap.add_argument("--ts-samples", type=int, default=4, help="starts per trajectory and epoch")
    ap.add_argument("--ts-width", type=int, default=32, help="time-stepping CNN width")
    ap.add_argument(
        "--labelled", type=float, default=1.0, help="share of probe-train trajectories labelled"
    )
    ap.add_argument("--coef-epochs", type=int, default=30, help="coefficient-probe epochs")
    ap.add_argument("--probes", default="coefficients,time_stepping")
    ap.add_argument("--name", default="pde_ssl_cpu", help="stem of the result files")
    ap.add_argument(
        "--input-norm", action="store_true", help="backbone.input_norm=true (standardised channels)"
    )
    ap.add_argument(
        "--budgets", default="", help="pretraining steps of a budget curve, e.g. 0,100,400"
    )
    ap.add_argument("--work", default="runs/pde_ssl")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work, out = Path(args.work).resolve(), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = {eq: run(eq, work, args) for eq in args.equations.split(",") if eq}
    wall = time.perf_counter() - start
    command = (
        f"python bench/pde_ssl.py --equations {args.equations} --trajectories "
        f"{args.trajectories} --steps {args.steps} --ts-epochs {args.ts_epochs} "
        f"--ts-samples {args.ts_samples} --ts-width {args.ts_width} --labelled "
        f"{args.labelled:g} --coef-epochs {args.coef_epochs} --probes {args.probes} "
        f"--name {args.name}" + (" --input-norm" if args.input_norm else "")
    )
    info = f"{platform.platform()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread"
    lines = [
        "# Lie-symmetry SSL for PDEs (Mialon et al. 2023, Table 1) at CPU scale",
        "",
        f"Command: `{command}`  ",
        f"Machine: {info}; wall time {wall:.0f} s (this invocation; reused runs cost nothing).",
        "",
        f"Data: {args.trajectories} trajectories per equation on 64 points (4 : 1 : 1 "
        "pretraining / labelled / val by id), LPSDA window (140 frames). Pretraining: "
        f"{args.steps} steps × batch 32 on the pretraining split; coefficient heads on the "
        f"labels of {labelled_text(runs)} labelled trajectories, {args.coef_epochs} epochs, "
        "tested on val. Columns: "
        "coefficient regression: predict-the-mean / ResNet-18 from scratch + head / frozen "
        "SSL + linear head; time-stepping: no conditioning / + SSL representation of the "
        "first 16 frames / + true ν. Paper columns: its Table 1 as recalled "
        "from the paper (unverified), at 10k trajectories, nx 256, 100 epochs; its 1-D "
        "time-stepping NMSE is LPSDA's (summed over the rolled-out frames, ours averaged).",
        "",
        *table(runs),
        "",
        "Seconds: "
        + ", ".join(
            f"{eq} pretrain {r['seconds'].get('pretrain', 0):.0f}, "
            f"eval {r['seconds'].get('eval', 0):.0f}"
            for eq, r in runs.items()
        ),
    ]
    skipped = {eq: r["skipped"] for eq, r in runs.items() if r["skipped"]}
    if skipped:
        lines += ["", "Skipped: " + json.dumps(skipped)]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.md").write_text(text)
    (out / f"{args.name}.json").write_text(
        json.dumps({"command": command, "machine": info, "wall_s": wall, "runs": runs}, indent=1)
    )
    print(text)
    budgets = [int(b) for b in args.budgets.split(",") if b]
    if budgets:
        curve = {b: {eq: run(eq, work, argparse.Namespace(**{**vars(args), "steps": b}))
                     for eq in runs} for b in budgets}  # fmt: skip
        curve_text = budget_table(curve, f"{command} --budgets {args.budgets}", info)
        (out / f"{args.name}_budget.md").write_text(curve_text)
        plot_budget(curve, out / f"{args.name}_budget.png")
        print(curve_text)


#: (probe, metric, label) of the budget curve: the SSL figure first, then its references
CURVE = (
    ("coefficients", "rel_error", "ν relative error (SSL + linear)"),
    ("coefficients", "supervised_rel_error", "supervised"),
    ("coefficients", "random_rel_error", "random encoder + linear"),
    ("coefficients", "mean_rel_error", "predict the mean"),
    ("time_stepping", "nmse_rollout", "rollout NMSE (+ SSL)"),
    ("time_stepping", "none_nmse_rollout", "no conditioning"),
    ("time_stepping", "oracle_nmse_rollout", "+ true ν"),
)


def budget_table(curve: dict[int, dict[str, dict[str, Any]]], command: str, info: str) -> str:
    """Markdown: one row per (equation, pretraining steps), one column per :data:`CURVE`."""
    head = "| equation | pretraining steps | " + " | ".join(c[2] for c in CURVE) + " |"
    lines = [
        "# Lie-symmetry SSL for PDEs: budget curve",
        "",
        f"Command: `{command}`  ",
        f"Machine: {info}. Lower is better in every column; the SSL columns are the ones that",
        "move with the pretraining budget (0 steps = the untrained encoder).",
        "",
        head,
        "|---|---|" + "---|" * len(CURVE),
    ]
    for b, runs in curve.items():
        for eq, r in runs.items():
            cells = [fmt(pick(r["metrics"], probe, key)) for probe, key, _ in CURVE]
            lines.append(f"| {eq} | {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_budget(curve: dict[int, dict[str, dict[str, Any]]], path: Path) -> None:
    """Per equation and task, each :data:`CURVE` column against the pretraining steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(curve)
    equations = list(curve[steps[0]])
    fig, axes = plt.subplots(len(equations), 2, figsize=(10, 3.4 * len(equations)), squeeze=False)
    for row, eq in enumerate(equations):
        for col, probe in enumerate(("coefficients", "time_stepping")):
            ax = axes[row][col]
            for p, key, label in CURVE:
                ys = [pick(curve[b][eq]["metrics"], p, key) for b in steps]
                if p == probe and any(y is not None for y in ys):
                    style = "o-" if key in ("rel_error", "nmse_rollout") else "--"
                    ax.plot(steps, [float("nan") if y is None else y for y in ys], style,
                            label=label)  # fmt: skip
            ax.set_title(f"{eq}: {probe.replace('_', '-')} (↓ better)", fontsize=9)
            ax.set_xlabel("pretraining steps")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
