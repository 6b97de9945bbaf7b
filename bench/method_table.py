"""The SIE paper's method table at CPU scale: every method's classification top-1 and
rotation R² (``r2_global``, ``r2_sklearn``) per part of its representation, against an
untrained backbone, a constant predictor (the train-set mean relative quaternion) and
chance / majority-class top-1 — all with the same data, backbone, batch and budget.

    python bench/method_table.py [--steps 1800 | --steps 600,1800] [--seeds 0,1]
        [--methods sie,vicreg,...] [--name method_table_cpu] [--finished-only]
        [--probe-epochs N] [--work runs/method_table] [--out bench/results] [key=value ...]

Runs: ``experiment=cpu/<method>_3diebench`` for each method — the SIE paper's recipe of that
method (its loss weights, projector widths, Adam 1e-3, wd 1e-6, constant lr) on the
quickstart's render (10 classes × 40 objects, 8 views, 64 px), timm's ResNet-18, batch 64,
one CPU process (``configs/experiment/cpu/cpu_base.yaml``). That base, not
``experiment=quickstart method=<m>``, because quickstart's ``method.projector`` (SIE's
small-batch width) would be forced on every method, and the method schemas' defaults are not
all the paper's values; the CPU recipes differ from one another only in the method, and
their data and training settings are the quickstart's. The floor row is the untrained
backbone (``experiment=cpu/vicreg_3diebench trainer.max_steps=0``, one per seed). Every run
is then evaluated by the evaluation stage (classification + rotation probes, SIE protocol:
300 epochs unless ``--probe-epochs``). Extra ``key=value`` arguments are Hydra overrides for
every run (they go into the run directories' names).

Writes ``<out>/<name>.{md,json,png}`` (``--name``, default ``method_table_cpu``) and a copy
of the table and PNG into ``--docs`` (default ``docs``; ``--docs ''`` skips it).
Resumable: each (method, seed, steps) run keeps its checkpoint, pretraining time and
``results.json`` under ``--work``; a rerun reuses what is finished and continues an
interrupted pretraining from its ``last.ckpt``; ``--finished-only`` tabulates what is
finished so far (and names what is not) without training. Several ``--steps`` give one
table per budget and a budget-curve table; a longer budget continues the final checkpoint of
the longest finished shorter one where the recipe has a constant lr and no EMA target (the
same run then: :func:`budget_free`), and its pretraining time counts both.

Duration on the 2-core CPU development machine: SIE and VICReg take 0.9 s per step at batch
64 (bench/results/learning_cpu.md); in a batch-64 smoke (2 vs 6 steps) the other methods cost
1.0-1.9× SIE per step (EquiMod, SEN, SIEOnlyEqui slowest), i.e. ~15 SIE-equivalents per step
of the whole table: 1800 steps × 2 seeds × 15 × 0.9 s ≈ 13.5 h, plus ~2 min of probes per
run: about 15 hours in all. Smoke check (minutes):

    python bench/method_table.py --steps 4 --seeds 0 --probe-epochs 2 --work /tmp/mt/work \\
        --out /tmp/mt/out --docs '' data.root=/tmp/mt/data data.generate.objects_per_class=6 \\
        data.generate.spp=2 data.batch_size=16 data.global_batch_size=16
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402
from learning_sie_vs_vicreg import ROTATION  # noqa: E402

from equissl.apps.hydra_main import _resolved, setup  # noqa: E402
from equissl.atomic import atomic_open, atomic_write_text  # noqa: E402
from equissl.datasets.base import build_dataset  # noqa: E402
from equissl.eval.evaluate import evaluate_checkpoint, resolve_device  # noqa: E402
from equissl.eval.plots import PART_ORDER  # noqa: E402
from equissl.registries import METHODS as METHOD_REGISTRY  # noqa: E402
from equissl.ssl import SSLMethod  # noqa: E402
from equissl.training.pretrain import pretrain  # noqa: E402

setup()  # the configs, parts and resolvers the commands register at start-up

METHODS = (
    "vicreg",
    "simclr",
    "sie",
    "sie_novar",
    "sie_onlyequi",
    "sie_rotcolor",
    "vicreg_partinv",
    "simclr_augself",
    "equimod_vicreg",
    "equimod_simclr",
    "sen",
    "equicaps_3x3",
    "seq_jepa",
)
UNTRAINED = "untrained"  # the floor run: VICReg's recipe at step 0
TOP1 = "classification/top1"
INVARIANCE, EQUIVARIANCE = "diagnostics/invariance", "diagnostics/equivariance"
COLUMNS = (TOP1, ROTATION, "rotation/r2_sklearn", INVARIANCE, EQUIVARIANCE)
STEM = "method_table_cpu"


def recipe(method: str) -> str:
    return f"experiment=cpu/{'vicreg' if method == UNTRAINED else method}_3diebench"


def config_for(method: str, seed: int, steps: int, extra: list[str]) -> dict[str, Any]:
    """The resolved pretraining config of one run of the table."""
    # last.ckpt every 10 epochs (50 steps), as experiment=quickstart; not in the results
    overrides = [recipe(method), "checkpoint.every_n_epochs=10", *extra]
    overrides += [f"seed={seed}", f"trainer.max_steps={steps}"]
    with initialize_config_module("equissl.configs", version_base="1.3"):
        return _resolved(compose("pretrain", overrides=overrides))


def set_probe_epochs(config: dict[str, Any], epochs: int | None) -> dict[str, Any]:
    """The config's ``eval`` section with every probe's ``epochs`` set (``None``: as is)."""
    eval_cfg = json.loads(json.dumps(config["eval"]))
    if epochs is not None:
        for pcfg in eval_cfg["probes"].values():
            pcfg["epochs"] = int(epochs)
    return eval_cfg


def overrides_tag(extra: list[str]) -> str:
    return hashlib.sha1("\n".join(extra).encode()).hexdigest()[:8]


def run_name(method: str, seed: int, steps: int | str, extra: list[str]) -> str:
    """The run directory's name (``steps="*"``: the glob of every budget of that run)."""
    return f"{method}_seed{seed}_steps{steps}_{overrides_tag(extra)}"


def run_paths(
    work: Path, method: str, seed: int, steps: int, extra: list[str], probe_epochs: int | None
) -> tuple[Path, Path]:
    """The run directory of one run of the table and its evaluation directory."""
    run_dir = work / run_name(method, seed, steps, extra)
    return run_dir, run_dir / ("eval_default" if probe_epochs is None else f"eval_pe{probe_epochs}")


def finished(
    work: Path, method: str, seed: int, steps: int, extra: list[str], probe_epochs: int | None
) -> bool:
    """Whether that run is pretrained and evaluated (:func:`run_one` would only read it)."""
    run_dir, eval_dir = run_paths(work, method, seed, steps, extra, probe_epochs)
    return all(
        p.is_file()
        for p in (
            run_dir / "pretrain_done.json",
            eval_dir / "seconds.json",
            eval_dir / "results.json",
        )
    )


def budget_free(config: dict[str, Any]) -> bool:
    """Whether the run's updates do not depend on its total number of steps: a constant
    learning rate and no EMA target (whose τ follows a cosine over the whole run). Then the
    first ``s`` steps of a longer run are the run of ``s`` steps, and a longer budget can
    continue a shorter one's checkpoint instead of starting again."""
    method = METHOD_REGISTRY.get(config["method"]["impl"])
    return (
        config["method"]["optim"]["scheduler"] == "none"
        and method.momentum_pairs is SSLMethod.momentum_pairs
    )


CONTINUED_FROM = "continued_from.json"


def continue_shorter_run(
    work: Path,
    method: str,
    seed: int,
    steps: int,
    extra: list[str],
    config: dict[str, Any],
    run_dir: Path,
) -> dict[str, Any] | None:
    """Seed a new run of ``steps`` with the final checkpoint of the longest finished shorter
    run of the same method, seed and overrides, when :func:`budget_free` allows it and the new
    run has no checkpoint of its own yet (pretraining then resumes from it).

    Returns:
        ``{"steps", "seconds", "run_dir"}`` of the run continued, or ``None``.
    """
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if ckpt.exists() or not budget_free(config):
        return None
    shorter = []
    for other in work.glob(run_name(method, seed, "*", extra)):
        done = other / "pretrain_done.json"
        if done.is_file() and (other / "checkpoints" / "last.ckpt").is_file():
            record = json.loads(done.read_text())
            if 0 < record["steps"] < steps:
                shorter.append((record["steps"], record["seconds"], other))
    if not shorter:
        return None
    s, seconds, other = max(shorter)
    earlier = {"steps": s, "seconds": seconds, "run_dir": str(other)}
    # The record goes down before the checkpoint, so a run that has a checkpoint continued
    # from another one also has the record (an interrupted rerun still counts both parts).
    atomic_write_text(run_dir / CONTINUED_FROM, json.dumps(earlier))
    # atomic: an interrupted copy leaves no last.ckpt to resume
    with open(other / "checkpoints" / "last.ckpt", "rb") as src, atomic_open(ckpt) as dst:
        shutil.copyfileobj(src, dst)
    print(f"{run_dir.name}: continuing {other.name} (step {s}) to step {steps}", flush=True)
    return earlier


def continued_from(run_dir: Path) -> dict[str, Any] | None:
    """The shorter run this run continues (:func:`continue_shorter_run`'s record), or ``None``."""
    record = run_dir / CONTINUED_FROM
    return json.loads(record.read_text()) if record.is_file() else None


def run_one(
    work: Path, method: str, seed: int, steps: int, extra: list[str], probe_epochs: int | None
) -> dict[str, Any]:
    """Pretrain (or reuse) one run and evaluate (or reuse) it.

    Returns:
        ``{"method", "seed", "steps", "run_dir", "pretrain_seconds", "eval_seconds",
        "metrics", "eval_dir", "reused"}``.
    """
    run_dir, eval_dir = run_paths(work, method, seed, steps, extra, probe_epochs)
    done, evaluated = run_dir / "pretrain_done.json", eval_dir / "seconds.json"
    reused = finished(work, method, seed, steps, extra, probe_epochs)
    config = config_for(method, seed, steps, extra)
    if not done.is_file():
        record: dict[str, Any] = {"steps": steps, "overrides": extra}
        earlier = continue_shorter_run(
            work, method, seed, steps, extra, config, run_dir
        ) or continued_from(run_dir)
        start = time.perf_counter()
        pretrain(config, run_dir)
        seconds = time.perf_counter() - start
        if earlier is not None:
            record["continued_from"] = earlier
            seconds += earlier["seconds"]
        done.write_text(json.dumps({"seconds": seconds, **record}))
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not (evaluated.is_file() and (eval_dir / "results.json").is_file()):
        start = time.perf_counter()
        evaluate_checkpoint(ckpt, set_probe_epochs(config, probe_epochs), eval_dir, progress=False)
        evaluated.write_text(json.dumps({"seconds": time.perf_counter() - start}))
    results = json.loads((eval_dir / "results.json").read_text())
    return {
        "method": method,
        "seed": seed,
        "steps": 0 if method == UNTRAINED else steps,
        "run_dir": str(run_dir),
        "eval_dir": str(eval_dir),
        "pretrain_seconds": json.loads(done.read_text())["seconds"],
        "eval_seconds": json.loads(evaluated.read_text())["seconds"],
        "metrics": results["metrics"],
        "reused": reused,
    }


def floors(config: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The floors the evaluation stage reported for ``run`` (every run sees the same data and
    probe settings, so any run's are everyone's): the rotation probe's constant predictor
    (the train-set mean target, on its fixed val pairs) and chance / majority-class top-1,
    as declared by the probes (``results.json["floors"]``), read from the full part."""
    metrics = run["metrics"]
    data = config["data"]
    val_objects = len(build_dataset(data, data["val_split"], 1))
    pairs = val_objects * int(config["eval"]["probes"]["rotation"]["val_pairs_per_object"])
    return {
        "rotation/r2_global": metrics["full/rotation/constant_r2_global"],
        "rotation/r2_sklearn": metrics["full/rotation/constant_r2_sklearn"],
        "rotation_val_pairs": pairs,
        "top1_chance": metrics["full/classification/chance_top1"],
        "top1_majority": metrics["full/classification/majority_top1"],
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """``{method: {part: {column: [value per seed]}}}``."""
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    for run in runs:
        for key, value in run["metrics"].items():
            part, metric = key.split("/", 1)
            if metric in COLUMNS:
                by_part = table.setdefault(run["method"], {}).setdefault(part, {})
                by_part.setdefault(metric, []).append(float(value))
    return table


def mean_std(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def markdown(table: dict, floor: dict[str, Any], order: list[str]) -> str:
    """One row per (method, part), then the floor rows."""
    lines = [
        "| method | part | top-1 | rotation r2_global | rotation r2_sklearn | invariance "
        "| equivariance |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in order:
        parts = sorted(table.get(method, {}), key=lambda p: (PART_ORDER + (p,)).index(p))
        for part in parts:
            cells = [mean_std(table[method][part].get(c, [])) for c in COLUMNS]
            label = "untrained backbone" if method == UNTRAINED else method
            lines.append(f"| {label} | {part} | " + " | ".join(cells) + " |")
    lines.append(
        f"| constant predictor (train-mean quaternion) | – | – | "
        f"{floor['rotation/r2_global']:.3f} | {floor['rotation/r2_sklearn']:.3f} | – | – |"
    )
    lines.append(
        f"| chance / majority class | – | {floor['top1_chance']:.3f} / "
        f"{floor['top1_majority']:.3f} | – | – | – | – |"
    )
    return "\n".join(lines) + "\n"


def headline_part(parts: dict[str, Any]) -> str:
    return "equi" if "equi" in parts else "full"


#: The SIE paper's ordering on rotation R², best group first (its Table 1 and text).
PUBLISHED_ORDER = (
    ("SIE family", ("sie", "sie_novar", "sie_onlyequi", "sie_rotcolor")),
    ("EquiMod / SEN / AugSelf", ("equimod_vicreg", "equimod_simclr", "sen", "simclr_augself")),
    ("VICReg / SimCLR", ("vicreg", "simclr")),
)


def ordering(table: dict) -> str:
    """The published rotation ordering checked on this table: each group's mean of its
    members' headline ``r2_global`` (equi part where a method has one, else full; each
    member averaged over seeds), its range, and whether each group beats the next, by its
    mean and member by member."""
    lines = [
        "| group (published order) | members here | mean rotation r2_global | min – max |",
        "|---|---|---|---|",
    ]
    means: list[tuple[str, float]] = []
    ranges: list[tuple[float, float]] = []
    for label, members in PUBLISHED_ORDER:
        values = {
            m: statistics.mean(table[m][headline_part(table[m])][ROTATION])
            for m in members
            if m in table
        }
        if not values:
            continue
        mean = statistics.mean(values.values())
        means.append((label, mean))
        ranges.append((min(values.values()), max(values.values())))
        lines.append(
            f"| {label} | {', '.join(values)} | {mean:.3f} | "
            f"{min(values.values()):.3f} – {max(values.values()):.3f} |"
        )
    steps = list(itertools.pairwise(means))
    if not steps:
        return "\n".join([*lines, "", "Only one group measured: no ordering to check."]) + "\n"
    verdicts = [f"{a} {'>' if ma > mb else '≤'} {b} ({ma - mb:+.3f})" for (a, ma), (b, mb) in steps]
    holds = all(ma > mb for (_, ma), (_, mb) in steps)
    # every member above every member of the next group: the group's minimum above its maximum
    strict = all(low > high for (low, _), (_, high) in itertools.pairwise(ranges))
    lines += [
        "",
        f"Published ordering of the group means {'holds' if holds else 'does NOT hold'} here: "
        + "; ".join(verdicts)
        + ". Member by member (each group's lowest above the next group's highest): "
        + ("holds." if strict else "does NOT hold."),
    ]
    return "\n".join(lines) + "\n"


def headline_in(tables: dict[int, dict], method: str) -> str:
    """:func:`headline_part` of ``method`` in the first budget's table that holds it."""
    return headline_part(next(t[method] for t in tables.values() if method in t))


def budget_table(tables: dict[int, dict], order: list[str]) -> str:
    """Headline rotation r2_global (and invariance) of each method at every budget."""
    budgets = sorted(tables)
    lines = [
        "| method | part | "
        + " | ".join(f"r2_global @ {b}" for b in budgets)
        + " | "
        + " | ".join(f"invariance @ {b}" for b in budgets)
        + " |",
        "|---|---|" + "---|" * (2 * len(budgets)),
    ]
    for method in order:
        if method == UNTRAINED or not any(method in t for t in tables.values()):
            continue
        part = headline_in(tables, method)
        cells = [
            mean_std(tables[b].get(method, {}).get(part, {}).get(column, []))
            for column in (ROTATION, INVARIANCE)
            for b in budgets
        ]
        lines.append(f"| {method} | {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(tables: dict[int, dict], floor: dict[str, Any], order: list[str], path: Path) -> None:
    """Bars: rotation r2_global of each method's equi part (full where it has none), mean
    over seeds with the seeds' spread, one bar per budget; line: the constant-predictor
    floor."""
    budgets = sorted(tables)
    names = [m for m in order if any(m in t for t in tables.values())]
    width = 0.8 / len(budgets)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(names), 3.8))
    for j, b in enumerate(budgets):
        xs, means, errs = [], [], []
        for i, method in enumerate(names):
            if method not in tables[b]:
                continue
            values = tables[b][method][headline_part(tables[b][method])][ROTATION]
            xs.append(i + (j - (len(budgets) - 1) / 2) * width)
            means.append(statistics.mean(values))
            errs.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        label = f"{b} steps" if len(budgets) > 1 else None
        ax.bar(xs, means, width=width, yerr=errs, color=f"C{j}", capsize=3, label=label)
    labels = [f"{'untrained' if m == UNTRAINED else m}\n({headline_in(tables, m)})" for m in names]
    ax.axhline(floor[ROTATION], color="C3", ls="--", label="constant predictor (train mean)")
    ax.set_xticks(range(len(names)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("rotation r2_global (val)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_device": str(resolve_device("auto")),
        "cuda_available": torch.cuda.is_available(),
    }


def timing_table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| run | seed | steps | pretrain s | s/step | eval s | reused |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        per_step = r["pretrain_seconds"] / r["steps"] if r["steps"] else float("nan")
        lines.append(
            f"| {r['method']} | {r['seed']} | {r['steps']} | {r['pretrain_seconds']:.1f} | "
            f"{per_step:.2f} | {r['eval_seconds']:.1f} | {'yes' if r['reused'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--steps", default="1800", help="pretraining steps per run; several: a budget curve"
    )
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    ap.add_argument("--probe-epochs", type=int, default=None, help="epochs of every probe")
    ap.add_argument("--work", default="runs/method_table", help="run directories (resumable)")
    ap.add_argument("--out", default="bench/results", help="where the table, JSON, PNG go")
    ap.add_argument("--docs", default="docs", help="copy the table and PNG here ('' to skip)")
    ap.add_argument("--name", default=STEM, help="file name stem of the table, JSON and PNG")
    ap.add_argument(
        "--finished-only",
        action="store_true",
        help="tabulate the runs already pretrained and evaluated under --work, train nothing",
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        ap.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    work, out, extra = Path(args.work), Path(args.out), list(args.overrides)
    budgets = sorted({int(s) for s in args.steps.split(",") if s})

    stem = args.name
    start = time.perf_counter()
    wanted = [(UNTRAINED, s, 0) for s in seeds]
    for steps in budgets:  # budget by budget, seed by seed: complete tables so far
        wanted += [(m, seed, steps) for seed in seeds for m in methods]
    missing = [
        w for w in wanted if args.finished_only and not finished(work, *w, extra, args.probe_epochs)
    ]
    runs = [run_one(work, *w, extra, args.probe_epochs) for w in wanted if w not in missing]
    floor = floors(config_for(UNTRAINED, seeds[0], 0, extra), runs[0])
    wall = time.perf_counter() - start

    order = [*methods, UNTRAINED]
    tables = {
        b: aggregate([r for r in runs if r["steps"] == b or r["method"] == UNTRAINED])
        for b in budgets
    }
    probe = (
        "SIE protocol (300 epochs)" if args.probe_epochs is None else f"{args.probe_epochs} epochs"
    )
    batch = config_for(methods[0], seeds[0], 0, extra)["data"]["batch_size"]
    budget = (
        f"{' and '.join(map(str, budgets))} steps × batch {batch} per method and seed, seeds "
        f"{seeds}; probes: {probe}"
    )
    info = machine()
    head = [
        "# Method table (SIE paper) at CPU scale — classification and rotation probes",
        "",
        f"Command: `python bench/method_table.py --steps {args.steps} --seeds {args.seeds} "
        f"--methods {','.join(methods)}"
        + (f" --probe-epochs {args.probe_epochs}" if args.probe_epochs is not None else "")
        + (f" --work {args.work}" if args.work != "runs/method_table" else "")
        + (f" --name {stem}" if stem != STEM else "")
        + (" --finished-only" if args.finished_only else "")
        + (" " + " ".join(extra) if extra else "")
        + "`",
        "",
        f"Runs: `experiment=cpu/<method>_3diebench`; budget: {budget}.  ",
        f"Machine: {info['platform']}, {info['cpu_cores']} cores, torch {info['torch']} on "
        f"{info['torch_device']}; wall time {wall:.0f} s (this invocation).",
        "",
        "Mean ± sample std over seeds where more than one. Floors: the untrained backbone, the "
        "constant predictor (train-set mean relative quaternion, on the rotation probe's "
        f"{floor['rotation_val_pairs']} val pairs) and chance / majority-class top-1. "
        "invariance and equivariance: the evaluation stage's diagnostics "
        "(`equissl/eval/probes/diagnostics.py`: 1 − within-object / between-object distance; "
        "the share of a view's displacement its known rotation explains).",
        "",
        "",
    ]
    if missing:
        head += [
            "Not run yet (`--finished-only`): "
            + ", ".join(f"{m} seed {seed} at {steps} steps" for m, seed, steps in missing)
            + ".",
            "",
            "",
        ]
    text = "\n".join(head)
    for b in budgets:
        title = f"## {b} steps\n\n" if len(budgets) > 1 else ""
        text += title + markdown(tables[b], floor, order)
        text += f"\n### The published ordering on rotation{f' ({b} steps)' if title else ''}\n\n"
        text += ordering(tables[b]) + "\n"
    if len(budgets) > 1:
        text += "## Rotation and invariance by budget\n\n" + budget_table(tables, order) + "\n"
    text += f"![rotation r2_global per method]({stem}.png)\n\n## Timing\n\n" + timing_table(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text)
    plot(tables, floor, order, out / f"{stem}.png")
    if args.docs:
        Path(args.docs).mkdir(parents=True, exist_ok=True)
        for suffix in (".md", ".png"):
            shutil.copy2(out / f"{stem}{suffix}", Path(args.docs) / f"{stem}{suffix}")
    summary = {
        "command": head[2],
        "budget": budget,
        "machine": info,
        "wall_seconds": wall,
        "floors": floor,
        "table": tables[budgets[-1]],
        "tables": {str(b): t for b, t in tables.items()},
        "runs": runs,
    }
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    print(text)
    print(
        f"written: {out / stem}.md, .json, .png"
        + (f"; {args.docs}/{stem}.md, .png" if args.docs else "")
    )


if __name__ == "__main__":
    main()
