"""Reports of the evaluation stage: results.json, a Markdown table, PNG plots, TensorBoard.

``results.json`` schema (a contract: new probes add keys, existing keys keep their names)::

    {"checkpoint": str, "method": str, "data": str, "config": {...},
     "metrics": {"<part>/<probe>/<metric>": float},
     "skipped": {"<probe>": "reason"},
     "plots": {"<name>": "<file in the evaluation directory>"},
     "floors": {"<probe>/<metric>": {"of": "<probe>/<metric>", "row": str}},
     "baselines": {"<baseline>": {"<part>/<probe>/<metric>": float}},
     "ood": {"root": str, "metrics": {"<part>/<probe>/<metric>": float},
             "protocols": {"<probe>": {...}}}}

Floors sit among the metrics under their own names: ``constant_*`` (regression: the
training-set mean target), ``chance_top1``, ``majority_*`` (classification), ``mean_*``
(coefficients), e.g. ``equi/rotation/constant_r2_global`` beside ``equi/rotation/r2_global``;
the Markdown table moves them into floor rows. Which metrics are floors is what the probes
declare (``ProbeResult.floors``), recorded in ``floors``: each floor metric (without the
part), the metric it bounds (``of``, its column) and its row. Results written before
``floors`` existed lack the key; for them the metric-name prefixes of :data:`FLOOR_ROWS`
decide. ``baselines`` holds the metrics of the same probes on other models
(``eval.baselines``, e.g. ``untrained``); ``ood`` (with ``eval.ood_root``) the same probes'
heads, trained on the train split, scored on another root's val split, floors included.

Sequence parts are named ``"<part>@M<m>"`` (the part's sequence representation of ``m``
views), so ``inv@M5/classification/top1`` is the top-1 of the aggregate of 5 views and
``inv@M5/path_integration/r2_global`` its path-integration R² (beside
``constant_r2_global``, the constant predictor's). ``results.md`` adds one table per probe
run on sequence parts, with ``M`` as columns, and shows the plots.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from equissl.atomic import atomic_write_text  # noqa: E402
from equissl.datasets.contract import wrap_angle  # noqa: E402
from equissl.eval.plots import (  # noqa: E402
    HEADLINE,
    PART_ORDER,
    add_images,
    is_headline,
    lower_is_better,
    plot_runs,
)
from equissl.eval.probes.base import FLOOR_ROW_ORDER, sequence_length  # noqa: E402
from equissl.geometry import quaternion_angle  # noqa: E402

log = logging.getLogger(__name__)


#: Metric-name prefixes of floors (scores of predictors that ignore the representation) and
#: the table row showing them, under the column of the metric they bound
#: (``rotation/constant_r2_global`` under ``rotation/r2_global``) — only for results.json
#: files without ``floors`` (written before probes declared their floors).
FLOOR_ROWS = {
    "constant_": "constant / majority",
    "majority_": "constant / majority",
    "mean_": "constant / majority",
    "chance_": "chance",
}


def _fmt(value: float) -> str:
    """Four decimals; a whole number without them (counts, hit@10 = 1); three significant
    digits in exponent form for magnitudes that four decimals would hide or pad
    (a ν MSE of 6.8e-06, not 0.0000)."""
    if math.isnan(value):
        return "nan"
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.3g}"
    return f"{value:.4f}"


#: ``results.json["floors"]``: ``{"<probe>/<metric>": {"of": "<probe>/<metric>", "row": …}}``
Floors = dict[str, dict[str, str]]


def floor_column(probe_metric: str, floors: Floors | None = None) -> tuple[str, str] | None:
    """``"rotation/constant_r2_global" -> ("constant / majority", "rotation/r2_global")``:
    the floor row and the column of a floor key; ``None`` for any other metric.

    ``floors``: the run's declared floors (``results.json["floors"]``), which alone decide;
    ``None`` (results without the key): the metric-name prefixes of :data:`FLOOR_ROWS`."""
    if floors is not None:
        floor = floors.get(probe_metric)
        return (floor["row"], floor["of"]) if floor else None
    probe, _, metric = probe_metric.partition("/")
    for prefix, row in FLOOR_ROWS.items():
        if metric.startswith(prefix):
            return row, f"{probe}/{metric[len(prefix) :]}"
    return None


def _by_part(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    by_part: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        part, probe_metric = key.split("/", 1)
        by_part.setdefault(part, {})[probe_metric] = value
    return by_part


def _part_order(parts: Iterable[str]) -> list[str]:
    return sorted(parts, key=lambda p: (PART_ORDER.index(p) if p in PART_ORDER else 99, p))


def _floor_cell(values: list[float], where: str) -> str:
    """One floor's cell: its value, the same under every part (floors depend on the targets
    only); a range, with a warning, if parts disagree."""
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        return _fmt(values[0])
    log.warning("floor %s differs across parts: %s", where, values)
    return f"{_fmt(lo)} … {_fmt(hi)}"


def floor_rows(
    by_part: dict[str, dict[str, float]], floors: Floors | None = None
) -> list[tuple[str, dict[str, str]]]:
    """``[(row name, {column: cell})]``: the floors of one run, taken from any part. Sequence
    parts ``<part>@M<m>`` have their own rows (``floor @M3: …``) holding only the floors that
    differ from the single-view ones (e.g. path integration, whose target grows with M).
    ``floors``: as for :func:`floor_column`."""
    values: dict[tuple[int, str], dict[str, list[float]]] = {}
    for part, metrics in by_part.items():
        length = (sequence_length(part) or (part, 0))[1]
        for probe_metric, value in metrics.items():
            floor = floor_column(probe_metric, floors)
            if floor:
                row, column = floor
                values.setdefault((length, row), {}).setdefault(column, []).append(value)
    cells = {
        (length, row): {c: _floor_cell(v, f"{row} {c}") for c, v in columns.items()}
        for (length, row), columns in values.items()
    }
    rows_order = [*FLOOR_ROW_ORDER, *sorted({r for _, r in cells} - set(FLOOR_ROW_ORDER))]
    out = []
    for length, row in sorted(cells, key=lambda k: (k[0], rows_order.index(k[1]))):
        single = cells.get((0, row), {}) if length else {}
        shown = {c: v for c, v in cells[(length, row)].items() if single.get(c) != v}
        if shown:
            out.append((f"floor @M{length}: {row}" if length else f"floor: {row}", shown))
    return out


def part_rows(
    by_part: dict[str, dict[str, float]], floors: dict[str, Any] | None, prefix: str = ""
) -> list[tuple[str, dict[str, str]]]:
    """``(prefix + part, {column: formatted value})`` per part, floors left out."""
    return [
        (
            prefix + part,
            {c: _fmt(v) for c, v in by_part[part].items() if floor_column(c, floors) is None},
        )
        for part in _part_order(by_part)
    ]


def markdown_table(
    results: Iterable[dict[str, Any]],
    only: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    arrows: bool = False,
) -> str:
    """One row per (run, part), one column per ``probe/metric``; after a run's parts, one
    row per part of each baseline model (``untrained (baseline): full``) and the floor rows
    (:func:`floor_rows`, from the run's ``floors``, else by name prefix), whose keys are
    left out of the metric columns. ``labels``: the runs' names (default
    ``method (data)``). ``only``: just
    these columns, in this order (e.g. :data:`~equissl.eval.plots.HEADLINE`; all of them
    when none is present). ``arrows``: mark each column ↑ (higher is better) or ↓."""
    rows: list[tuple[str, str, dict[str, str]]] = []
    columns: list[str] = []

    def add(label: str, name: str, cells: dict[str, str]) -> None:
        rows.append((label, name, cells))
        columns.extend(c for c in cells if c not in columns)

    for i, res in enumerate(results):
        label = labels[i] if labels is not None else f"{res['method']} ({res['data']})"
        runs = {"": res["metrics"]} | {
            f"{name} (baseline): ": m for name, m in (res.get("baselines") or {}).items()
        }
        floors = res.get("floors")
        for prefix, metrics in runs.items():
            for name, cells in part_rows(_by_part(metrics), floors, prefix):
                add(label, name, cells)
        for name, cells in floor_rows(_by_part(res["metrics"]), floors):
            add(label, name, cells)
        if res.get("ood"):  # scored on another root: its own rows and its own floors
            ood = _by_part(res["ood"]["metrics"])
            for name, cells in part_rows(ood, floors, "ood: "):
                add(label, name, cells)
            for name, cells in floor_rows(ood, floors):
                add(label, "ood " + name, cells)
    columns.sort()
    if only is not None:
        columns = [c for c in only if c in columns] or columns
        rows = [r for r in rows if any(c in r[2] for c in columns)]

    def title(column: str) -> str:
        return f"{column} {'↓' if lower_is_better(column) else '↑'}" if arrows else column

    head = "| run | part | " + " | ".join(title(c) for c in columns) + " |"
    sep = "|---|---|" + "---|" * len(columns)
    body = [
        f"| {label} | {part} | " + " | ".join(m.get(c, "") for c in columns) + " |"
        for label, part, m in rows
    ]
    return "\n".join([head, sep, *body]) + "\n"


def sequence_tables(results: dict[str, Any]) -> str:
    """Per probe run on sequence parts: rows (part, metric), one column per length ``M``
    (e.g. top-1 of the aggregate against M_val; path-integration R² against M)."""
    by_probe: dict[str, dict[tuple[str, str], dict[int, float]]] = {}
    for key, value in results["metrics"].items():
        part, probe, metric = key.split("/", 2)
        split = sequence_length(part)
        if split:
            by_probe.setdefault(probe, {}).setdefault((split[0], metric), {})[split[1]] = value
    out = []
    for probe, rows in by_probe.items():
        lengths = sorted({m for row in rows.values() for m in row})
        out += [
            f"\n## {probe} against the number of views M\n",
            "| part | metric | " + " | ".join(f"M={m}" for m in lengths) + " |",
            "|---|---|" + "---|" * len(lengths),
        ]
        for (part, metric), row in sorted(rows.items()):
            cells = " | ".join(_fmt(row[m]) if m in row else "" for m in lengths)
            out.append(f"| {part} | {metric} | {cells} |")
    return "\n".join(out) + "\n" if out else ""


def skipped_section(results: dict[str, Any]) -> str:
    skipped = results.get("skipped") or {}
    if not skipped:
        return ""
    return "\n## Skipped probes\n\n" + "".join(f"- {k}: {v}\n" for k, v in skipped.items())


def plots_section(results: dict[str, Any]) -> str:
    plots = results.get("plots") or {}
    if not plots:
        return ""
    return "\n## Plots\n\n" + "".join(f"![{k}]({v})\n\n" for k, v in plots.items())


def plot_path_integration(metrics: dict[str, dict[str, float]], title: str, path: Path) -> None:
    """R² against the sequence length M for each sequence part (``{"inv@M3": metrics}``),
    both conventions, with the constant predictor's floor (it depends on the targets only,
    the same for every part) dashed."""
    series: dict[str, dict[int, dict[str, float]]] = {}
    for part, m in metrics.items():
        base, length = sequence_length(part)
        series.setdefault(base, {})[length] = m
    floor = {length: m for by_m in series.values() for length, m in by_m.items()}
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.6), sharex=True)
    for ax, conv in zip(axes, ("r2_global", "r2_sklearn"), strict=True):
        for base, by_m in sorted(series.items()):
            ms = sorted(by_m)
            ax.plot(ms, [by_m[m][conv] for m in ms], "o-", label=base)
        ms = sorted(floor)
        ax.plot(ms, [floor[m][f"constant_{conv}"] for m in ms], "k--", label="constant predictor")
        ax.set_xlabel("views M (a path of M−1 actions)")
        ax.set_ylabel(f"R² ({conv})")
        ax.set_xticks(ms)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"path integration — {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_headline(results: dict[str, Any], path: Path) -> None:
    """``metrics.png`` of one evaluation: the sweep report's figure of a single run
    (:func:`~equissl.eval.plots.plot_runs`: one panel per headline metric with its
    direction and its floor as a dashed line, one bar per part)."""
    plot_runs([results], path)


def draw_rotation(ax: Any, pred: Tensor, target: Tensor) -> None:
    """Predicted vs true relative rotation angle (degrees) of a quaternion regression."""
    true_deg = quaternion_angle(target.double()).rad2deg()
    pred_deg = quaternion_angle(pred.double()).rad2deg()
    ax.scatter(true_deg, pred_deg, s=4, alpha=0.4)
    ax.plot([0, 180], [0, 180], color="black", lw=0.7)
    ax.set_xlabel("true angle (deg)")
    ax.set_ylabel("predicted angle (deg)")
    ax.set_xlim(0, 180)
    ax.set_ylim(0, 180)


def draw_angle(ax: Any, pred: Tensor, target: Tensor) -> None:
    """Predicted vs true relative angle (degrees, wrapped onto (−180, 180]) of a target of
    kind ``angle``, every component in one scatter."""
    true_deg = wrap_angle(target.double()).rad2deg().flatten()
    pred_deg = wrap_angle(pred.double()).rad2deg().flatten()
    ax.scatter(true_deg, pred_deg, s=4, alpha=0.4)
    ax.plot([-180, 180], [-180, 180], color="black", lw=0.7)
    ax.set_xlabel("true angle (deg)")
    ax.set_ylabel("predicted angle (deg, wrapped)")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-180, 180)


#: the predicted-vs-true scatter of a pair regression, by target kind (none for others)
TARGET_PLOTS = {"quaternion": draw_rotation, "angle": draw_angle}


def plot_target(kind: str, pred: Tensor, target: Tensor, title: str, path: Path) -> None:
    """One part's predicted-vs-true scatter (:data:`TARGET_PLOTS` of ``kind``)."""
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    TARGET_PLOTS[kind](ax, pred, target)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_target_panels(
    kind: str, panels: dict[str, tuple[Tensor, Tensor, str]], title: str, path: Path
) -> None:
    """Every part's predicted-vs-true scatter in one figure, side by side on the same axes:
    ``panels`` maps a part to ``(pred, target, its title)`` (e.g. its R² and floor)."""
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.4 * len(panels), 3.6), sharex=True, sharey=True, squeeze=False
    )
    for ax, (pred, target, panel_title) in zip(axes[0], panels.values(), strict=True):
        TARGET_PLOTS[kind](ax, pred, target)
        ax.set_title(panel_title, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict[str, Any], out_dir: Path, tensorboard: bool = True) -> str:
    """Write ``results.json``, ``results.md``, ``metrics.png`` (+ TensorBoard scalars and
    the PNG plots as images)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2, sort_keys=False))
    table = markdown_table([results], arrows=True)
    headline_table = markdown_table([results], only=HEADLINE, arrows=True)
    step = results.get("checkpoint_step")  # None in results written before it existed
    atomic_write_text(
        out_dir / "results.md",
        f"# {results['method']} on {results['data']}\n\n"
        f"checkpoint: `{results['checkpoint']}`"
        + (f" (step {step})" if step is not None else "")
        + "\n\n## Headline\n\n"
        "↑ higher is better, ↓ lower; a number means as much as it clears its floor rows "
        "(predictors that ignore the representation). Figure: [metrics.png](metrics.png); "
        'the protocol of each probe: `results.json["protocols"]`.\n\n'
        f"{headline_table}\n## Every metric\n\n{table}"
        + sequence_tables(results)
        + skipped_section(results)
        + plots_section(results),
    )
    plot_headline(results, out_dir / "metrics.png")
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        # at the checkpoint's training step: evaluations of one run's checkpoints line up
        # against the steps (and beside the training curves) in TensorBoard
        at = int(step or 0)
        with SummaryWriter(str(out_dir / "tb")) as writer:
            for key, value in results["metrics"].items():
                writer.add_scalar(key, value, at)
            for name, metrics in (results.get("baselines") or {}).items():
                for key, value in metrics.items():
                    writer.add_scalar(f"baselines/{name}/{key}", value, at)
            for key, value in ((results.get("ood") or {}).get("metrics") or {}).items():
                writer.add_scalar(f"ood/{key}", value, at)
            add_images(writer, out_dir, {"metrics": "metrics.png", **results.get("plots", {})}, at)
            hparams, headline = hparams_of(results)
            if headline:
                writer.add_hparams(hparams, headline, run_name="hparams")
    return table


def hparams_of(results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """TensorBoard's HPARAMS view of one evaluation: the run's settings (the flattened config,
    scalars only) and its headline metrics (``hparam/<part>/<probe>/<metric>``)."""
    from equissl.checkpointing import flatten

    hparams = {
        k: v
        for k, v in flatten(results.get("config") or {}).items()
        if isinstance(v, bool | int | float | str)
    }
    headline = {f"hparam/{k}": float(v) for k, v in results["metrics"].items() if is_headline(k)}
    return hparams, headline
