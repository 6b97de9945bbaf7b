"""Weighted k-NN probe: the vote against hand-computed values, the probe on toy features."""

import math
from pathlib import Path

import pytest
import torch

from equissl.eval.features import FeatureSet
from equissl.eval.probes.base import EvalContext
from equissl.eval.probes.knn import knn_classify
from equissl.registries import PROBES
from equissl.scores import knn_vote

CFG = {"impl": "knn", "seed": 0, "k": 20, "temperature": 0.07, "bank_views": 0,
       "query_views": 0, "query_batch": 8192, "index": "flat", "nlist": 0, "nprobe": 32,
       "train_points": 0}  # fmt: skip


def test_vote_is_the_sum_of_exp_similarity_over_temperature_per_class():
    sims = torch.tensor([[0.5, 0.2, 0.1], [0.3, -0.2, 0.0]])
    labels = torch.tensor([[1, 0, 1], [2, 2, 0]])
    scores = knn_vote(sims, labels, 3, 0.1)
    e = math.exp
    want = torch.tensor([[e(2.0), e(5.0) + e(1.0), 0.0], [e(0.0), 0.0, e(3.0) + e(-2.0)]])
    torch.testing.assert_close(scores, want)


def test_knn_classify_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])  # norms differ: cosine
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[2.0, 1.0]])  # cosines 2/√5, 1/√5, -2/√5
    c0, c1, c2 = 2 / math.sqrt(5), 1 / math.sqrt(5), -2 / math.sqrt(5)
    two = knn_classify(bank, labels, query, num_classes=2, k=2, temperature=0.5)
    torch.testing.assert_close(two, torch.tensor([[math.exp(c0 / 0.5), math.exp(c1 / 0.5)]]))
    three = knn_classify(bank, labels, query, num_classes=2, k=3, temperature=0.5)
    want = torch.tensor([[math.exp(c0 / 0.5), math.exp(c1 / 0.5) + math.exp(c2 / 0.5)]])
    torch.testing.assert_close(three, want)
    # chunked queries give the same scores
    q = torch.randn(7, 2)
    torch.testing.assert_close(
        knn_classify(bank, labels, q, 2, 2, 0.5, query_batch=3),
        knn_classify(bank, labels, q, 2, 2, 0.5),
    )


def features(n: int, seed: int, labelled: bool = True) -> FeatureSet:
    """3 views per object; the class is a direction, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, (n,), generator=g)
    x = torch.randn(n, 3, 6, generator=g) * 0.3
    x[..., :3] += torch.nn.functional.one_hot(labels, 3)[:, None].float()
    return FeatureSet(
        parts={"full": x, "half": x[..., 3:]},
        latents=torch.zeros(n, 3, 1),
        labels=labels if labelled else torch.full((n,), -1),
        coeffs=torch.zeros(n, 0),
        index=torch.arange(n),
    )


def context(train: FeatureSet, val: FeatureSet) -> EvalContext:
    return EvalContext(
        train=train, val=val, action_space=None, num_classes=3, method=None, meta={},
        datasets={}, device=torch.device("cpu"), out_dir=Path("."), progress=False,
    )  # fmt: skip


def test_knn_probe_on_toy_features():
    probe = PROBES.get("knn")("knn", CFG)
    ctx = context(features(90, 0), features(30, 1))
    good, noise = probe.run(ctx, "full"), probe.run(ctx, "half")
    assert good.metrics["top1"] > 0.95 and good.metrics["balanced_top1"] > 0.95
    assert noise.metrics["top1"] < 0.6
    assert good.pred.shape == (90,)  # every val view is a query
    few = PROBES.get("knn")("knn", {**CFG, "bank_views": 1, "query_views": 2}).run(ctx, "full")
    assert few.pred.shape == (60,)


def test_unlabelled_objects_are_left_out_and_no_labels_skips():
    train, val = features(60, 2), features(20, 3)
    val.labels[:5] = -1
    res = PROBES.get("knn")("knn", CFG).run(context(train, val), "full")
    assert res.target.shape == (45,) and (res.target >= 0).all()
    reason = PROBES.get("knn")("knn", CFG).skip_reason(
        context(features(20, 4, labelled=False), val)
    )
    assert reason == "the data carry no class labels"


def test_k_one_is_the_nearest_neighbours_label():
    train, val = features(40, 5), features(10, 6)
    res = PROBES.get("knn")("knn", {**CFG, "k": 1}).run(context(train, val), "full")
    bank = torch.nn.functional.normalize(train.parts["full"].reshape(-1, 6), dim=1)
    q = torch.nn.functional.normalize(val.parts["full"].reshape(-1, 6), dim=1)
    nearest = (q @ bank.T).argmax(dim=1)
    assert torch.equal(res.pred, train.labels.repeat_interleave(3)[nearest])


def test_floors_are_the_banks_majority_class_and_chance():
    train, val = features(40, 7), features(12, 8)
    train.labels[:30] = 2  # the bank's majority class
    res = PROBES.get("knn")("knn", CFG).run(context(train, val), "full")
    labels = val.labels.repeat_interleave(3)
    assert res.metrics["chance_top1"] == pytest.approx(1 / 3)
    assert res.metrics["majority_top1"] == pytest.approx(float((labels == 2).float().mean()))
    assert res.metrics["majority_balanced_top1"] == pytest.approx(1 / len(labels.unique()))


def test_ivf_index_with_every_list_scanned_gives_the_exact_probe():
    ctx = context(features(90, 0), features(30, 1))
    exact = PROBES.get("knn")("knn", CFG).run(ctx, "full")
    ivf = {**CFG, "index": "ivf", "nlist": 4, "nprobe": 4}
    approx = PROBES.get("knn")("knn", ivf).run(ctx, "full")
    assert approx.metrics == exact.metrics and torch.equal(approx.pred, exact.pred)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("index", "hnsw", "eval.probes.knn: unknown neighbour index 'hnsw'"),
        ("nprobe", 0, "eval.probes.knn: index option nprobe must be an integer >= 1"),
        ("nlist", -3, "eval.probes.knn: index option nlist must be an integer >= 0"),
    ],
)
def test_bad_index_options_fail_when_the_probe_is_built(key, value, message):
    with pytest.raises(ValueError, match=message):
        PROBES.get("knn")("knn", {**CFG, key: value})


def test_index_options_are_in_the_probe_schema():
    from tests.conftest import compose_pretrain

    cfg = compose_pretrain(["data.root=x", "eval.probes.knn.index=ivf", "eval.probes.knn.nprobe=8"])
    assert cfg["eval"]["probes"]["knn"]["index"] == "ivf"
    assert cfg["eval"]["probes"]["knn"]["nprobe"] == 8
    with pytest.raises(Exception, match="nprobes"):  # a misspelt key
        compose_pretrain(["data.root=x", "eval.probes.knn.nprobes=8"])
    with pytest.raises(Exception, match="nprobe"):  # a wrong type
        compose_pretrain(["data.root=x", "eval.probes.knn.nprobe=many"])
