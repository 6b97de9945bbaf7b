"""Momentum (EMA) targets, the one implementation every method with a target encoder uses.

A method lists its ``(online, target)`` module pairs in
:meth:`equissl.ssl.base.SSLMethod.momentum_pairs`; the base class updates each target after
every optimizer step with lightly's ``update_momentum`` at τ from lightly's
``cosine_schedule`` over the run's real number of optimizer steps. Targets are submodules,
so checkpoints save and restore them with the rest of the model.
"""

from __future__ import annotations

import copy

from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn


def momentum_copy(online: nn.Module) -> nn.Module:
    """A frozen deep copy of ``online`` to serve as its EMA target."""
    target = copy.deepcopy(online)
    deactivate_requires_grad(target)
    return target


def momentum_tau(step: int, total_steps: int, base_tau: float, final_tau: float) -> float:
    """τ at optimizer step ``step`` of ``total_steps``: ``base_tau`` → ``final_tau`` (cosine)."""
    if total_steps <= 1:
        return float(base_tau)
    return float(cosine_schedule(min(step, total_steps), total_steps, base_tau, final_tau))


def update_targets(pairs: list[tuple[nn.Module, nn.Module]], tau: float) -> None:
    """``target ← τ·target + (1 − τ)·online`` for every pair."""
    for online, target in pairs:
        update_momentum(online, target, tau)
