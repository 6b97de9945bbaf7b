"""Plots of the evaluation stage beyond a single probe's: the PCA and t-SNE pictures of a part, the
per-run bars of a multirun sweep, and PNG plots copied into TensorBoard."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from equissl.eval.run_settings import differing_settings, seed_groups  # noqa: E402

# headline metrics (the bars of metrics.png, the printed table), in order; those present show
HEADLINE = (
    "classification/top1",
    "knn/top1",
    "rotation/r2_global",
    "color/r2_global",
    "translation/r2_global",
    "predictor/mrr",
    "diagnostics/invariance",
    "diagnostics/equivariance",
    "lie/r2_global",
    "coefficients/rel_error",
    "time_stepping/nmse_rollout",
)


def is_headline(key: str) -> bool:
    """Whether ``"<part>/<probe>/<metric>"`` is one of the :data:`HEADLINE` metrics."""
    return key.split("/", 1)[-1] in HEADLINE


PART_ORDER = ("full", "inv", "equi")


@dataclass(frozen=True)
class Colouring:
    """What the first panel of an embedding plot is coloured by: class ids (``-1``
    unlabelled, in grey; a legend up to :data:`LEGEND_CLASSES` classes) or, for data
    without classes, a continuous value such as a PDE coefficient (``categorical=False``)."""

    values: Tensor  # [M]
    label: str
    categorical: bool = True


#: classes up to which the class panel gets a legend (beyond, colours repeat and a note says so)
LEGEND_CLASSES = 20


def plot_embedding(
    coords: Tensor,
    first: Colouring,
    pose: Tensor,
    pose_label: str,
    axis_labels: tuple[str, str],
    title: str,
    path: Path,
) -> None:
    """Two panels of the same 2-D coordinates ``[M, 2]`` (a PCA, a t-SNE): coloured by
    ``first`` and by ``pose [M]`` (e.g. the absolute rotation angle)."""
    x, y = coords[:, 0].numpy(), coords[:, 1].numpy()
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0), sharex=True, sharey=True)
    if first.categorical:
        _class_panel(axes[0], x, y, first.values, fig)
    else:
        points = axes[0].scatter(x, y, s=4, c=first.values.numpy(), cmap="plasma", alpha=0.7)
        fig.colorbar(points, ax=axes[0]).set_label(first.label, fontsize=8)
    axes[0].set_title(f"by {first.label}", fontsize=9)
    points = axes[1].scatter(x, y, s=4, c=pose.numpy(), cmap="viridis", alpha=0.7)
    fig.colorbar(points, ax=axes[1]).set_label(pose_label, fontsize=8)
    axes[1].set_title(f"by {pose_label}", fontsize=9)
    for ax in axes:
        ax.set_xlabel(axis_labels[0])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(axis_labels[1])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _class_panel(ax: Any, x: Any, y: Any, labels: Tensor, fig: Any) -> None:
    """Points by class: distinct strong colours (tab10 up to 10 classes, tab20 beyond) and
    a legend of the class ids up to :data:`LEGEND_CLASSES` classes."""
    known = (labels >= 0).numpy()
    ax.scatter(x[~known], y[~known], s=4, c="lightgrey", alpha=0.5)
    classes = sorted(int(c) for c in labels[labels >= 0].unique())
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, c in enumerate(classes):
        mine = (labels == c).numpy()
        ax.scatter(x[mine], y[mine], s=4, color=cmap(i % cmap.N), alpha=0.75, label=str(c))
    if len(classes) <= LEGEND_CLASSES:
        ax.legend(title="class", fontsize=6, title_fontsize=7, markerscale=2.5, loc="best", ncol=2)
    else:
        ax.text(
            0.01, 0.01, f"{len(classes)} classes: colours repeat", fontsize=7,
            transform=ax.transAxes,
        )  # fmt: skip


def plot_pca(
    coords: Tensor,
    first: Colouring,
    pose: Tensor,
    pose_label: str,
    explained: Tensor,
    title: str,
    path: Path,
) -> None:
    """:func:`plot_embedding` of 2-D PCA coordinates, with the variance share of each axis
    ``explained [2]`` in the axis labels."""
    axis_labels = (
        f"PC1 ({100 * float(explained[0]):.1f} %)",
        f"PC2 ({100 * float(explained[1]):.1f} %)",
    )
    plot_embedding(coords, first, pose, pose_label, axis_labels, f"PCA — {title}", path)


def run_labels(results: Sequence[dict[str, Any]]) -> list[str]:
    """One label per run: the settings that differ between the runs' configs
    (``method.name=sie seed=1``, :func:`~equissl.eval.run_settings.differing_settings`)
    when they tell every run apart; otherwise the method (with ``(<data>)`` when the runs'
    data differ), and the checkpoint's run directory where two runs would share a label."""
    settings = [" ".join(f"{k}={v}" for k, v in s.items()) for s in differing_settings(results)]
    if all(settings) and len(set(settings)) == len(settings):
        return settings
    mixed = len({r["data"] for r in results}) > 1
    base = [f"{r['method']} ({r['data']})" if mixed else r["method"] for r in results]
    labels = []
    for label, res in zip(base, results, strict=True):
        if base.count(label) > 1:
            ckpt = Path(res["checkpoint"])
            run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
            label = f"{label} {run.name}"
        labels.append(label)
    if len(set(labels)) < len(labels):  # same run directory: number them
        labels = [f"{i + 1}: {label}" for i, label in enumerate(labels)]
    return labels


#: lower is better for these metric names (every other metric: higher is better)
LOWER_IS_BETTER = ("mse", "nmse", "rel_error", "nmse_rollout", "pre")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller ``probe/metric`` is better (errors, distances)."""
    name = metric.rsplit("/", 1)[-1]
    return any(name == m or name.startswith(m + "_") for m in LOWER_IS_BETTER)


def plot_runs(
    results: Sequence[dict[str, Any]], path: Path, metrics: Sequence[str] = HEADLINE
) -> bool:
    """One panel per headline ``probe/metric`` present, one group of horizontal bars per run
    (top to bottom in the table's order) — or, where runs differ only in ``seed``, per group
    of them: the mean with the sample std as an error bar, ``(n=…)`` in the label — one bar
    per part. Returns whether anything was drawn (no headline metric: no file)."""
    keys = [{k.split("/", 1)[1] for k in r["metrics"]} for r in results]
    shown = [m for m in metrics if any(m in k for k in keys)]
    if not shown:
        return False
    parts = sorted(
        {k.split("/", 1)[0] for r in results for k in r["metrics"] if k.split("/", 1)[1] in shown},
        key=lambda p: (PART_ORDER.index(p) if p in PART_ORDER else 99, p),
    )
    groups = seed_groups(results)
    if all(len(members) == 1 for members in groups.values()):
        labels, members = run_labels(results), [[i] for i in range(len(results))]
    else:  # runs that differ only in seed: one bar (mean) with its std as an error bar
        labels = [f"{label} (n={len(m)})" for label, m in groups.items()]
        members = list(groups.values())
    height = 0.8 / len(parts)
    cols = min(4, len(shown))
    rows = -(-len(shown) // cols)
    label_width = 0.07 * max(len(label) for label in labels)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(label_width + 2.6 * cols, 0.9 + rows * (0.5 + 0.18 * len(parts) * len(labels))),
        sharey=True,
        squeeze=False,
    )
    centre = [len(labels) - 1 - j for j in range(len(labels))]  # first run on top
    for ax, metric in zip(axes.flat, shown, strict=False):
        for i, part in enumerate(parts):
            stats = [_mean_std(results, m, f"{part}/{metric}") for m in members]
            offset = (len(parts) - 1) / 2 - i
            ax.barh(
                [c + offset * height for c in centre],
                [mean for mean, _ in stats],
                height,
                xerr=[std for _, std in stats],
                error_kw={"elinewidth": 0.8, "capsize": 2},
                label=part,
            )
        ax.set_yticks(centre, labels, fontsize=8)
        ax.axvline(0, color="black", lw=0.5)
        floor = _floor_value(results, metric)
        if floor is not None:
            line = ax.axvline(floor[1], color="crimson", ls="--", lw=1.2)
            ax.legend([line], [f"floor ({floor[0]}) {floor[1]:.3g}"], fontsize=6, loc="lower right")
        ax.set_title(f"{metric} {'↓' if lower_is_better(metric) else '↑'}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    parts_only = [(h, n) for h, n in zip(handles, names, strict=True) if n in parts]
    fig.legend(*zip(*parts_only, strict=True), fontsize=7, loc="upper right", title="part")
    fig.suptitle(
        "↑ higher is better, ↓ lower is better; dashed line: the floor (a predictor that "
        "ignores the representation)",
        fontsize=8,
        x=0.01,
        ha="left",
    )
    # room on the right for the parts' legend, above for the caption
    fig.tight_layout(rect=(0, 0, 1 - 0.7 / fig.get_figwidth(), 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _mean_std(
    results: Sequence[dict[str, Any]], members: list[int], key: str
) -> tuple[float, float]:
    """Mean and sample std (0 for one run) of ``key`` over the runs ``members``."""
    values = [results[i]["metrics"].get(key, float("nan")) for i in members]
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), 0.0
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _floor_value(results: Sequence[dict[str, Any]], metric: str) -> tuple[str, float] | None:
    """``(row name, mean value)`` of the declared floor of ``probe/metric`` over the runs
    and parts (``results.json["floors"]``); ``None`` without one."""
    values, row = [], ""
    probe = metric.split("/", 1)[0]
    for r in results:
        for key, spec in (r.get("floors") or {}).items():
            if spec.get("of") != metric:
                continue
            row = spec.get("row", "floor")
            values += [
                v
                for k, v in r["metrics"].items()
                if k.split("/", 1)[1] == key and k.split("/", 2)[1] == probe and v == v
            ]
    return (row, sum(values) / len(values)) if values else None


def add_images(writer: Any, out_dir: Path, plots: dict[str, str], step: int = 0) -> None:
    """Add each PNG ``plots`` names (``{tag: file in out_dir}``) to a TensorBoard
    ``SummaryWriter`` as an RGB(A) image; missing files are left out."""
    for tag, file in plots.items():
        png = out_dir / file
        if png.is_file():
            writer.add_image(f"plots/{tag}", mpimg.imread(png), step, dataformats="HWC")
