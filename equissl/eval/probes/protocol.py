"""Protocol cards: which published protocol a probe's number follows, and how this run
differs from it.

Every probe that ran gets a card in ``results.json["protocols"][<probe>]`` (docs/protocols.md
tables them against the papers):

* ``follows``: the paper and the reference file whose protocol the defaults reproduce
  (``None`` for equissl's own measurements, which no paper reports);
* what ran: ``head``, ``optimizer``, ``lr``, ``weight_decay``, ``epochs``, ``batch_size`` (the
  probe's config), ``backbone`` (how the frozen encoder produced the features), ``samples``
  (views, pairs or sequences drawn), ``train_split`` / ``test_split`` and their object counts;
* ``deviations``: each difference from the reference — settings of this run that differ from
  the values the reference ran (named ``key: reference -> this run``) and the standing
  differences of equissl's implementation, each with its reason. Empty when exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: how every probe's features are made (``equissl.eval.features``)
FROZEN_EVAL_MODE = (
    "frozen, eval() mode (BatchNorm running statistics), features computed once and cached"
)
#: how SIE's probe scripts run the frozen backbone (``net.train()`` before every training
#: epoch): the ``backbone`` of their protocols, and of a run with ``eval.backbone_mode:
#: reference`` (``equissl.eval.probes.backbone_mode``)
TRAIN_MODE = (
    "frozen, train() mode on every training batch (batch statistics; the running statistics "
    "drift on probe data and serve the test split in eval() mode)"
)


@dataclass(frozen=True)
class Reference:
    """A published protocol.

    Args:
        follows: the paper and the reference file, e.g.
            ``"SIE (Garrido et al., ICML 2023), eval_classification.py"``.
        settings: what the reference ran, keyed as the card's fields
            (``{"head": "linear", "lr": 1e-3, "epochs": 300}``); a value of this run that
            differs becomes a deviation.
        standing: differences of equissl's implementation whatever the config, each with its
            reason.
    """

    follows: str
    settings: dict[str, Any] = field(default_factory=dict)
    standing: tuple[str, ...] = ()


def protocol_card(
    reference: Reference | None, ran: dict[str, Any], standing: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The card of a probe that ran with ``ran`` (its card fields) against ``reference``;
    ``standing`` adds deviations known only at run time (e.g. of the data)."""
    deviations = []
    if reference is not None:
        for key, value in reference.settings.items():
            if key in ran and not _same(ran[key], value):
                deviations.append(f"{key}: {value!r} in the reference -> {ran[key]!r} here")
        deviations.extend(reference.standing)
    deviations.extend(standing)
    return {
        "follows": reference.follows if reference is not None else None,
        **ran,
        "deviations": deviations,
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b


def trained_head_fields(cfg: dict[str, Any], head: str, optimizer: str = "Adam") -> dict[str, Any]:
    """The card fields of a head trained by :func:`equissl.eval.probes.base.fit`."""
    return {
        "head": head,
        "optimizer": optimizer,
        "lr": float(cfg["lr"]),
        "weight_decay": float(cfg["weight_decay"]),
        "epochs": int(cfg["epochs"]),
        "batch_size": int(cfg["batch_size"]),
    }
