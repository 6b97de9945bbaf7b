"""The frozen backbone as the SIE probe scripts run it: ``eval.backbone_mode: reference``.

By default (``eval.backbone_mode: eval``) every probe trains on features computed once, with
the frozen backbone in ``eval()`` mode, and cached (:mod:`equissl.eval.features`). SIE's
``eval_classification.py``, ``eval_angle_prediction.py`` and ``eval_color_prediction.py``
instead call ``net.train()`` before every training epoch: the frozen backbone reruns on each
training batch with **batch statistics** (one forward pass per view batch: twice per step for
the pair probes), each pass moving BatchNorm's running statistics (momentum 0.1) towards
the probe data; the test split is then scored in ``eval()`` mode with those drifted
statistics. :class:`TrainModeBackbone` reproduces this for one probe on one part: a private
copy of the frozen model (the drift of one probe never reaches another, as each SIE script
is its own process), the training views drawn from the same evaluation views the cache holds,
and the test features recomputed after training. It costs one backbone pass per training
view and epoch (300 epochs × N objects, × 2 for pairs), where the cache costs one in all.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from equissl.datasets.base import ViewDataset
from equissl.eval.features import extract_features
from equissl.ssl.interface import FrozenRepresentation

#: ``eval.backbone_mode`` values: ``eval`` (cached eval() features, the default) or
#: ``reference`` (each probe runs the backbone as the protocol it follows did)
BACKBONE_MODES = ("eval", "reference")


def check_backbone_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`BACKBONE_MODES` (``ValueError`` naming the key)."""
    if mode not in BACKBONE_MODES:
        raise ValueError(f"eval.backbone_mode={mode!r}: choose one of {', '.join(BACKBONE_MODES)}")
    return mode


class TrainModeBackbone:
    """A private copy of a frozen model whose ``part`` is computed as SIE's probe loops do.

    Args:
        method: the frozen model (copied: its running statistics are this probe's own).
        train: the split the head trains on; its evaluation views (``views_per_object``,
            ``seed``: those of the feature cache) are the views a training batch draws from,
            addressed by flat index ``object * views_per_object + view``.
        test: the split the head is scored on.
        extraction: ``{"views_per_object", "seed", "batch_size", "num_workers"}`` of the
            stage's feature extraction.
        part: the named part of the representation the probe reads.
        device: where the backbone runs.
    """

    def __init__(
        self,
        method: FrozenRepresentation,
        train: ViewDataset,
        test: ViewDataset,
        extraction: dict[str, Any],
        part: str,
        device: torch.device,
    ) -> None:
        self.model = copy.deepcopy(method).to(device)
        self.views = train.evaluation_views(
            int(extraction["views_per_object"]), int(extraction["seed"])
        )
        self.test = test
        self.extraction = extraction
        self.part = part
        self.device = device

    @torch.no_grad()
    def features(self, flat: Tensor) -> Tensor:
        """``[B]`` flat view indices -> ``[B, D]`` float32 features, the backbone in
        ``train()`` mode on this batch (its running statistics move)."""
        x = torch.stack([self.views[int(i)]["views"][0] for i in flat])
        self.model.train()
        rep = self.model.represent(x.to(self.device))[self.part]
        self.model.eval()
        return rep.float()

    def pair_features(self, flat: Tensor) -> Tensor:
        """``[B, 2]`` flat indices of view a and view b -> ``[B, 2 D]`` ``[r_a ‖ r_b]``,
        one ``train()`` pass per view batch as ``eval_angle_prediction.py`` does."""
        return torch.cat((self.features(flat[:, 0]), self.features(flat[:, 1])), dim=1)

    def test_features(self) -> Tensor:
        """``[N, V, D]`` features of the test split's evaluation views, in ``eval()`` mode
        with the running statistics the training epochs left."""
        fs = extract_features(
            self.model,
            self.test,
            int(self.extraction["views_per_object"]),
            seed=int(self.extraction["seed"]),
            batch_size=int(self.extraction["batch_size"]),
            num_workers=int(self.extraction["num_workers"]),
            device=self.device,
            progress=False,
        )
        return fs.parts[self.part]
