"""Sweep reports: runs named by what differs, seeds grouped into mean ± std, one floor row
per metric, the best configuration named, a tidy CSV; ``equissl-report`` over a folder."""

from __future__ import annotations

import csv
import json
import statistics

from equissl.apps.report import main as report_main
from equissl.eval.plots import run_labels
from equissl.eval.sweep import combine, lower_is_better, summary, tidy_rows

FLOORS = {"rotation/constant_r2_global": {"of": "rotation/r2_global", "row": "constant / majority"}}


def result(method: str, seed: int, equi: float, inv: float, lr: float = 1e-3) -> dict:
    return {
        "checkpoint": f"/runs/{method}{seed}/checkpoints/last.ckpt",
        "method": method,
        "data": "3diebench",
        "config": {
            "method": {"name": method, "optim": {"lr": lr}},
            "seed": seed,
            "trainer": {"enable_progress_bar": seed == 0, "max_steps": 600},
        },
        "metrics": {
            "equi/rotation/r2_global": equi,
            "inv/rotation/r2_global": inv,
            "equi/rotation/constant_r2_global": 0.234,
            "inv/rotation/constant_r2_global": 0.234,
        },
        "floors": FLOORS,
        "skipped": {},
        "plots": {},
    }


RUNS = [
    result("sie", 0, 0.40, 0.36),
    result("sie", 1, 0.42, 0.35),
    result("vicreg", 0, 0.30, 0.31),
    result("vicreg", 1, 0.28, 0.33),
]


def test_runs_are_named_by_the_settings_that_differ():
    # enable_progress_bar differs too, but never tells runs apart
    assert run_labels(RUNS) == [
        "method.name=sie seed=0",
        "method.name=sie seed=1",
        "method.name=vicreg seed=0",
        "method.name=vicreg seed=1",
    ]


def test_seeds_are_grouped_floors_shown_once_and_the_best_named():
    text = summary(RUNS, ["rotation/r2_global"])
    sie = statistics.mean([0.40, 0.42]), statistics.stdev([0.40, 0.42])
    assert f"| method.name=sie | equi | {sie[0]:.3f} ± {sie[1]:.3f} (n=2) |" in text
    lines = text.splitlines()
    assert lines.index(next(x for x in lines if x.startswith("| method.name=sie "))) < lines.index(
        next(x for x in lines if x.startswith("| method.name=vicreg "))
    )
    assert sum(x.startswith("| floor:") for x in lines) == 1
    assert "| floor: constant / majority | all | 0.234 |" in text
    assert "Best by equi/rotation/r2_global ↑: **method.name=sie** (0.410" in text
    assert "next: method.name=vicreg (0.290), a difference of 0.120" in text


def test_sorting_follows_the_metric_direction():
    assert lower_is_better("coefficients/rel_error") and lower_is_better("rotation/mse")
    assert not lower_is_better("rotation/r2_global") and not lower_is_better("knn/top1")
    text = summary(RUNS, ["rotation/r2_global"], sort_by="inv/rotation/r2_global")
    assert "inv/rotation/r2_global ↑: **method.name=sie** (0.355" in text
    runs = [
        {**r, "metrics": {"equi/coefficients/rel_error": e}}
        for r, e in zip(RUNS, [3, 3, 1, 1], strict=True)
    ]
    for r in runs:
        r["floors"] = {}
    text = summary(runs, ["coefficients/rel_error"])
    assert "↓: **method.name=vicreg**" in text


def test_tidy_rows_have_every_differing_setting():
    rows = tidy_rows(RUNS, run_labels(RUNS))
    assert len(rows) == 4 * 4
    first = rows[0]
    assert first["method.name"] == "sie" and first["seed"] == 0 and first["part"] == "equi"
    floor = next(r for r in rows if r["metric"] == "constant_r2_global")
    assert floor["is_floor"] and not rows[0]["is_floor"]


def test_combine_and_report_command_write_markdown_csv_and_json(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for i, res in enumerate(RUNS):
        f = sweep / str(i) / "results.json"
        f.parent.mkdir(parents=True)
        f.write_text(json.dumps(res))
    stale = sweep / "0" / "earlier" / "abcd1234" / "results.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps(result("sie", 0, 0.99, 0.99)))  # another checkpoint's
    assert report_main([str(sweep), "sort_by=equi/rotation/r2_global"]) == 0
    md = (sweep / "results.md").read_text()
    assert md.startswith("## Summary") and "| method.name=sie seed=1 | equi |" in md
    assert "0.99" not in md
    with open(sweep / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 and {"run", "method.name", "seed", "value"} <= set(rows[0])
    assert len(json.loads((sweep / "combined.json").read_text())) == 4
    assert "4 run(s)" in capsys.readouterr().out
    assert report_main([str(tmp_path / "nothing")]) == 1
    assert report_main([str(sweep), "sortby=x"]) == 2


def test_one_run_is_its_own_group(tmp_path):
    f = tmp_path / "r" / "results.json"
    f.parent.mkdir()
    f.write_text(json.dumps(RUNS[0]))
    text = combine([f], tmp_path)
    assert "| all runs | equi | 0.400 ± 0.000 (n=1) |" in text
    assert "| sie | equi |" in text  # nothing differs: the method names the run
