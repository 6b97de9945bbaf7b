"""Take the trained encoder out of a pretraining checkpoint.

A Lightning checkpoint holds the whole method (backbone, projectors, predictor, optimiser
state) under keys such as ``backbone.trunk.layer1.0.conv1.weight``. :func:`export_encoder`
writes only the encoder:

* ``<out>.pt`` — the trunk's ``state_dict`` with the ``backbone.trunk.`` prefix removed. For
  a timm backbone (``backbone.impl=timm``) it loads **strictly** into
  ``timm.create_model(name, num_classes=0, in_chans=C)`` (the ``timm`` entry of the card
  gives the call); with ``cifar_stem`` the stem is swapped first, as
  :func:`equissl.models.backbones.timm_trunk` does.
* ``<out>.json`` — the card: the checkpoint and its SHA-1, the backbone config, the feature
  width, the view shape the encoder was trained on, the input normalisation, and the
  representation's named parts (``{"inv": [0, 256], "equi": [256, 512]}``: slices of the
  pooled ``[B, D]`` features), so that a downstream user takes the invariant or the
  equivariant part as the method defined it.

:func:`load_encoder` rebuilds the :class:`~equissl.models.backbones.Backbone` (input adapter,
trunk, pooling) from the two files, without the method.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from equissl.atomic import atomic_write_text
from equissl.checkpointing import (
    atomic_torch_save,
    file_digest,
)
from equissl.models.backbones import Backbone, build_backbone, stacked_channels
from equissl.ssl.loading import load_method

#: the checkpoint's key prefix of the trunk weights, which the export leaves out
TRUNK_PREFIX = "backbone.trunk."


def export_encoder(checkpoint: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Write ``<out>.pt`` (the trunk's state dict) and ``<out>.json`` (its card).

    Returns:
        The two paths.

    Raises:
        CheckpointError: ``checkpoint`` is not an equissl checkpoint (named).
    """
    checkpoint = Path(checkpoint)
    method, meta = load_method(checkpoint)  # read once; its weights are the checkpoint's
    trunk = method.backbone.trunk.state_dict()
    extra = {k: v for k, v in method.backbone.state_dict().items() if not k.startswith("trunk.")}
    backbone = meta["config"]["backbone"]
    view_shape = list(meta["spec"]["view_shape"])
    in_chans = stacked_channels(view_shape)
    width = int(method.repr_dim)
    parts = {name: list(sl.indices(width)[:2]) for name, sl in method.parts.items()}
    card: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha1": file_digest(checkpoint),
        "method": meta["config"]["method"]["name"],
        "backbone": backbone,
        "num_features": width,
        "view_shape": view_shape,
        "in_chans": in_chans,
        "input_norm": sorted(extra),
        "parts": parts,
        "state_dict_prefix_removed": TRUNK_PREFIX,
    }
    if backbone.get("impl") == "timm":
        card["timm"] = (
            f"timm.create_model({backbone['name']!r}, pretrained=False, num_classes=0, "
            f"in_chans={in_chans})"
            + ("  # then the CIFAR stem" if backbone.get("cifar_stem") else "")
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    weights, card_path = out.with_suffix(".pt"), out.with_suffix(".json")
    atomic_torch_save({"trunk": trunk, "extra": extra}, weights)
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return weights, card_path


def load_encoder(path: str | Path) -> tuple[Backbone, dict[str, Any]]:
    """The exported encoder (``eval()`` mode) and its card, from ``<path>.pt`` and
    ``<path>.json``. ``encoder(views [B, *view_shape])`` gives the pooled ``[B, D]``
    features; slice them with ``card["parts"]``."""
    path = Path(path)
    card = json.loads(path.with_suffix(".json").read_text())
    saved = torch.load(path.with_suffix(".pt"), map_location="cpu", weights_only=True)
    encoder = build_backbone(card["backbone"], card["view_shape"])
    encoder.load_state_dict(
        {**{f"trunk.{k}": v for k, v in saved["trunk"].items()}, **saved["extra"]}, strict=True
    )
    return encoder.eval(), card
