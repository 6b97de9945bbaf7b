"""The SIE paper's baselines (``vicreg_partinv``, ``simclr_augself``, ``equimod_vicreg``,
``equimod_simclr``, ``sen``): each loss against its formula written out, two gloo ranks
against one process, and a run through the real Trainer with both actions.

Formulas follow SIE ``src/models.py`` (classes ``VICRegPartInv``, ``SimCLRAugSelf``,
``VICRegEquiMod``, ``SimCLREquiMod``, ``SimCLROnlyEqui``, ``SIEOnlyEqui``) with the main.py
defaults / README command: sim 10, std 10, cov 1, ec_weight 1, temperature 0.1, ``--equi
256``; EquiMod's λ = 1, its authors' ``--lmbd`` (docs/protocols.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from equissl.registries import METHODS
from equissl.ssl.base import SSLMethod
from equissl.ssl.equimod_simclr import EQUIMOD_SIMCLR_TERMS, equimod_simclr_terms
from equissl.ssl.equimod_vicreg import EQUIMOD_VICREG_TERMS, equimod_vicreg_terms
from equissl.ssl.sen import SEN_TERMS, sen_terms
from equissl.ssl.sie import SIE_TERMS, sie_terms
from equissl.ssl.simclr_augself import AUGSELF_TERMS, augself_terms
from equissl.ssl.vicreg_partinv import PARTINV_TERMS, partinv_terms
from tests.conftest import TOY, compose_pretrain, write_iebench_tree
from tests.ssl.test_losses import reference_vicreg
from tests.ssl.test_simclr import nt_xent

#: EquiMod's weight of its equivariant loss (the EquiMod authors' released scripts)
LAMBDA = 1.0
BASELINES = ("vicreg_partinv", "simclr_augself", "equimod_vicreg", "equimod_simclr", "sen")
SMALL = [*TOY[2:], "method.projector=[16,16]"]  # TOY without its method, narrow heads
WORLD = 2
T = 0.1  # --simclr-temp


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_iebench_tree(tmp_path_factory.mktemp("baselines") / "3DIEBench")


def build(tree: Path, name: str, *overrides: str) -> SSLMethod:
    from equissl.training.datamodule import PretrainDataModule

    config = compose_pretrain([f"data.root={tree}", *SMALL, f"method={name}", *overrides])
    return METHODS.get(name)(config, PretrainDataModule(config["data"], 2).spec)


@pytest.fixture(scope="module")
def methods(tree: Path) -> dict[str, SSLMethod]:
    narrow = {"vicreg_partinv": ["method.equi_dim=4"]}  # 12 of the 16 embedding dims invariant
    return {name: build(tree, name, *narrow.get(name, [])) for name in BASELINES}


def weighted(method: SSLMethod, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    assert set(terms) == set(method.terms)
    return method.total_loss(terms)


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------ recipes in the yaml
def test_recipes(methods, tree):
    """Defaults of each option: the reference's widths, temperatures and weights."""
    expected = {
        "vicreg_partinv": {"invariance": 10.0, "variance": 10.0, "covariance": 1.0},
        "simclr_augself": {"infonce": 1.0, "action": 1.0},
        "equimod_vicreg": {
            "invariance": 10.0,
            "variance": 10.0,
            "covariance": 1.0,
            "equivariance": LAMBDA * 10,
            "equi_variance": LAMBDA * 10,
            "equi_covariance": LAMBDA * 1,
        },
        "equimod_simclr": {"infonce": 1.0, "equi_infonce": LAMBDA},
        "sen": {"equi_infonce": 1.0},
    }
    for name in BASELINES:
        mcfg = compose_pretrain([f"data.root={tree}", f"method={name}"])["method"]
        assert mcfg["projector"] == [2048, 2048, 2048], name
        assert mcfg["weights"] == pytest.approx(expected[name]), name
        assert mcfg.get("temperature", T) == T
        m = methods[name]
        assert m.uses_action == (name != "vicreg_partinv")
        if hasattr(m, "criterion"):
            assert m.criterion.gather_distributed and m.criterion.temperature == T
    assert (
        compose_pretrain([f"data.root={tree}", "method=vicreg_partinv"])["method"]["equi_dim"]
        == 256
    )
    assert methods["vicreg_partinv"].inv_dim == 12
    assert methods["vicreg_partinv"].parts.keys() == {"full"}  # the representation is whole


# ------------------------------------------------------------------- formulas by hand
def test_vicreg_partinv_formula(methods):
    m = methods["vicreg_partinv"]
    za, zb = rand(12, 8, seed=0), rand(12, 8, seed=1)
    terms = partinv_terms(za, zb, inv_dim=6)
    _, std, cov = reference_vicreg(za, zb)
    inv = ((za[:, :6] - zb[:, :6]) ** 2).mean()
    torch.testing.assert_close(terms["invariance"], inv)
    torch.testing.assert_close(terms["variance"], std)
    torch.testing.assert_close(terms["covariance"], cov)
    torch.testing.assert_close(weighted(m, terms), 10 * inv + 10 * std + 1 * cov)
    # hand-made: views equal on the invariant dims, different on the last two
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    b = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0]])
    assert partinv_terms(a, b, inv_dim=2)["invariance"].item() == 0.0
    assert partinv_terms(a, b, inv_dim=3)["invariance"].item() == pytest.approx((9 + 16) / 6)


def test_vicreg_partinv_splits_the_embedding(tree):
    m = build(tree, "vicreg_partinv", "method.projector=[16,2048]")
    assert (m.inv_dim, m.equi_dim) == (2048 - 256, 256)  # MSE on dims [0:1792]
    with pytest.raises(ValueError, match="equi_dim"):
        build(tree, "vicreg_partinv", "method.equi_dim=16")  # the whole 16-d embedding


def test_simclr_augself_formula(methods):
    m = methods["simclr_augself"]
    za, zb = rand(8, 5, seed=2), rand(8, 5, seed=3)
    pred, action = rand(8, 4, seed=4), rand(8, 4, seed=5)
    terms = augself_terms(m.criterion, za, zb, pred, action)
    info = nt_xent(za, zb, T)
    mse = ((pred - action) ** 2).mean()
    torch.testing.assert_close(terms["infonce"], info)
    torch.testing.assert_close(weighted(m, terms), info + 1.0 * mse)
    # hand-made: one sample, predicted (1, 0, 0, 0) for (0, 0, 0, 1) -> MSE 2/4
    e = torch.eye(4)
    assert augself_terms(m.criterion, e, e, e[:1], e[3:])["action"].item() == 0.5


def test_simclr_augself_head_is_the_references(methods, tree):
    head = methods["simclr_augself"].action_head  # tiny_cnn: D = 16 -> 32-32-32-4
    widths = [(layer.in_features, layer.out_features) for layer in head if hasattr(layer, "bias")]
    assert widths == [(32, 32), (32, 32), (32, 4)]
    assert sum(isinstance(layer, torch.nn.ReLU) for layer in head) == 2
    rc = build(tree, "simclr_augself", "method.action=[rotation,color]", "method.action_hidden=[8]")
    assert [layer.out_features for layer in rc.action_head if hasattr(layer, "bias")] == [8, 6]


def test_equimod_vicreg_formula(methods):
    m = methods["equimod_vicreg"]
    inv1, inv2, equi1, equi2, pred = (rand(10, 4, seed=s) for s in range(10, 15))
    terms = equimod_vicreg_terms(inv1, inv2, equi1, equi2, pred)
    _, std_i, cov_i = reference_vicreg(inv1, inv2)
    _, std_e, cov_e = reference_vicreg(equi1, equi2)  # the prediction is not regularised
    mse_i, mse_e = ((inv1 - inv2) ** 2).mean(), ((pred - equi2) ** 2).mean()
    loss_inv = 10 * mse_i + 10 * std_i + 1 * cov_i
    loss_equi = 10 * mse_e + 10 * std_e + 1 * cov_e
    torch.testing.assert_close(weighted(m, terms), loss_inv + LAMBDA * loss_equi)
    for name, value in (
        ("equivariance", mse_e),
        ("equi_variance", std_e),
        ("equi_covariance", cov_e),
    ):
        torch.testing.assert_close(terms[name], value)
    # hand-made: a constant prediction leaves equi_variance untouched
    same = equimod_vicreg_terms(inv1, inv2, equi1, equi2, torch.zeros_like(pred))
    torch.testing.assert_close(same["equi_variance"], terms["equi_variance"])


def test_equimod_simclr_formula(methods):
    m = methods["equimod_simclr"]
    inv1, inv2, pred, equi2 = (rand(6, 5, seed=s) for s in range(20, 24))
    terms = equimod_simclr_terms(m.criterion, inv1, inv2, pred, equi2)
    loss_inv, loss_equi = nt_xent(inv1, inv2, T), nt_xent(pred, equi2, T)
    torch.testing.assert_close(terms["infonce"], loss_inv)
    torch.testing.assert_close(terms["equi_infonce"], loss_equi)
    torch.testing.assert_close(weighted(m, terms), loss_inv + LAMBDA * loss_equi)


def test_sen_formula(methods):
    m = methods["sen"]
    pred, equi2 = rand(6, 5, seed=30), rand(6, 5, seed=31)
    terms = sen_terms(m.criterion, pred, equi2)
    torch.testing.assert_close(weighted(m, terms), nt_xent(pred, equi2, T))
    # hand-made: two orthogonal pairs, the prediction is exact
    e = torch.eye(2, dtype=torch.float64)
    expected = torch.log(1 + 2 * torch.exp(torch.tensor(-10.0, dtype=torch.float64)))
    torch.testing.assert_close(sen_terms(m.criterion, e, e)["equi_infonce"], expected)


def test_sie_onlyequi_weights_equivariance_by_sim_coeff(tree):
    """SIE ``SIEOnlyEqui.forward``: sim·MSE(pred, equi₂) + std·std_loss + std·pred_std_loss
    + cov·cov_loss — ``equi_factor`` is not used."""
    weights = compose_pretrain([f"data.root={tree}", "method=sie_onlyequi"])["method"]["weights"]
    equi1, equi2, pred = (rand(12, 4, seed=s) for s in range(40, 43))
    terms = sie_terms(None, None, equi1, equi2, pred)
    _, std, cov = reference_vicreg(equi1, equi2)
    pred_std = torch.relu(1 - torch.sqrt(pred.var(0) + 1e-4)).mean() / 2
    expected = 10 * ((pred - equi2) ** 2).mean() + 10 * std + 10 * pred_std + 1 * cov
    total = sum(weights[k] * terms[k] for k in SIE_TERMS)
    torch.testing.assert_close(total, expected)


# ---------------------------------------------------------------- two gloo ranks
def gloo_inputs() -> dict[str, list[torch.Tensor]]:
    """Inputs of each method's term function, ``[16, 6]`` (actions ``[16, 4]``)."""
    shapes = {
        "vicreg_partinv": [(16, 6)] * 2,
        "simclr_augself": [(16, 6), (16, 6), (16, 4), (16, 4)],
        "equimod_vicreg": [(16, 6)] * 5,
        "equimod_simclr": [(16, 6)] * 4,
        "sen": [(16, 6)] * 2,
    }
    return {
        name: [rand(*s, seed=100 * i + j) for j, s in enumerate(ss)]
        for i, (name, ss) in enumerate(shapes.items())
    }


def all_terms(criteria: dict[str, Any], x: dict[str, list[torch.Tensor]]) -> dict[str, dict]:
    return {
        "vicreg_partinv": partinv_terms(*x["vicreg_partinv"], inv_dim=4),
        "simclr_augself": augself_terms(criteria["simclr_augself"], *x["simclr_augself"]),
        "equimod_vicreg": equimod_vicreg_terms(*x["equimod_vicreg"]),
        "equimod_simclr": equimod_simclr_terms(criteria["equimod_simclr"], *x["equimod_simclr"]),
        "sen": sen_terms(criteria["sen"], *x["sen"]),
    }


def backward(terms: dict[str, dict], weights: dict[str, dict]) -> None:
    sum(weights[n][k] * v for n, t in terms.items() for k, v in t.items()).backward()


def gloo_worker(rank: int, tmp: str, criteria: dict, weights: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=WORLD)
    try:
        local = {
            n: [t.chunk(WORLD)[rank].clone().requires_grad_() for t in ts]
            for n, ts in gloo_inputs().items()
        }
        terms = all_terms(criteria, local)
        backward(terms, weights)
        out = {
            "terms": {n: {k: v.detach() for k, v in t.items()} for n, t in terms.items()},
            "grads": {n: [t.grad for t in ts] for n, ts in local.items()},
        }
        torch.save(out, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


#: terms that are means over each rank's own samples (MSE, InfoNCE over local anchors);
#: every other term is a statistic of the gathered batch
PER_RANK = {
    "vicreg_partinv": {"invariance"},
    "simclr_augself": {"infonce", "action"},
    "equimod_vicreg": {"invariance", "equivariance"},
    "equimod_simclr": {"infonce", "equi_infonce"},
    "sen": {"equi_infonce"},
}


@pytest.mark.e2e
def test_two_gloo_ranks_match_one_process(methods, tmp_path):
    criteria = {n: m.criterion for n, m in methods.items() if hasattr(m, "criterion")}
    weights = {n: m.weights for n, m in methods.items()}
    mp.spawn(gloo_worker, args=(str(tmp_path), criteria, weights), nprocs=WORLD, join=True)
    full = {n: [t.clone().requires_grad_() for t in ts] for n, ts in gloo_inputs().items()}
    terms = all_terms(criteria, full)
    backward(terms, weights)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    declared = {
        "vicreg_partinv": PARTINV_TERMS,
        "simclr_augself": AUGSELF_TERMS,
        "equimod_vicreg": EQUIMOD_VICREG_TERMS,
        "equimod_simclr": EQUIMOD_SIMCLR_TERMS,
        "sen": SEN_TERMS,
    }
    for name, named in terms.items():
        assert tuple(named) == declared[name] == methods[name].terms
        for key, value in named.items():
            got = [r["terms"][name][key] for r in ranks]
            if key in PER_RANK[name]:
                # per-rank means over equal shares: their average is the one-process value
                assert not torch.allclose(got[0], got[1]), (name, key)
                torch.testing.assert_close(sum(got) / WORLD, value.detach())
            else:  # statistics of the gathered batch: the same on every rank
                for g in got:
                    torch.testing.assert_close(g, value.detach())
        # the all-gather's backward sums every rank's gradient into the local slice and a
        # local mean over N / WORLD samples is WORLD x steeper: each rank holds WORLD x its
        # slice of the one-process gradient, and DDP averages over ranks
        for i, t in enumerate(full[name]):
            got = torch.cat([r["grads"][name][i] for r in ranks]) / WORLD
            torch.testing.assert_close(got, t.grad, msg=f"{name} input {i}")


# ------------------------------------------------------------------ real Trainer runs
@pytest.mark.parametrize("name", BASELINES)
def test_pretrain_and_evaluate(name, tree, tmp_path):
    from equissl.checkpointing import load_checkpoint
    from equissl.eval.evaluate import evaluate_checkpoint
    from equissl.training.pretrain import pretrain

    common = [
        f"data.root={tree}",
        *SMALL,
        f"method={name}",
        *(["method.equi_dim=4"] if name == "vicreg_partinv" else []),
        "trainer.max_steps=2",
        "eval.num_workers=0",
        "probe=[classification,rotation]",
        "eval.probes.classification.epochs=1",
        "eval.probes.rotation.epochs=1",
    ]
    for action, dim in (("[rotation]", 4), ("[rotation,color]", 6)):
        config = compose_pretrain([*common, f"method.action={action}"])
        run = tmp_path / f"run{dim}"
        ckpt = pretrain(config, run)
        meta = load_checkpoint(ckpt)["equissl"]
        assert meta["config"]["method"]["impl"] == name
        if name != "vicreg_partinv":
            assert meta["action"]["dim"] == dim
    results = evaluate_checkpoint(ckpt, config["eval"], tmp_path / "eval", progress=False)
    assert {"full/classification/top1", "full/rotation/r2_global"} <= set(results["metrics"])


def test_methods_reject_a_third_view(tree):
    with pytest.raises(ValueError, match="num_views"):
        build(tree, "sen", "method.num_views=3")


def test_hypernet_width_follows_the_action(tree):
    for action, dim in (("[rotation]", 4), ("[rotation,color]", 6)):
        for name in ("equimod_vicreg", "equimod_simclr", "sen"):
            m = build(tree, name, f"method.action={action}")
            assert (m.predictor.dim, m.predictor.action_dim) == (16, dim)
