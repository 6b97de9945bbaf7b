import pytest
import torch

from equissl.eval.metrics import (
    balanced_top1,
    classification_floors,
    constant_floor,
    r2_global,
    r2_sklearn,
    top1,
)


def test_r2_conventions_by_hand():
    y = torch.tensor([[0.0, 10.0], [2.0, 14.0]])
    p = torch.tensor([[1.0, 12.0], [1.0, 12.0]])  # per-column means: a constant predictor
    # global mean of y = 6.5; ss_tot = 6.5² + 4.5² + 3.5² + 7.5² = 42.25+20.25+12.25+56.25
    ss_res = 1 + 4 + 1 + 4
    assert r2_global(p, y) == pytest.approx(1 - ss_res / 131.0)
    assert r2_sklearn(p, y) == pytest.approx(0.0)  # column means score exactly 0
    assert r2_sklearn(y, y) == pytest.approx(1.0) and r2_global(y, y) == pytest.approx(1.0)


def test_constant_predictor_on_quaternions_scores_above_zero_globally():
    from scipy.spatial.transform import Rotation

    a = Rotation.random(4000, random_state=0)
    b = Rotation.random(4000, random_state=1)
    # small relative rotations: w concentrates near 1 while x, y, z stay near 0
    q = torch.from_numpy((a.inv() * (a * Rotation.from_rotvec(b.as_rotvec() * 0.5))).as_quat())
    const = q.mean(0, keepdim=True).expand_as(q)
    assert r2_sklearn(const, q) == pytest.approx(0.0, abs=1e-9)
    assert r2_global(const, q) > 0.2


def test_sklearn_zero_variance_column():
    y = torch.tensor([[1.0, 3.0], [2.0, 3.0]])
    assert r2_sklearn(torch.tensor([[1.0, 3.0], [2.0, 3.0]]), y) == pytest.approx(1.0)
    assert r2_sklearn(torch.tensor([[1.0, 4.0], [2.0, 4.0]]), y) == pytest.approx(0.5)


def test_accuracies():
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0, 0, 0])
    assert top1(logits, labels) == pytest.approx(0.75)
    labels = torch.tensor([0, 0, 0, 1])
    assert top1(logits, labels) == 1.0
    labels = torch.tensor([0, 1, 1, 1])  # class 0: 1/1, class 1: 1/3
    assert balanced_top1(logits, labels) == pytest.approx((1 + 1 / 3) / 2)


def test_constant_floor_by_hand():
    train = torch.tensor([[1.0, 10.0], [3.0, 14.0]])  # mean (2, 12)
    val = torch.tensor([[0.0, 10.0], [2.0, 16.0], [4.0, 13.0]])
    # residuals of (2, 12): (-2, -2), (0, 4), (2, 1) -> ss_res = 4+4+0+16+4+1 = 29
    # global mean of val = 45 / 6 = 7.5; ss_tot = 56.25+6.25+30.25+72.25+12.25+30.25 = 207.5
    # per column: col 0 mean 2, ss_res 8, ss_tot 8 -> 0; col 1 mean 13, ss_res 21, ss_tot 18
    floor = constant_floor(train, val)
    assert floor["constant_r2_global"] == pytest.approx(1 - 29 / 207.5)
    assert floor["constant_r2_sklearn"] == pytest.approx((0 + (1 - 21 / 18)) / 2)
    assert floor["constant_mse"] == pytest.approx(29 / 6)
    assert set(floor) == {"constant_r2_global", "constant_r2_sklearn", "constant_mse"}


def test_classification_floors_by_hand():
    train = torch.tensor([2, 2, 2, 0, 1, 1])  # majority: class 2
    val = torch.tensor([0, 0, 1, 2, 2, 3])  # class 3 unseen in training
    floors = classification_floors(train, val, num_classes=4)
    assert floors["chance_top1"] == 0.25
    assert floors["majority_top1"] == pytest.approx(2 / 6)
    # recall 0 on classes 0, 1, 3 and 1 on class 2, over the 4 classes present in val
    assert floors["majority_balanced_top1"] == pytest.approx(1 / 4)
    # ties go to the lowest class id; a majority class absent from val scores 0
    tied = classification_floors(torch.tensor([1, 0, 1, 0]), torch.tensor([1, 1, 2]), 3)
    assert tied["majority_top1"] == 0.0 and tied["majority_balanced_top1"] == 0.0
