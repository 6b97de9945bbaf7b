"""Sweep reports: which run is best, and by how much.

Given the ``results.json`` of several runs (a multirun's, or every one under a folder),
:func:`run_labels` names each run by the settings that differ between the runs
(``method.name=sie seed=1``; the run folder's name when nothing differs), :func:`summary`
groups runs that differ only in ``seed`` into mean ± sample std (n shown), one floor row per
metric, sorted by a headline metric with the best configuration named, and :func:`tidy_rows`
gives one row per run × part × metric with every differing setting as a column (the CSV a
researcher loads into pandas).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from equissl.atomic import atomic_write_text
from equissl.eval.plots import HEADLINE, lower_is_better, plot_runs, run_labels
from equissl.eval.report import floor_column, markdown_table
from equissl.eval.run_settings import differing_settings, seed_groups

#: the default ranking: the equivariant part on rotation (what SIE-like methods are for)
DEFAULT_SORT = ("equi/rotation/r2_global",)


def summary(
    results: Sequence[dict[str, Any]],
    metrics: Sequence[str],
    sort_by: str | None = None,
) -> str:
    """Markdown: one row per group of runs that differ only in ``seed`` and part, each
    ``metrics`` (``probe/metric``) cell mean ± std (n); a floor row per metric; sorted by
    ``sort_by`` (``part/probe/metric``; default ``equi/rotation/r2_global`` when present,
    else the first metric present on the ``full`` part), best first, with the best
    configuration named."""
    groups = seed_groups(results)
    present = [m for m in metrics if any(k.split("/", 1)[1] == m for r in results
                                         for k in r["metrics"])]  # fmt: skip
    if not present:
        return ""
    parts = sorted({k.split("/", 1)[0] for r in results for k in r["metrics"]})
    if sort_by is None:
        candidates = [*DEFAULT_SORT, *(f"{p}/{m}" for p in ("full", *parts) for m in present)]
        sort_by = next(c for c in candidates if any(c in r["metrics"] for r in results))
    cells: dict[tuple[str, str], dict[str, tuple[float, float, int]]] = {}
    for label, members in groups.items():
        for part in parts:
            row = {}
            for m in present:
                values = [
                    results[i]["metrics"][f"{part}/{m}"]
                    for i in members
                    if f"{part}/{m}" in results[i]["metrics"]
                ]
                values = [v for v in values if not math.isnan(v)]
                if values:
                    std = statistics.stdev(values) if len(values) > 1 else 0.0
                    row[m] = (statistics.mean(values), std, len(values))
            if row:
                cells[(label, part)] = row

    def key(label: str) -> float:
        part, metric = sort_by.split("/", 1)
        value = cells.get((label, part), {}).get(metric)
        if value is None:
            return math.inf
        return value[0] if lower_is_better(metric) else -value[0]

    order = sorted(groups, key=key)
    arrow = "↓" if lower_is_better(sort_by) else "↑"
    head = "| configuration | part | " + " | ".join(
        f"{m} {'↓' if lower_is_better(m) else '↑'}" for m in present
    )
    lines = [head + " |", "|---|---|" + "---|" * len(present)]
    for label in order:
        for part in parts:
            row = cells.get((label, part))
            if row is None:
                continue
            text = [
                f"{_short(row[m][0])} ± {_short(row[m][1])} (n={row[m][2]})" if m in row else ""
                for m in present
            ]
            lines.append(f"| {label} | {part} | " + " | ".join(text) + " |")
    floor_rows: dict[str, dict[str, float]] = {}
    for m in present:
        floor = _floor_of(results, m)
        if floor is not None:
            floor_rows.setdefault(floor[0], {})[m] = floor[1]
    for row_name, values in floor_rows.items():
        text = [_short(values[m]) if m in values else "" for m in present]
        lines.append(f"| floor: {row_name} | all | " + " | ".join(text) + " |")
    best = order[0]
    best_value = cells.get((best, sort_by.split("/", 1)[0]), {}).get(sort_by.split("/", 1)[1])
    verdict = ""
    if best_value is not None:
        verdict = (
            f"\nBest by {sort_by} {arrow}: **{best}** "
            f"({_short(best_value[0])} ± {_short(best_value[1])}, n={best_value[2]})"
        )
        if len(order) > 1:
            second = cells.get((order[1], sort_by.split("/", 1)[0]), {}).get(
                sort_by.split("/", 1)[1]
            )
            if second is not None:
                verdict += f"; next: {order[1]} ({_short(second[0])}), "
                verdict += f"a difference of {_short(abs(best_value[0] - second[0]))}"
        verdict += ".\n"
    return "\n".join(lines) + "\n" + verdict


def _short(value: float) -> str:
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3g}"
    return f"{value:.3f}"


def _floor_of(results: Sequence[dict[str, Any]], metric: str) -> tuple[str, float] | None:
    """The floor row name and mean value (over runs and parts) bounding ``probe/metric``."""
    values, name = [], None
    for r in results:
        for key, value in r["metrics"].items():
            probe_metric = key.split("/", 1)[1]
            found = floor_column(probe_metric, r.get("floors"))
            if found is not None and found[1] == metric and not math.isnan(value):
                name = found[0]
                values.append(value)
    return (name, statistics.mean(values)) if values else None


def tidy_rows(results: Sequence[dict[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """One row per run × part × metric: ``run``, ``checkpoint``, every differing setting,
    ``part``, ``probe``, ``metric``, ``value``, ``is_floor``, ``lower_is_better``."""
    settings = differing_settings(results)
    rows = []
    for res, label, setting in zip(results, labels, settings, strict=True):
        for key, value in res["metrics"].items():
            part, probe, metric = key.split("/", 2)
            rows.append(
                {
                    "run": label,
                    "checkpoint": res.get("checkpoint", ""),
                    **setting,
                    "part": part,
                    "probe": probe,
                    "metric": metric,
                    "value": value,
                    "is_floor": floor_column(f"{probe}/{metric}", res.get("floors")) is not None,
                    "lower_is_better": lower_is_better(f"{probe}/{metric}"),
                }
            )
    return rows


def combine(result_files: Iterable[Path], out_dir: Path, sort_by: str | None = None) -> str:
    """The report of several runs in ``out_dir``: ``results.md`` (the sweep summary —
    seeds grouped, floors, the best configuration — then one row per run and part,
    labelled by the settings that differ, and bars of the headline metrics in
    ``metrics.png``), ``results.csv`` (:func:`tidy_rows`) and ``combined.json``.
    Returns the summary and the per-run table."""
    files = sorted(Path(f) for f in result_files)
    results = [json.loads(f.read_text()) for f in files]
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = run_labels(results)
    head = summary(results, HEADLINE, sort_by)
    table = markdown_table(results, labels=labels)
    text = (f"## Summary\n\n{head}\n## Runs\n\n" if head else "") + table
    bars = (
        "\n![metrics per run](metrics.png)\n" if plot_runs(results, out_dir / "metrics.png") else ""
    )
    atomic_write_text(out_dir / "results.md", text + bars)
    rows = tidy_rows(results, labels)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "results.csv", buffer.getvalue())
    atomic_write_text(
        out_dir / "combined.json",
        json.dumps(
            [
                {"label": label, "results_file": str(f)}
                | {k: r[k] for k in ("checkpoint", "method", "data", "metrics")}
                | {"baselines": r.get("baselines") or {}}
                | ({"floors": r["floors"]} if "floors" in r else {})
                for f, label, r in zip(files, labels, results, strict=True)
            ],
            indent=2,
        ),
    )
    return text
