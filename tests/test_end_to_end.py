"""Every method on every kind of data: pretrain and evaluate end to end (issue: extension
points — vicreg on KdV, SIE on Navier–Stokes, SimCLR on 3DIEBench)."""

import json

import pytest
from hydra import compose, initialize_config_module

from equissl.apps.hydra_main import _resolved
from equissl.checkpointing import load_checkpoint
from equissl.datasets.pde import generate_pde
from equissl.eval.evaluate import evaluate_checkpoint
from equissl.training.pretrain import pretrain

# in-process pretrain + evaluate runs of ~10 s each: the e2e tier (CI runs it)
pytestmark = pytest.mark.e2e

COMMON = [
    "trainer=cpu",
    "data.num_workers=0",
    "logger=csv",
    "trainer.max_steps=2",
    "trainer.enable_progress_bar=false",
    "eval.num_workers=0",
    *(
        f"eval.probes.{p}.epochs=2"
        for p in ("classification", "rotation", "color", "lie", "coefficients", "time_stepping")
    ),
    "eval.probes.time_stepping.samples_per_trajectory=1",  # not LPSDA's twice the frames
]


def compose_pretrain(overrides):
    with initialize_config_module("equissl.configs", version_base="1.3"):
        return _resolved(compose("pretrain", overrides=[*COMMON, *overrides]))


def run(config, tmp_path):
    ckpt = pretrain(config, tmp_path / "run")
    results = evaluate_checkpoint(ckpt, config["eval"], tmp_path / "eval", progress=False)
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["metrics"] == results["metrics"]
    return load_checkpoint(ckpt)["equissl"], results


def test_simclr_on_3diebench(iebench_tree, tmp_path):
    meta, res = run(
        compose_pretrain(
            [
                "method=simclr",
                f"data.root={iebench_tree}",
                "data.batch_size=4",
                "data.image_size=32",
            ]
        ),
        tmp_path,
    )
    assert meta["config"]["method"]["temperature"] == 0.1
    assert {"full/classification/top1", "full/rotation/r2_global"} <= set(res["metrics"])
    skipped = {"translation", "translation_base", "translation_object", "lie", "predictor"}
    assert set(res["skipped"]) == skipped | {"path_integration", "coefficients", "time_stepping"}


@pytest.mark.parametrize(
    "method, equation, shape",
    [
        ("vicreg", "kdv", [3, 16, 32]),  # (t, x, u) window as a 2-D image
        ("sie", "ns", [5, 16, 16, 16]),  # (t, x, y, vx, vy) x 16 frames -> 80 input channels
    ],
)
def test_pde_pretrain_and_evaluate(tmp_path, method, equation, shape):
    root = tmp_path / equation
    params = {"nx": shape[-1], "nt": 20, "substeps": 4}
    generate_pde(equation, root, num_trajectories=6, progress=False, **params)
    config = compose_pretrain(
        [
            f"method={method}",
            f"data=pde_{equation}",
            f"data.root={root}",
            "data.batch_size=2",
            "data.eval_views=3",
        ]
    )
    meta, res = run(config, tmp_path)
    assert meta["spec"]["view_shape"] == shape
    assert meta["spec"]["action_space"] == {"kind": "pde", "params": {"equation": equation}}
    if method == "sie":  # conditioned on the relative group element of the two windows
        assert meta["action"]["components"] == ["lie"]
    parts = ["full", "inv", "equi"] if method == "sie" else ["full"]
    assert sorted(k.split("/")[0] for k in res["metrics"] if k.endswith("lie/r2_global")) == sorted(
        parts
    )
    assert res["skipped"]["classification"] == "the data carry no class labels"
