"""Predictor probe: MRR, Hit@k and PRE against hand-computed values (SIE eval_MRR_Hk.py,
eval_prediction_errors.py), the skip for methods without a predictor, and a run on a tiny
SIE checkpoint checked against a reference-style loop."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from equissl.datasets.iebench_actions import IEBenchActionSpace
from equissl.eval.evaluate import evaluate_checkpoint
from equissl.eval.probes.predictor_retrieval import (
    pre_metric,
    prediction_error,
    predictor_metrics,
    ranking_metrics,
)
from equissl.plugins import load_plugins
from equissl.registries import METHODS, PROBES
from equissl.ssl.loading import load_method
from equissl.training.pretrain import pretrain
from tests.conftest import compose_pretrain

ROTATIONS = IEBenchActionSpace(7)


def rotation(a, b):
    return ROTATIONS.target("rotation", a, b)


def test_ranking_metrics_by_hand():
    m = ranking_metrics(torch.tensor([1, 2, 4, 1, 10, 3]), [1, 2, 5, 10])
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 + 1 / 10 + 1 / 3) / 6)
    assert (m["hit@1"], m["hit@2"], m["hit@5"], m["hit@10"]) == pytest.approx(
        (2 / 6, 3 / 6, 5 / 6, 6 / 6)
    )


def test_predictions_are_ranked_among_their_own_objects_views():
    # object 0: e = (1,0), (0,1), (-1,0); object 1: e scaled copies of object 0's, so a
    # search over the whole split would tie — ranking is within each object only
    e0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    emb = torch.stack([e0, 2 * e0])
    pred = torch.stack(
        [
            torch.tensor([[1.0, 0.1], [0.9, 0.5], [0.2, 1.0]]),  # ranks 1, 2, 3
            torch.tensor([[-1.0, 0.2], [0.1, 1.0], [-1.0, -0.1]]),  # ranks 3, 1, 1
        ]
    )
    metrics, ranks = predictor_metrics(pred, emb, [1, 2])
    assert ranks.tolist() == [1, 2, 3, 3, 1, 1]
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 3 + 1 + 1) / 6)
    assert metrics["hit@1"] == pytest.approx(3 / 6) and metrics["hit@2"] == pytest.approx(4 / 6)
    # unnormalised (the reference's --no-norm): raw inner products rank differently
    pred = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    _, raw = predictor_metrics(pred, torch.tensor([[[1.0, 0.0], [3.0, 0.1]]]), [1], False)
    assert raw.tolist() == [2, 1]


def euler(seed: int, n: int) -> torch.Tensor:
    """Latents ``[n, 7]`` with uniform XYZ Euler angles in (−π/2, π/2)."""
    rng = np.random.default_rng(seed)
    lat = np.zeros((n, 7))
    lat[:, :3] = rng.uniform(-np.pi / 2, np.pi / 2, (n, 3))
    return torch.from_numpy(lat).float()


def scipy_pre(lat_t: torch.Tensor, lat_n: torch.Tensor) -> np.ndarray:
    """The reference's error: 1 − (q_t · q_n)², absolute quaternions from scipy."""
    qt = Rotation.from_euler("xyz", lat_t[:, :3].double().numpy()).as_quat()
    qn = Rotation.from_euler("xyz", lat_n[:, :3].double().numpy()).as_quat()
    return 1 - (qt * qn).sum(1) ** 2


def test_prediction_error_is_the_references_formula():
    a, b = euler(0, 50), euler(1, 50)
    assert prediction_error(rotation(a, b)) == pytest.approx(scipy_pre(a, b).mean(), abs=1e-6)
    assert prediction_error(rotation(a, a)) == pytest.approx(0.0, abs=1e-6)
    # a half turn about any axis: q_t · q_n = cos(90°) = 0, the largest error
    half = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    assert prediction_error(torch.tensor([[1.0, 0.0, 0.0, 0.0]])) == 1.0
    assert prediction_error(half) == 0.0


def test_pre_uses_the_nearest_neighbour_over_the_bank():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    bank_lat = euler(2, 4)
    pred = torch.tensor([[0.9, 0.1], [0.1, -0.8], [-0.2, -0.1]])  # nearest rows 0, 3, 2
    target = euler(3, 3)
    want = scipy_pre(target, bank_lat[[0, 3, 2]]).mean()
    assert pre_metric(pred, target, bank, bank_lat, rotation) == pytest.approx(want, abs=1e-6)
    # with 30° between target and neighbour about z: 1 − cos²(15°)
    z = torch.zeros(1, 7)
    z30 = z.clone()
    z30[0, 2] = math.radians(30)
    got = pre_metric(torch.tensor([[1.0, 0.0]]), z, bank[:1], z30, rotation)
    assert got == pytest.approx(1 - math.cos(math.radians(15)) ** 2, abs=1e-6)


def test_which_methods_have_a_predictor():
    load_plugins()
    with_predictor = {"sie": "equi", "equimod_vicreg": "full", "equimod_simclr": "full",
                      "sen": "full"}  # fmt: skip
    for name in ("sie", "equimod_vicreg", "equimod_simclr", "sen", "vicreg", "simclr",
                 "simclr_augself", "vicreg_partinv"):  # fmt: skip
        assert METHODS.get(name).predictor_part == with_predictor.get(name)


def test_unknown_pre_bank_is_refused():
    cfg = {"impl": "predictor", "seed": 0, "hits": [1], "normalize": True,
           "pre_bank": "train", "batch_size": 8}  # fmt: skip
    with pytest.raises(ValueError, match="pre_bank"):
        PROBES.get("predictor")("predictor", cfg)


TINY = [
    "backbone=tiny_cnn_schema",
    "backbone.width=12",
    "trainer=cpu",
    "data.batch_size=4",
    "data.image_size=32",
    "data.num_workers=0",
    "logger=csv",
    "logger.name=none",
    "trainer.enable_progress_bar=false",
    "trainer.max_steps=2",
    "probe=[knn,predictor]",
    "eval.num_workers=0",
    "eval.device=cpu",
]


def test_tiny_sie_checkpoint_matches_a_reference_style_loop(iebench_tree, tmp_path):
    config = compose_pretrain(
        [
            f"data.root={iebench_tree}",
            "method=sie",
            "method.inv_dim=4",
            "method.projector=[8]",
            *TINY,
        ]  # fmt: skip
    )
    ckpt = pretrain(config, tmp_path / "sie")
    res = evaluate_checkpoint(ckpt, config["eval"], tmp_path / "eval_sie", progress=False)
    m = res["metrics"]
    keys = {"mrr", "hit@1", "hit@2", "hit@5", "hit@10", "pre"}
    assert {k.split("/", 2)[2] for k in m if k.startswith("equi/predictor/")} == keys
    assert not any(k.startswith(("full/predictor", "inv/predictor")) for k in m)
    assert {
        f"{p}/knn/{k}" for p in ("full", "inv", "equi") for k in ("top1", "balanced_top1")
    } <= set(m)
    assert res["skipped"] == {}

    # the same numbers from a loop written like the reference script
    method, _ = load_method(ckpt)
    from equissl.datasets.base import build_dataset
    from equissl.eval.features import extract_features

    ds = build_dataset(config["data"], config["data"]["val_split"], 1)
    fs = extract_features(method, ds, views_per_object=5, progress=False)
    ranks, errors = [], []
    with torch.no_grad():
        emb = method.projector_equi(fs.parts["equi"].reshape(-1, 8)).view(
            *fs.parts["equi"].shape[:2], -1
        )
        bank = F.normalize(emb.reshape(-1, emb.shape[-1]), dim=1)
        bank_lat = fs.latents.reshape(-1, 7)
        for o in range(fs.num_objects):
            for j in range(fs.views_per_object):
                a = method.action.relative(fs.latents[o, :1], fs.latents[o, j : j + 1])
                out = F.normalize(method.predictor(emb[o, :1], a), dim=1)[0]
                sims = out @ F.normalize(emb[o], dim=1).T
                ranks.append(int((torch.argsort(-sims) == j).nonzero()[0, 0]) + 1)
                nn = int((out @ bank.T).argmax())
                errors.append(scipy_pre(fs.latents[o, j : j + 1], bank_lat[nn : nn + 1])[0])
    ref = ranking_metrics(torch.tensor(ranks), [1, 2, 5, 10])
    for k, v in ref.items():
        assert m[f"equi/predictor/{k}"] == pytest.approx(v)
    assert m["equi/predictor/pre"] == pytest.approx(float(np.mean(errors)), abs=1e-5)

    # predicted, ranked and searched one object at a time (5 views, batch 5): the same
    chunked = {**config["eval"], "probes": {"predictor": {**config["eval"]["probes"]["predictor"],
                                                          "batch_size": 5}}}  # fmt: skip
    res = evaluate_checkpoint(ckpt, chunked, tmp_path / "eval_sie_chunks", progress=False)
    for k in keys:
        assert res["metrics"][f"equi/predictor/{k}"] == pytest.approx(m[f"equi/predictor/{k}"])


def test_method_without_predictor_is_skipped_with_its_reason(iebench_tree, tmp_path):
    config = compose_pretrain(
        [f"data.root={iebench_tree}", "method=vicreg", "method.projector=[8]", *TINY]
    )
    ckpt = pretrain(config, tmp_path / "vicreg")
    res = evaluate_checkpoint(ckpt, config["eval"], tmp_path / "eval_vicreg", progress=False)
    assert res["skipped"] == {
        "predictor": "method vicreg has no predictor of an embedding from another view's "
        "embedding and the action"
    }
    assert "full/knn/top1" in res["metrics"]
