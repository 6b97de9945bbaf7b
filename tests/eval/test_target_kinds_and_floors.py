"""Probes choose their maths by target kind, never by the name ``rotation``; floors are what
probes declare, not what metric names look like."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import equissl.eval.probes.diagnostics as diagnostics
import equissl.eval.probes.path_integration as path_integration
import equissl.eval.report as report
import equissl.geometry as geometry
from equissl.datasets.contract import wrap_angle
from equissl.datasets.iebench_actions import IEBenchActionSpace
from equissl.eval.evaluate import run_probes
from equissl.eval.features import FeatureSet
from equissl.eval.metrics import regression_metrics
from equissl.eval.probes.base import (
    CHANCE_ROW,
    CLASSIFICATION_FLOORS,
    REGRESSION_FLOORS,
    EvalContext,
    Floor,
    Probe,
    ProbeResult,
)
from equissl.eval.probes.classification import classification_probe
from equissl.eval.probes.coefficients import COEFFICIENT_FLOORS, mean_baseline
from equissl.eval.probes.path_integration import angle_sum, path_integration_probe
from equissl.eval.report import floor_column, markdown_table
from equissl.registries import PROBES
from tests.toy_parts import PlanarShiftSpace

PAIR_CFG = {"impl": "pair_regression", "target": "rotation", "epochs": 2, "lr": 1e-2,
            "weight_decay": 0.0, "batch_size": 32, "hidden_dim": 16, "val_pairs_per_object": 3,
            "seed": 0}  # fmt: skip
DIAG_CFG = {"impl": "diagnostics", "seed": 0, "pairs_per_object": 4, "components": ["rotation"],
            "degree": 2, "components_pca": 4, "ridges": [1e-2, 1.0], "pca_plot": True,
            "pca_points": 200}  # fmt: skip


@pytest.fixture
def no_quaternions(monkeypatch):
    """Every entry to quaternion maths the probes and the report use raises."""

    def boom(*args, **kwargs):
        raise AssertionError("quaternion maths on a target that is not a quaternion")

    for module in (geometry, report, diagnostics, path_integration):
        monkeypatch.setattr(module, "quaternion_angle", boom)


def planar_features(n: int, v: int, seed: int) -> FeatureSet:
    g = torch.Generator().manual_seed(seed)
    lat = torch.rand(n, v, 3, generator=g) * 2 * math.pi - math.pi
    feats = torch.cat((lat.cos(), lat.sin(), torch.randn(n, v, 2, generator=g)), dim=-1)
    labels = torch.randint(3, (n,), generator=g)
    return FeatureSet({"full": feats}, lat, labels, torch.zeros(n, 0), torch.arange(n))


def planar_context(out: Path, **meta: Any) -> EvalContext:
    return EvalContext(
        train=planar_features(24, 4, 0), val=planar_features(12, 4, 1),
        action_space=PlanarShiftSpace({"rotation": "angle"}), num_classes=3, method=None,
        meta={"config": {"method": {"name": "toy"}}, **meta}, datasets={},
        device=torch.device("cpu"), out_dir=out, progress=False,
    )  # fmt: skip


def test_pair_regression_of_an_angle_named_rotation_skips_quaternion_maths(
    tmp_path, no_quaternions, monkeypatch
):
    ctx = planar_context(tmp_path)
    chosen: list[str] = []
    plots = {
        kind: lambda ax, pred, target, kind=kind: chosen.append(kind)
        for kind in report.TARGET_PLOTS
    }
    monkeypatch.setattr(report, "TARGET_PLOTS", plots)
    probe = PROBES.get("pair_regression")("rotation", PAIR_CFG)
    assert probe.skip_reason(ctx) is None
    res = probe.run(ctx, "full")
    assert chosen == ["angle"]  # the plot of the kind, not the quaternion one
    assert {"r2_global", "r2_sklearn", "mse"} <= set(res.metrics)
    assert res.target.shape[-1] == 1
    chosen.clear()
    shift = PROBES.get("pair_regression")("shift", {**PAIR_CFG, "target": "shift"}).run(ctx, "full")
    assert chosen == [] and shift.plots == {}  # a vector has no predicted-vs-true plot


def test_the_angle_plot_is_written_without_quaternion_maths(tmp_path, no_quaternions):
    ctx = planar_context(tmp_path)
    res = PROBES.get("pair_regression")("rotation", PAIR_CFG).run(ctx, "full")
    assert (tmp_path / res.plots["rotation/full"]).is_file()


def test_diagnostics_on_an_angle_named_rotation(tmp_path, no_quaternions):
    ctx = planar_context(tmp_path)
    probe = PROBES.get("diagnostics")("diagnostics", DIAG_CFG)
    assert probe.skip_reason(ctx) is None
    res = probe.run(ctx, "full")
    assert set(res.metrics) >= {"invariance", "equivariance"} and res.floors == {}
    assert (tmp_path / res.plots["diagnostics/pca_full"]).is_file()
    lat = ctx.val.latents
    pose, label = diagnostics.pose_colour(ctx.action_space, lat)
    expected = wrap_angle(lat[..., 0].double()).abs().rad2deg().float()
    torch.testing.assert_close(pose, expected)
    assert "rotation angle" in label


def test_quaternion_pose_is_chosen_by_kind_not_by_name():
    class Renamed(IEBenchActionSpace):
        """3DIEBench with its quaternion target named ``attitude``."""

        target_kinds = {"attitude": "quaternion"}

        def __init__(self) -> None:
            super().__init__()
            self.targets = {"attitude": 4}
            self.default_action = ("attitude",)

        def target(self, name, latents_a, latents_b):
            return super().target("rotation" if name == "attitude" else name, latents_a, latents_b)

    g = torch.Generator().manual_seed(0)
    lat = torch.rand(5, 2, 7, generator=g)
    pose, label = diagnostics.pose_colour(Renamed(), lat)
    expected, _ = diagnostics.pose_colour(IEBenchActionSpace(), lat)
    torch.testing.assert_close(pose, expected)
    assert label == "absolute attitude angle (deg)"


def test_angle_sum_follows_the_kind(tmp_path, no_quaternions):
    space = PlanarShiftSpace({"rotation": "angle"})
    lat = planar_features(6, 4, 2).latents
    steps = wrap_angle(lat[:, 1:3, 0] - lat[:, :2, 0]).abs().sum(1, keepdim=True)
    torch.testing.assert_close(angle_sum(space.select(["rotation"]), lat, 3), steps)
    cfg = {"impl": "path_integration", "seed": 0, "components": ["rotation"],
           "cumulative": "angle_sum", "lengths": [2, 3], "epochs": 1, "lr": 1e-3,
           "weight_decay": 0.0, "batch_size": 8, "hidden_dim": 8}  # fmt: skip
    ctx = planar_context(tmp_path, sequence_representation=True)
    assert PROBES.get("path_integration")("path", cfg).skip_reason(ctx) is None
    reason = PROBES.get("path_integration")("path", {**cfg, "components": ["shift"]})
    assert "vector" in reason.skip_reason(ctx)


def test_shipped_probes_declare_their_floors():
    g = torch.Generator().manual_seed(0)
    x, labels = torch.randn(30, 2, 4, generator=g), torch.randint(3, (30,), generator=g)
    cfg = {**PAIR_CFG, "epochs": 1}
    cls = classification_probe(x, labels, x, labels, 3, cfg, torch.device("cpu"), False)
    assert cls.declared_floors() == CLASSIFICATION_FLOORS
    assert cls.floors["chance_top1"] == Floor("top1", CHANCE_ROW)
    y = torch.randn(30, 2, generator=g)
    path = path_integration_probe(x[:, 0], y, x[:, 0], y, cfg, torch.device("cpu"), "", False)
    assert path.declared_floors() == REGRESSION_FLOORS
    assert set(REGRESSION_FLOORS) <= set(regression_metrics(y, y, y))
    assert set(COEFFICIENT_FLOORS) == set(mean_baseline(y, y))
    assert all(f.of in {"mse", "nmse", "rel_error"} for f in COEFFICIENT_FLOORS.values())
    with pytest.raises(ValueError, match="not among the metrics"):
        ProbeResult({"top1": 1.0}, y, y, floors={"chance_top1": Floor("top1")}).declared_floors()


class NormProbe(Probe):
    """A probe whose metric ``mean_norm`` is no floor, and whose floor has no floor name."""

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        norm = float(ctx.val.parts[part].norm(dim=-1).mean())
        return ProbeResult(
            {"mean_norm": norm, "norm": norm, "zero_norm": 0.0},
            torch.zeros(1),
            torch.zeros(1),
            floors={"zero_norm": Floor("norm")},
        )


def test_an_undeclared_mean_metric_is_a_column_and_declared_floors_are_rows(tmp_path):
    floors: dict[str, dict[str, str]] = {}
    metrics, _, _ = run_probes(
        {"norms": NormProbe("norms", {})}, planar_context(tmp_path), ["full"], floors
    )
    assert set(metrics) == {"full/norms/mean_norm", "full/norms/norm", "full/norms/zero_norm"}
    assert floors == {"norms/zero_norm": {"of": "norms/norm", "row": "constant / majority"}}
    results = {"method": "toy", "data": "planar", "metrics": metrics, "floors": floors}
    assert floor_column("norms/mean_norm", floors) is None
    assert floor_column("norms/zero_norm", floors) == ("constant / majority", "norms/norm")
    head, _, *body = markdown_table([results]).strip().splitlines()
    assert "norms/mean_norm" in head and "norms/zero_norm" not in head
    rows = {line.split("|")[2].strip(): line for line in body}
    assert set(rows) == {"full", "floor: constant / majority"}
    # older results.json without "floors": the name prefixes still decide
    legacy = {k: v for k, v in results.items() if k != "floors"}
    head, _, *body = markdown_table([legacy]).strip().splitlines()
    assert "norms/mean_norm" not in head
    assert floor_column("norms/mean_norm") == ("constant / majority", "norms/norm")
