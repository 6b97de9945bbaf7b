"""Scores with one implementation each, shared by the pretraining monitor
(:mod:`equissl.training.monitor`) and the evaluation stage (:mod:`equissl.eval.metrics`
re-exports them), so a number logged during pretraining and one in ``results.json`` mean
the same thing.

* :func:`top1` — fraction of rows whose arg-max (:func:`classes`) is the label.
* :func:`r2_global` — SIE/EquiCaps code's R²: ``1 − Σ(y − ŷ)² / Σ(y − ȳ)²`` with ȳ the mean of
  *all* entries of y (one scalar over every output component).
* :func:`ridge_solve`, :func:`ridge_fit` — closed-form ridge regression with a *relative*
  penalty ``λ = ridge · tr(XᵀX) / F`` (the mean diagonal of the centred Gram matrix, so the
  same ``ridge`` means the same thing at any feature scale); ``ridge = 0`` is least squares
  (minimum norm where the Gram matrix is singular). The intercept is never penalised.
* :func:`ridge_fit_held_out` — the ridge fit whose penalty (of :data:`RIDGES`) predicts
  held-out objects best, refitted on all rows.
* :func:`ridge_classifier_scores` — the ridge fit of one-hot labels: a linear classifier in
  one solve, no SGD.
* :func:`knn_vote`, :func:`knn_scores` — the weighted k-NN vote of Wu et al. (2018) as DINO
  and solo-learn run it: the ``k`` nearest bank rows by cosine similarity ``s`` vote for
  their class with weight ``exp(s / T)`` (:mod:`equissl.eval.probes.knn` searches with faiss;
  :func:`knn_scores` is the exact search in torch, for the monitor's small banks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: normalisation guard of cosine similarities (SIE's ``‖x‖ + 1e-8``)
NORM_EPS = 1e-8


def classes(scores: Tensor) -> Tensor:
    """The predicted class of each row: the arg-max of ``[N, C]`` scores; ``[N]`` class ids
    are returned as they are."""
    return scores if scores.ndim == 1 else scores.argmax(-1)


def top1(scores: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose predicted class (:func:`classes` of ``[N, C]`` scores or
    ``[N]`` ids) equals ``labels [N]``."""
    return float((classes(scores) == labels).float().mean())


def r2_global(pred: Tensor, target: Tensor) -> float:
    """R² with one global target mean (SIE ``r2_score``); ``[N, K]`` inputs."""
    target = target.double()
    ss_res = ((target - pred.double()) ** 2).sum()
    ss_tot = ((target - target.mean()) ** 2).sum()
    return float(1.0 - ss_res / ss_tot)


def ridge_solve(gram: Tensor, xty: Tensor, ridge: float) -> Tensor:
    """Weights ``[F, K]`` minimising ``‖y − xW‖² + λ‖W‖²`` from ``gram = xᵀx [F, F]`` and
    ``xty = xᵀy [F, K]``, with ``λ = ridge · tr(xᵀx) / F``; ``ridge = 0``: least squares
    (the minimum-norm solution when ``gram`` is singular)."""
    if ridge <= 0:
        return torch.linalg.pinv(gram, hermitian=True) @ xty
    lam = ridge * float(gram.diagonal().mean())
    eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + lam * eye, xty)


def ridge_fit(x: Tensor, y: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    """``(W [F, K], b [K])`` of the ridge regression of ``y [N, K]`` on ``x [N, F]`` with an
    unpenalised intercept (both centred first; :func:`ridge_solve`), in float64.
    Predict with ``x @ W + b``."""
    x, y = x.double(), y.double()
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = ridge_solve(xc.T @ xc, xc.T @ (y - my), ridge)
    return w, my - mx @ w


def ridge_predict(fit: tuple[Tensor, Tensor], x: Tensor) -> Tensor:
    """``x [M, F] @ W + b`` of a :func:`ridge_fit` (float64)."""
    w, b = fit
    return x.double() @ w + b


#: relative ridges tried where a penalty is chosen on held-out objects
RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def ridge_fit_held_out(
    x: Tensor, y: Tensor, held_out: Tensor, ridges: Sequence[float] = RIDGES
) -> tuple[tuple[Tensor, Tensor], float]:
    """The :func:`ridge_fit` of ``y [N, K]`` on ``x [N, F]`` with the penalty of ``ridges``
    that predicts the rows ``held_out [N]`` (bool; whole objects, so that a fit cannot
    recognise the object) with the least squared error when fitted on the others; refitted
    on every row. Returns the fit and the chosen ridge. With few objects and many features
    a fixed small penalty overfits the objects seen; this one shrinks towards the mean
    target instead, so the score cannot fall far below the constant predictor's."""
    kept = ~held_out
    if not bool(held_out.any()) or not bool(kept.any()):
        raise ValueError("ridge_fit_held_out needs rows both held out and kept")

    def error(ridge: float) -> float:
        pred = ridge_predict(ridge_fit(x[kept], y[kept], ridge), x[held_out])
        return float(((pred - y[held_out].double()) ** 2).sum())

    best = min(ridges, key=error)
    return ridge_fit(x, y, best), best


def ridge_classifier_scores(
    train_x: Tensor, train_labels: Tensor, x: Tensor, num_classes: int, ridge: float
) -> Tensor:
    """Class scores ``[M, num_classes]`` of ``x [M, F]`` by the ridge regression of the
    one-hot ``train_labels [N]`` on ``train_x [N, F]`` (:func:`ridge_fit`). Classes absent
    from the training labels score ``-inf``, so they are never predicted."""
    classes = train_labels.unique()
    onehot = F.one_hot(torch.searchsorted(classes, train_labels), len(classes))
    scores = ridge_predict(ridge_fit(train_x, onehot, ridge), x)
    out = scores.new_full((len(x), num_classes), float("-inf"))
    out[:, classes] = scores
    return out


def knn_vote(
    sims: Tensor, neighbour_labels: Tensor, num_classes: int, temperature: float
) -> Tensor:
    """Class scores ``[Q, C]`` of the weighted vote: ``Σ_j exp(s_j / T)`` over the
    neighbours ``j`` of each class, from similarities ``sims [Q, k]`` and their labels
    ``neighbour_labels [Q, k]``."""
    scores = sims.new_zeros(sims.shape[0], num_classes)
    return scores.scatter_add_(1, neighbour_labels, (sims / temperature).exp())


def knn_scores(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    k: int,
    temperature: float,
    chunk: int = 4096,
) -> Tensor:
    """Weighted k-NN class scores ``[Q, C]`` (:func:`knn_vote`) of ``queries [Q, D]``
    against ``bank [B, D]`` labelled ``bank_labels [B]``: exact cosine search in torch,
    ``min(k, B)`` neighbours, ``chunk`` queries at a time."""
    bank = F.normalize(bank.float(), dim=-1, eps=NORM_EPS)
    queries = F.normalize(queries.float(), dim=-1, eps=NORM_EPS)
    k = min(int(k), len(bank))
    out = []
    for start in range(0, len(queries), chunk):
        sims, idx = (queries[start : start + chunk] @ bank.T).topk(k, dim=1)
        out.append(knn_vote(sims, bank_labels[idx], num_classes, temperature))
    return torch.cat(out)
