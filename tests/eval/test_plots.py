"""Report plots: the multirun bars and combined results.md, run labels, and the PNG plots
(and scalars) in TensorBoard."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from equissl.eval.plots import plot_runs, run_labels
from equissl.eval.report import hparams_of, write_report
from equissl.eval.run_settings import seed_groups
from equissl.eval.sweep import combine


def result(method: str, run: str, top1: float, equi: float) -> dict:
    return {
        "checkpoint": f"/runs/{run}/checkpoints/last.ckpt",
        "method": method,
        "data": "3diebench",
        "config": {},
        "metrics": {
            "inv/classification/top1": top1,
            "equi/classification/top1": top1 / 2,
            "equi/rotation/r2_global": equi,
            "equi/diagnostics/equivariance": equi / 2,
            "equi/diagnostics/within": 0.3,  # not a headline metric: no subplot
        },
        "skipped": {},
        "plots": {},
    }


def test_run_labels_tell_runs_of_one_method_apart():
    runs = [result("sie", "a", 0.5, 0.4), result("sie", "b", 0.6, 0.3), result("vicreg", "c", 0, 0)]
    assert run_labels(runs) == ["sie a", "sie b", "vicreg"]
    same = [result("sie", "a", 0.5, 0.4), result("sie", "a", 0.6, 0.3)]
    assert run_labels(same) == ["1: sie a", "2: sie a"]
    runs[2]["data"] = "3diebench_t"  # data differ: named
    assert run_labels(runs)[1:] == ["sie (3diebench) b", "vicreg (3diebench_t)"]


def test_combine_writes_bars_per_run_and_links_them(tmp_path):
    files = []
    for i, (method, top1, equi) in enumerate([("sie", 0.6, 0.45), ("vicreg", 0.55, 0.3)]):
        f = tmp_path / f"run{i}" / "results.json"
        f.parent.mkdir()
        f.write_text(json.dumps(result(method, f"r{i}", top1, equi)))
        files.append(f)
    table = combine(files, tmp_path)
    assert "| sie | equi |" in table and "| vicreg | inv |" in table  # runs named as in the chart
    md = (tmp_path / "results.md").read_text()
    assert md.startswith(table) and "![metrics per run](metrics.png)" in md
    png = mpimg.imread(tmp_path / "metrics.png")
    assert png.shape[1] > 2 * png.shape[0]  # three panels side by side
    assert len(json.loads((tmp_path / "combined.json").read_text())) == 2


def test_no_headline_metric_no_bars(tmp_path):
    res = result("sie", "a", 0.5, 0.4)
    res["metrics"] = {"equi/diagnostics/within": 0.1}
    assert not plot_runs([res], tmp_path / "bars.png")
    assert not (tmp_path / "bars.png").exists()


def test_tensorboard_gets_the_scalars_and_the_plots(tmp_path):
    res = result("sie", "a", 0.5, 0.4)
    # a plot a probe wrote, and one listed but missing (left out, no error)
    mpimg.imsave(tmp_path / "rotation_equi.png", np.random.default_rng(0).random((20, 30, 3)))
    res["plots"] = {"rotation/equi": "rotation_equi.png", "gone": "gone.png"}
    write_report(res, tmp_path)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert "equi/rotation/r2_global" in tags["scalars"]
    assert set(tags["images"]) == {"plots/metrics", "plots/rotation/equi"}
    image = events.Images("plots/rotation/equi")[0]
    assert (image.width, image.height) == (30, 20)


def test_tensorboard_scalars_sit_at_the_checkpoints_step_with_hparams(tmp_path):
    res = {**result("sie", "a", 0.5, 0.4), "checkpoint_step": 600}
    res["config"] = {"method": {"name": "sie", "lr": 1e-3}, "seed": 3, "tags": [1, 2]}
    write_report(res, tmp_path)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("equi/rotation/r2_global")] == [600]
    hparams, headline = hparams_of(res)
    assert hparams == {"method.name": "sie", "method.lr": 1e-3, "seed": 3}  # scalars only
    assert headline["hparam/equi/rotation/r2_global"] == 0.4
    assert (tmp_path / "tb" / "hparams").is_dir()  # TensorBoard's HPARAMS run


def test_seeds_of_one_setting_become_one_bar_with_an_error_bar(tmp_path):
    runs = []
    for i, (method, seed, equi) in enumerate(
        [("sie", 0, 0.40), ("sie", 1, 0.44), ("vicreg", 0, 0.30), ("vicreg", 1, 0.30)]
    ):
        res = result(method, f"r{i}", 0.5, equi)
        res["config"] = {"method": {"name": method}, "seed": seed}
        runs.append(res)
    groups = seed_groups(runs)
    assert groups == {"method.name=sie": [0, 1], "method.name=vicreg": [2, 3]}
    assert plot_runs(runs, tmp_path / "bars.png")
    png = mpimg.imread(tmp_path / "bars.png")
    # two groups, not four runs: the figure is as tall as a two-run one
    assert plot_runs(runs[::2], tmp_path / "two.png")
    assert png.shape[0] == mpimg.imread(tmp_path / "two.png").shape[0]
