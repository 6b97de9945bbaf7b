"""Metrics of the evaluation stage, in each paper's convention, so numbers compare directly.

* ``r2_global`` — SIE/EquiCaps code: one scalar mean over every output component,
  ``1 − Σ(y − ŷ)² / Σ(y − ȳ)²`` with ȳ the mean of *all* entries of y. A constant predictor
  can score well above 0 on quaternions, whose components have different means. Defined in
  :mod:`equissl.scores` (with ``top1``), which the pretraining monitor shares.
* ``r2_sklearn`` — seq-JEPA / scikit-learn ``r2_score(multioutput="uniform_average")``:
  R² of each output column against its own mean, averaged over columns.

Floors (docs/evaluation.md), the scores of predictors that ignore the representation, so a
reader sees whether anything was learned; computed on the same validation targets as the
probe's metric they sit beside:

* ``constant_*`` — regression: the training-set mean target for every validation item
  (:func:`constant_floor`);
* ``chance_top1`` — classification: ``1 / num_classes``; ``majority_top1`` and
  ``majority_balanced_top1`` — always the most frequent *training* class
  (:func:`classification_floors`).
"""

from __future__ import annotations

import torch
from torch import Tensor

# One implementation each, shared with the pretraining monitor (equissl.training.monitor)
from equissl.scores import classes as classes
from equissl.scores import r2_global as r2_global
from equissl.scores import top1 as top1


def balanced_top1(scores: Tensor, labels: Tensor) -> float:
    """Mean over the classes present in ``labels`` of their per-class recall
    (``[N, C]`` scores or ``[N]`` predicted class ids)."""
    pred = classes(scores)
    recalls = [float((pred[labels == c] == c).float().mean()) for c in labels.unique()]
    return float(sum(recalls) / len(recalls))


def r2_sklearn(pred: Tensor, target: Tensor) -> float:
    """Per-output R² averaged over outputs (scikit-learn ``uniform_average``); ``[N, K]``.

    Outputs with zero variance follow scikit-learn: 1 if predicted exactly, else 0.
    """
    target = target.double().reshape(len(target), -1)
    pred = pred.double().reshape(len(pred), -1)
    ss_res = ((target - pred) ** 2).sum(0)
    ss_tot = ((target - target.mean(0)) ** 2).sum(0)
    safe = ss_tot > 0
    scores = torch.where(
        safe, 1.0 - ss_res / torch.where(safe, ss_tot, 1.0), (ss_res == 0).double()
    )
    return float(scores.mean())


def constant_floor(train_target: Tensor, val_target: Tensor) -> dict[str, float]:
    """The constant predictor's ``constant_r2_global``, ``constant_r2_sklearn`` and
    ``constant_mse``: predict the mean of ``train_target [N, K]`` for every row of
    ``val_target [M, K]``."""
    val = val_target.double()
    constant = train_target.double().mean(0, keepdim=True).expand_as(val)
    return {
        "constant_r2_global": r2_global(constant, val),
        "constant_r2_sklearn": r2_sklearn(constant, val),
        "constant_mse": float(((constant - val) ** 2).mean()),
    }


def regression_metrics(pred: Tensor, target: Tensor, train_target: Tensor) -> dict[str, float]:
    """``r2_global``, ``r2_sklearn`` and ``mse`` of ``pred`` against ``target [M, K]``, beside
    the constant predictor's (:func:`constant_floor`, the mean of ``train_target``)."""
    return {
        "r2_global": r2_global(pred, target),
        "r2_sklearn": r2_sklearn(pred, target),
        "mse": float(torch.nn.functional.mse_loss(pred, target)),
        **constant_floor(train_target, target),
    }


def classification_floors(
    train_labels: Tensor, val_labels: Tensor, num_classes: int
) -> dict[str, float]:
    """``chance_top1`` (``1 / num_classes``) and the majority predictor's ``majority_top1``
    and ``majority_balanced_top1`` on ``val_labels [M]``: always the most frequent class of
    ``train_labels [N]`` (the lowest such class id on ties)."""
    majority = int(torch.bincount(train_labels, minlength=num_classes).argmax())
    pred = torch.full_like(val_labels, majority)
    return {
        "chance_top1": 1.0 / num_classes,
        "majority_top1": top1(pred, val_labels),
        "majority_balanced_top1": balanced_top1(pred, val_labels),
    }
