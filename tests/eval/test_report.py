"""The Markdown table: floors move out of the metric columns into floor rows under the
metric they bound, baselines get their own rows."""

from __future__ import annotations

import logging

from equissl.eval.report import floor_column, markdown_table

FLOORS = {
    "classification/chance_top1": 0.02,
    "classification/majority_top1": 0.1,
    "classification/majority_balanced_top1": 0.05,
    "rotation/constant_r2_global": 0.23,
    "rotation/constant_r2_sklearn": -0.001,
}


def run(**extra) -> dict:
    metrics = {}
    for part, top1, r2 in (("full", 0.5, 0.3), ("equi", 0.4, 0.45)):
        metrics |= {
            f"{part}/classification/top1": top1,
            f"{part}/classification/balanced_top1": top1 - 0.1,
            f"{part}/rotation/r2_global": r2,
            f"{part}/rotation/r2_sklearn": r2 - 0.2,
        }
        metrics |= {f"{part}/{k}": v for k, v in FLOORS.items()}
    return {"method": "sie", "data": "3diebench", "metrics": metrics, **extra}


def parse(table: str) -> tuple[list[str], list[tuple[str, str, dict[str, str]]]]:
    """``(columns, [(run, part, {column: cell})])`` of a Markdown table."""
    head, _, *body = table.strip().splitlines()
    columns = [c.strip() for c in head.strip("|").split("|")][2:]
    rows = []
    for line in body:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((cells[0], cells[1], dict(zip(columns, cells[2:], strict=True))))
    return columns, rows


def test_floor_keys_map_onto_the_metric_they_bound():
    assert floor_column("rotation/constant_r2_global") == (
        "constant / majority",
        "rotation/r2_global",
    )
    assert floor_column("knn/majority_balanced_top1") == (
        "constant / majority",
        "knn/balanced_top1",
    )
    assert floor_column("knn/chance_top1") == ("chance", "knn/top1")
    assert floor_column("coefficients/mean_nmse") == ("constant / majority", "coefficients/nmse")
    assert floor_column("rotation/r2_global") is None
    assert floor_column("coefficients/supervised_mse") is None


def test_floor_rows_follow_the_parts_under_the_metric_columns():
    columns, rows = parse(markdown_table([run()]))
    assert columns == [
        "classification/balanced_top1",
        "classification/top1",
        "rotation/r2_global",
        "rotation/r2_sklearn",
    ]  # no floor columns
    assert [part for _, part, _ in rows] == [
        "full",
        "equi",
        "floor: constant / majority",
        "floor: chance",
    ]
    constant, chance = rows[2][2], rows[3][2]
    assert constant == {
        "classification/balanced_top1": "0.0500",
        "classification/top1": "0.1000",
        "rotation/r2_global": "0.2300",
        "rotation/r2_sklearn": "-0.0010",
    }
    assert chance == {
        "classification/balanced_top1": "",
        "classification/top1": "0.0200",
        "rotation/r2_global": "",
        "rotation/r2_sklearn": "",
    }
    assert rows[0][2]["rotation/r2_global"] == "0.3000"


def test_baseline_rows_come_before_the_floors_without_floor_columns():
    baseline = {
        "full/classification/top1": 0.3,
        "full/rotation/r2_global": 0.24,
        "full/rotation/constant_r2_global": 0.23,
    }
    _, rows = parse(markdown_table([run(baselines={"untrained": baseline})]))
    parts = [part for _, part, _ in rows]
    assert parts.index("untrained (baseline): full") == 2
    assert parts[3:] == ["floor: constant / majority", "floor: chance"]
    untrained = rows[2][2]
    assert untrained["classification/top1"] == "0.3000"
    assert untrained["rotation/r2_global"] == "0.2400"
    assert untrained["classification/balanced_top1"] == ""


def test_sequence_floors_appear_only_where_they_differ():
    res = run()
    res["metrics"] |= {
        "equi@M3/classification/top1": 0.6,
        "equi@M3/classification/majority_top1": 0.1,  # same labels: no row of its own
        "equi@M3/classification/chance_top1": 0.02,
        "equi@M2/path_integration/r2_global": 0.5,
        "equi@M2/path_integration/constant_r2_global": 0.1,
        "inv@M2/path_integration/r2_global": 0.2,
        "inv@M2/path_integration/constant_r2_global": 0.1,
        "equi@M4/path_integration/r2_global": 0.4,
        "equi@M4/path_integration/constant_r2_global": 0.08,
    }
    _, rows = parse(markdown_table([res]))
    floors = {part: cells for _, part, cells in rows if part.startswith("floor")}
    assert list(floors) == [
        "floor: constant / majority",
        "floor: chance",
        "floor @M2: constant / majority",
        "floor @M4: constant / majority",
    ]
    assert floors["floor @M2: constant / majority"]["path_integration/r2_global"] == "0.1000"
    assert floors["floor @M2: constant / majority"]["classification/top1"] == ""
    assert floors["floor @M4: constant / majority"]["path_integration/r2_global"] == "0.0800"


def test_floors_that_differ_across_parts_show_a_range_and_warn(caplog):
    res = run()
    res["metrics"]["equi/rotation/constant_r2_global"] = 0.25
    with caplog.at_level(logging.WARNING):
        _, rows = parse(markdown_table([res]))
    constant = next(cells for _, part, cells in rows if part == "floor: constant / majority")
    assert constant["rotation/r2_global"] == "0.2300 … 0.2500"
    assert "differs across parts" in caplog.text


def test_coefficient_means_are_floors_and_runs_keep_their_own_floors():
    pde = {
        "method": "lie_vicreg",
        "data": "pde_burgers",
        "metrics": {"full/coefficients/mse": 0.001, "full/coefficients/mean_mse": 0.0075},
    }
    columns, rows = parse(markdown_table([run(), pde]))
    assert "coefficients/mean_mse" not in columns
    last = rows[-1]
    assert last[:2] == ("lie_vicreg (pde_burgers)", "floor: constant / majority")
    assert last[2]["coefficients/mse"] == "0.0075" and last[2]["rotation/r2_global"] == ""


def test_only_keeps_the_named_columns_in_order_with_their_floors():
    columns, rows = parse(
        markdown_table([run()], only=("rotation/r2_global", "knn/top1", "classification/top1"))
    )
    assert columns == ["rotation/r2_global", "classification/top1"]  # absent ones dropped
    by_part = {part: cells for _, part, cells in rows}
    assert by_part["equi"] == {"rotation/r2_global": "0.4500", "classification/top1": "0.4000"}
    assert by_part["floor: constant / majority"]["rotation/r2_global"] == "0.2300"
    assert by_part["floor: chance"] == {"rotation/r2_global": "", "classification/top1": "0.0200"}
    # no named column present: the whole table
    assert (
        parse(markdown_table([run()], only=("knn/top1",)))[0] == parse(markdown_table([run()]))[0]
    )


def test_numbers_keep_their_magnitude_in_the_table():
    from equissl.eval.report import _fmt

    assert _fmt(6.8e-6) == "6.8e-06"  # a ν MSE, not 0.0000
    assert _fmt(32.0) == "32" and _fmt(1.0) == "1" and _fmt(0.0) == "0"
    assert _fmt(0.41234) == "0.4123" and _fmt(-0.25) == "-0.2500"
    assert _fmt(123456.7) == "1.23e+05" and _fmt(float("nan")) == "nan"
