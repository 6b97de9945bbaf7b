"""``method=lie_vicreg`` (issue 11): the VICReg class with the released code's values, its
recipes on every equation, and SIE conditioned on a PDE subgroup — each pretrained for two
steps on tiny data and evaluated with the coefficient probe.

``lie_vicreg`` is a config of the ``vicreg`` class (``method.impl == "vicreg"``), so the
two-rank gloo equivalence of its gathered statistics is ``tests/ssl/test_distributed.py``'s
``vicreg_terms`` check.
"""

import json

import numpy as np
import pytest
import torch
from torch import nn

from equissl.datasets.base import DataSpec, build_dataset
from equissl.datasets.pde import generate_pde
from equissl.datasets.pde.dataset import split_mask
from equissl.eval.evaluate import evaluate_checkpoint
from equissl.ssl.loading import build_method
from equissl.ssl.vicreg import vicreg_terms
from equissl.training.pretrain import pretrain
from tests.conftest import compose_pretrain
from tests.datasets.pde.test_lie_views import write_ns_file
from tests.ssl.test_losses import reference_vicreg

SPEC = DataSpec(
    view_shape=(3, 16, 32),
    channels=("t", "x", "u"),
    coord_channels=("t", "x"),
    action_space={"kind": "pde", "params": {"equation": "burgers"}},
    coeff_names=("nu",),
)
FAST = [
    "data.generate=null",
    "data.batch_size=4",
    "data.eval_views=2",
    "trainer.max_steps=2",
    "trainer.enable_progress_bar=false",
    "logger.name=none",
    "eval.probes.lie.epochs=2",
    "eval.probes.coefficients.epochs=2",
]


def lie_vicreg():
    cfg = compose_pretrain(["method=lie_vicreg", "data=pde_burgers", "data.root=/unused"])
    return build_method(cfg, SPEC)


def test_loss_is_vicreg_25_25_1_on_hand_made_tensors():
    m = lie_vicreg()
    g = torch.Generator().manual_seed(0)
    za, zb = (torch.randn(32, 512, generator=g, dtype=torch.float64) for _ in range(2))
    inv, std, cov = reference_vicreg(za, zb)
    expected = 25.0 * inv + 25.0 * std + 1.0 * cov
    torch.testing.assert_close(m.total_loss(vicreg_terms(za, zb)), expected)
    assert m.mcfg["impl"] == "vicreg" and m.mcfg["name"] == "lie_vicreg"


def test_projector_and_optimiser_are_the_released_ones():
    m = lie_vicreg()
    assert m.repr_dim == 512 and m.backbone.trunk.conv1.in_channels == 3
    linears = [x for x in m.projector.modules() if isinstance(x, nn.Linear)]
    norms = [x for x in m.projector.modules() if isinstance(x, nn.BatchNorm1d)]
    assert [(x.in_features, x.out_features) for x in linears] == [(512, 512)] * 3
    # hidden Linears carry no bias (lightly: BatchNorm follows; the code's bias is redundant)
    assert linears[-1].bias is None and len(norms) == 2
    opt = m.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert (decay["lr"], decay["weight_decay"], no_decay["weight_decay"]) == (3e-4, 1e-6, 0.0)
    bn = {id(p) for x in m.modules() if isinstance(x, nn.BatchNorm2d) for p in x.parameters()}
    assert bn <= {id(p) for p in no_decay["params"]}  # every BN, downsample ones included


def pretraining_count(data: dict) -> int:
    """How many of the recipe's generated trajectories its pretraining split holds."""
    ids = np.arange(data["generate"]["num_trajectories"])
    return int(split_mask(ids, "train", data["val_every"], data["labelled_split"]).sum())


@pytest.mark.parametrize("equation", ["kdv", "ks", "burgers"])
def test_cpu_recipes_have_the_papers_setting(equation):
    cfg = compose_pretrain([f"experiment=cpu/lie_vicreg_{equation}"])
    paper = compose_pretrain([f"experiment=lie_vicreg_{equation}"])
    assert (
        cfg["method"] == paper["method"] and cfg["data"]["strengths"] == paper["data"]["strengths"]
    )
    assert paper["data"]["batch_size"] == 32 and paper["trainer"]["max_epochs"] == 100
    assert pretraining_count(paper["data"]) == 10_000  # 10k pretrain
    assert (paper["data"]["window"], paper["data"]["composition"]) == (16, "strang")
    assert paper["backbone"]["name"] == "resnet18" and not paper["backbone"]["zero_init_residual"]


def test_ns_recipe():
    paper = compose_pretrain(["experiment=lie_vicreg_ns"])
    assert paper["data"]["generate"]["params"]["nx"] == 128  # PDEArena's grid
    default = compose_pretrain(["method=lie_vicreg", "data=pde_ns"])["data"]["generate"]
    assert (default["num_trajectories"], default["params"]["nx"]) == (96, 32)  # CPU-sized
    assert paper["data"]["batch_size"] == 64
    assert pretraining_count(paper["data"]) == 26_624  # --dataset-size
    ids = np.arange(paper["data"]["generate"]["num_trajectories"])
    every = paper["data"]["val_every"]
    assert int(split_mask(ids, "labelled", every, True).sum()) == 1_664  # the valid split
    assert int(split_mask(ids, "val", every, True).sum()) == 1_664  # the test split
    assert paper["data"]["strengths"] == {
        "t_shift": 0.0,
        "x_shift": 1.0,
        "y_shift": 1.0,
        "scale": 0.1,
        "boost_x": 0.01,
        "boost_y": 0.01,
        "quad_boost_x": 0.01,
        "quad_boost_y": 0.01,
    }
    # the quadratic boosts as the released code applied them (the paper's augmentation)
    assert paper["data"]["generators"] == "released"


def tiny_data(equation, root):
    if equation == "ns":
        root.mkdir(parents=True)
        write_ns_file(root / "ns.h5", n=10, frames=18, nx=8)
    else:
        small = {"nx": 32, "nt": 18, "horizon": 4.0, "substeps": 4, "progress": False}
        generate_pde(equation, root, num_trajectories=10, **small)
    return root


def run(overrides, tmp_path):
    cfg = compose_pretrain(overrides)
    ckpt = pretrain(cfg, tmp_path / "run")
    evaluate_checkpoint(ckpt, cfg["eval"], tmp_path / "eval", progress=False)
    return cfg, json.loads((tmp_path / "eval" / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("equation", ["kdv", "ks", "burgers", "ns"])
def test_lie_vicreg_pretrains_and_evaluates_on_each_equation(tmp_path, equation):
    root = tiny_data(equation, tmp_path / "data")
    _, res = run([f"experiment=cpu/lie_vicreg_{equation}", f"data.root={root}", *FAST], tmp_path)
    assert res["method"] == "lie_vicreg" and res["data"] == f"pde_{equation}"
    if equation in ("kdv", "ks"):  # no coefficient in these data
        assert res["skipped"]["coefficients"] == "the data carry no coefficients to regress"
        return
    for metric in ("mse", "nmse", "rel_error"):
        for prefix in ("", "mean_", "supervised_"):
            assert f"full/coefficients/{prefix}{metric}" in res["metrics"]


TINY_GENERATE = {
    "ns": {"nx": 8, "nt": 20, "substeps": 4},
    "1d": {"nx": 32, "nt": 28, "horizon": 4.0, "substeps": 4},
}


@pytest.mark.slow
@pytest.mark.parametrize("equation", ["kdv", "ks", "burgers", "ns"])
def test_the_issue_check_generates_pretrains_and_reports_both_tasks(tmp_path, equation):
    """``equissl-pretrain method=lie_vicreg data=pde_<eq>`` as issue 11 checks it: no recipe,
    the data yaml's own ``data.generate`` writes the (here tiny) set into an empty root, and
    the evaluation reports coefficient regression and time-stepping with their baselines."""
    params = TINY_GENERATE["ns" if equation == "ns" else "1d"]
    _, res = run(
        [
            "method=lie_vicreg",
            f"data=pde_{equation}",
            f"data.root={tmp_path / 'data'}",
            "data.generate.num_trajectories=10",
            *(f"++data.generate.params.{k}={v}" for k, v in params.items()),
            *FAST[1:],
            "eval.probes.time_stepping.epochs=1",
            "eval.probes.time_stepping.samples_per_trajectory=1",
            "eval.probes.time_stepping.history=4",
            "eval.probes.time_stepping.future=4",
        ],
        tmp_path,
    )
    assert list((tmp_path / "data").glob(f"{equation}_chunk*.h5"))  # generated on first use
    ts = {k.split("/")[-1] for k in res["metrics"] if k.startswith("full/time_stepping/")}
    assert {"nmse_1step", "nmse_rollout", "none_nmse_1step", "none_nmse_rollout"} <= ts
    if equation in ("kdv", "ks"):  # no coefficient: no regression, no oracle row
        assert "coefficients" in res["skipped"] and not any("oracle" in k for k in ts)
        return
    assert {"oracle_nmse_1step", "oracle_nmse_rollout"} <= ts
    for prefix in ("", "mean_", "supervised_"):
        assert f"full/coefficients/{prefix}rel_error" in res["metrics"]


@pytest.mark.slow
def test_sie_on_a_pde_subgroup_gets_the_group_element_between_the_views(tmp_path):
    root = tiny_data("burgers", tmp_path / "data")
    cfg = compose_pretrain(["experiment=cpu/sie_pde_burgers", f"data.root={root}", *FAST])
    ds = build_dataset(cfg["data"], "train", 2)
    method = build_method(cfg, ds.spec())
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    action = method.relative_action(batch["latents"], 0, 1)  # what SIE is conditioned on
    eps = batch["latents"][..., :4].double()  # (t_shift, x_shift, boost, scale)
    assert method.action.components == ("x_shift", "boost") and action.shape == (4, 2)
    torch.testing.assert_close(action.double(), eps[:, 1, 1:3] - eps[:, 0, 1:3], atol=1e-4, rtol=0)
    g = ds.group.element(eps)  # the subgroup element between the views, whole
    full = ds.group.relative(eps[:, 0], eps[:, 1])
    torch.testing.assert_close(ds.group.element(full), torch.linalg.inv(g[:, 0]) @ g[:, 1])
    assert full[:, [0, 3]].abs().max() < 1e-6  # nothing outside the subgroup
    _, res = run(["experiment=cpu/sie_pde_burgers", f"data.root={root}", *FAST], tmp_path)
    assert res["config"]["method"]["action"] == ["x_shift", "boost"]
    assert {"full/coefficients/mse", "equi/coefficients/supervised_mse"} <= set(res["metrics"])
    assert "equi/lie/r2_global" in res["metrics"]
