"""EquiCaps: each loss term against the reference's formula (AberdeenML/EquiCaps
src/models.py ``EquiCaps_3x3.forward``, written out below), the predictor-free pose loss,
two gloo ranks against one process for every gathered statistic, the recipe's weights, and
runs through the real Trainer and the evaluation stage on 3DIEBench and 3DIEBench-T."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from equissl.registries import METHODS
from equissl.ssl.base import SSLMethod
from equissl.ssl.equicaps import EQUICAPS_TERMS, equicaps_terms
from tests.conftest import TOY, compose_pretrain, write_iebench_tree

SMALL = [*TOY[2:], "data.image_size=16"]  # TOY without its method: tiny CNN, 4 x 4 maps
WORLD = 2
GATHERED = ("memax", "variance", "covariance")
#: README command --sim-coeff 0.1 --equi-factor 5 --std-coeff 10 --cov-coeff 1; MEMAX 1
PUBLISHED = {
    "invariance": 0.1,
    "equivariance": 5.0,
    "memax": 1.0,
    "variance": 10.0,
    "covariance": 1.0,
}


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def reference_terms(x_inv, y_inv, x_pose, y_pose, rho) -> dict[str, torch.Tensor]:
    """The loss of EquiCaps_3x3/4x4.forward on one process (batch_size = len(x_inv))."""
    b, k = x_inv.shape
    inv = torch.mean(torch.sum(torch.log(x_inv ** (-y_inv)), dim=1))
    x_t = torch.matmul(x_pose, rho.unsqueeze(1))
    x_t = x_t / x_t.norm(dim=(-2, -1), keepdim=True)
    y_r = y_pose / y_pose.norm(dim=(-2, -1), keepdim=True)
    equi = F.mse_loss(x_t.reshape(b, -1), y_r.reshape(b, -1))
    x = torch.cat((x_inv, x_t.reshape(b, -1)), dim=-1)
    y = torch.cat((y_inv, y_r.reshape(b, -1)), dim=-1)
    px, py = x_inv.mean(dim=0), y_inv.mean(dim=0)
    memax = -torch.sum(torch.log(px ** (-px))) + math.log(k)
    memax = memax - torch.sum(torch.log(py ** (-py))) + math.log(k)
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    std_x, std_y = torch.sqrt(x.var(dim=0) + 1e-4), torch.sqrt(y.var(dim=0) + 1e-4)
    std = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x, cov_y = x.T @ x / (b - 1), y.T @ y / (b - 1)
    cov = off_diagonal(cov_x).pow(2).sum() / cov_x.shape[0]
    cov = cov + off_diagonal(cov_y).pow(2).sum() / cov_x.shape[0]
    return {
        "invariance": inv,
        "equivariance": equi,
        "memax": memax,
        "variance": std,
        "covariance": cov,
    }


def inputs(b: int = 8, k: int = 4, p: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    act = [torch.rand(b, k, generator=g, dtype=torch.float64) * 0.9 + 0.05 for _ in range(2)]
    poses = [torch.randn(b, k, p, p, generator=g, dtype=torch.float64) for _ in range(2)]
    rot = Rotation.random(b, random_state=seed).as_matrix()
    rho = torch.eye(p, dtype=torch.float64).repeat(b, 1, 1)
    rho[:, :3, :3] = torch.from_numpy(rot)
    if p == 4:
        rho[:, :3, 3] = torch.randn(b, 3, generator=g, dtype=torch.float64)
    return [*act, *poses, rho]


@pytest.mark.parametrize("p", [3, 4])
def test_terms_match_the_reference_formula(p):
    x = inputs(p=p)
    got, ref = equicaps_terms(*x), reference_terms(*x)
    assert tuple(got) == EQUICAPS_TERMS
    for name in EQUICAPS_TERMS:
        torch.testing.assert_close(got[name], ref[name], msg=name)


def test_invariance_and_memax_by_hand():
    a1 = torch.tensor([[0.5, 0.25], [0.5, 0.25]], dtype=torch.float64)
    a2 = torch.tensor([[0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    poses = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    rho = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1)
    t = equicaps_terms(a1, a2, poses, poses, rho)
    # mean over the two samples of Σ_k −a₂ log a₁
    ce = -(0.2 * math.log(0.5) + 0.8 * math.log(0.25) + 0.6 * math.log(0.5) + 0.4 * math.log(0.25))
    ce /= 2
    torch.testing.assert_close(t["invariance"], torch.tensor(ce, dtype=torch.float64))
    # view 1: mean (0.5, 0.25); view 2: mean (0.4, 0.6); each log 2 − H(mean)
    memax = sum(math.log(2) + sum(q * math.log(q) for q in m) for m in ((0.5, 0.25), (0.4, 0.6)))
    torch.testing.assert_close(t["memax"], torch.tensor(memax, dtype=torch.float64))
    assert t["equivariance"] == 0  # same poses, identity ρ(g)


@pytest.mark.parametrize("p", [3, 4])
def test_pose_loss_is_zero_exactly_for_transformed_poses(p):
    a1, a2, pose1, pose2, rho = inputs(p=p)
    scale = torch.rand(8, 4, 1, 1, dtype=torch.float64) + 0.5  # Frobenius norm divides it out
    equal = scale * (pose1 @ rho.unsqueeze(1))
    assert equicaps_terms(a1, a2, pose1, equal, rho)["equivariance"] < 1e-30
    assert equicaps_terms(a1, a2, pose1, pose2, rho)["equivariance"] > 1e-3
    # right-multiplication: the left product is a different (wrong) target
    left = rho.unsqueeze(1) @ pose1
    assert equicaps_terms(a1, a2, pose1, left, rho)["equivariance"] > 1e-3


# ------------------------------------------------------------------------ the method
@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("equicaps")
    return {
        "3diebench": write_iebench_tree(root / "3DIEBench"),
        "3diebench_t": write_iebench_tree(root / "3DIEBench-T", latent_dim=10),
    }


def build(trees: dict[str, Path], method: str, data: str, *overrides: str) -> SSLMethod:
    from equissl.training.datamodule import PretrainDataModule

    config = compose_pretrain(
        [f"data={data}", f"data.root={trees[data]}", *SMALL, f"method={method}", *overrides]
    )
    return METHODS.get("equicaps")(config, PretrainDataModule(config["data"], 2).spec)


@pytest.mark.parametrize(
    "method, data, action, frame",
    [
        ("equicaps_3x3", "3diebench", "rotation_matrix", "object"),
        ("equicaps_3x3", "3diebench_t", "rotation_matrix", "object"),
        ("equicaps_4x4", "3diebench_t", "transform_object", "object"),
        ("equicaps_4x4", "3diebench_t", "transform_base", "base"),
    ],
)
def test_the_action_is_rho_of_the_pose_size_and_frame(trees, method, data, action, frame):
    m = build(trees, method, data, f"method.frame={frame}")
    assert m.action.components == (action,)
    assert m.weights == PUBLISHED and m.capsules.map_size == (4, 4)
    assert m.part_dims == {"full": 16}
    m.eval()
    batch = m.backbone(torch.zeros(2, 3, 16, 16))
    assert set(m.represent(torch.zeros(2, 3, 16, 16))) == {"full"} and batch.shape == (2, 16)


def test_config_errors(trees):
    with pytest.raises(ValueError, match="not available"):
        build(trees, "equicaps_4x4", "3diebench")  # 4x4 needs 10-value latents
    with pytest.raises(ValueError, match="frame"):
        build(trees, "equicaps_4x4", "3diebench_t", "method.frame=world")
    with pytest.raises(ValueError, match="not ρ"):
        build(trees, "equicaps_3x3", "3diebench_t", "method.action=[transform_base]")


def test_capsule_parts(trees):
    m = build(trees, "equicaps_4x4", "3diebench_t", "method.capsule_parts=true").eval()
    assert m.part_dims == {"full": 16, "act": 32, "pose": 512}
    parts = m.represent(torch.randn(3, 3, 16, 16))
    assert {k: tuple(v.shape) for k, v in parts.items()} == {
        "full": (3, 16),
        "act": (3, 32),
        "pose": (3, 512),
    }


def test_a_changed_weight_changes_the_loss(trees):
    m = build(trees, "equicaps_3x3", "3diebench")
    terms = reference_terms(*inputs())
    expected = sum(PUBLISHED[k] * terms[k] for k in PUBLISHED)
    torch.testing.assert_close(m.total_loss(terms), expected)
    for name in PUBLISHED:
        changed = build(trees, "equicaps_3x3", "3diebench", f"method.weights.{name}=2.5")
        assert not torch.allclose(changed.total_loss(terms), expected), name


# ---------------------------------------------------------------------- two gloo ranks
def gloo_worker(rank: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=WORLD)
    try:
        local = [t.chunk(WORLD)[rank].clone().requires_grad_() for t in inputs(p=4)[:4]]
        rho = inputs(p=4)[4].chunk(WORLD)[rank]
        terms = equicaps_terms(*local, rho)
        grads = {
            k: torch.autograd.grad(terms[k], local, retain_graph=True, allow_unused=True)
            for k in EQUICAPS_TERMS
        }
        out = {"terms": {k: v.detach() for k, v in terms.items()}, "grads": grads}
        torch.save(out, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.e2e
def test_two_gloo_ranks_match_one_process(tmp_path):
    mp.spawn(gloo_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    full = [t.clone().requires_grad_() for t in inputs(p=4)[:4]]
    terms = equicaps_terms(*full, inputs(p=4)[4])
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for name in EQUICAPS_TERMS:
        got = [r["terms"][name] for r in ranks]
        if name in GATHERED:  # statistics of the gathered batch: the same on every rank
            for g in got:
                torch.testing.assert_close(g, terms[name].detach(), msg=name)
        else:  # per-rank means over equal shares (as the reference)
            torch.testing.assert_close(sum(got) / WORLD, terms[name].detach(), msg=name)
        # DDP averages the ranks' gradients: grad_r / WORLD is the one-process gradient
        want = torch.autograd.grad(terms[name], full, retain_graph=True, allow_unused=True)
        for i, w in enumerate(want):
            if w is None:
                assert all(r["grads"][name][i] is None for r in ranks)
                continue
            g = torch.cat([r["grads"][name][i] for r in ranks]) / WORLD
            torch.testing.assert_close(g, w, msg=f"{name} input {i}")


# ------------------------------------------------------------------ real Trainer runs
PROBES = ("classification", "rotation", "translation", "translation_base", "translation_object")


@pytest.mark.parametrize(
    "method, data, frame",
    [
        ("equicaps_3x3", "3diebench", "object"),
        ("equicaps_4x4", "3diebench_t", "object"),
        ("equicaps_4x4", "3diebench_t", "base"),
    ],
)
def test_pretrain_and_evaluate(trees, tmp_path, method, data, frame):
    from equissl.checkpointing import load_checkpoint
    from equissl.eval.evaluate import evaluate_checkpoint
    from equissl.training.pretrain import pretrain

    config = compose_pretrain(
        [
            f"data={data}",
            f"data.root={trees[data]}",
            *SMALL,
            f"method={method}",
            f"method.frame={frame}",
            "trainer.max_steps=2",
            "eval.num_workers=0",
            f"probe=[{','.join(PROBES)}]",
            *(f"eval.probes.{p}.epochs=1" for p in PROBES),
        ]
    )
    ckpt = pretrain(config, tmp_path / "run")
    meta = load_checkpoint(ckpt)["equissl"]
    assert meta["config"]["method"]["impl"] == "equicaps"
    assert meta["action"]["dim"] == (9 if method == "equicaps_3x3" else 16)
    evaluate_checkpoint(ckpt, config["eval"], tmp_path / "eval", progress=False)
    metrics = json.loads((tmp_path / "eval" / "results.json").read_text())["metrics"]
    assert {"full/classification/top1", "full/rotation/r2_global"} <= set(metrics)
    translation = {f"full/{p}/{r2}" for p in PROBES[2:] for r2 in ("r2_global", "r2_sklearn")}
    if data == "3diebench_t":
        assert translation <= set(metrics)
    else:
        assert not translation & set(metrics)
