"""``equissl-export CHECKPOINT [out=PATH]``: take the trained encoder out of a pretraining
checkpoint.

Writes ``PATH.pt`` (the backbone trunk's weights, without the ``backbone.trunk.`` prefix:
a timm backbone loads them strictly into ``timm.create_model(name, num_classes=0)``) and
``PATH.json`` (the card: checkpoint and SHA-1, backbone config, feature width, view shape,
the representation's parts as slices of the features). Default PATH: ``<run>/encoder``.
In Python: ``equissl.ssl.export.load_encoder(PATH)`` rebuilds the encoder.

Examples::

    equissl-export outputs/pretrain/sie_3diebench_1a2b3c4d/checkpoints/last.ckpt
    equissl-export runs/sie/checkpoints/last.ckpt out=models/sie_resnet18

Exit status: 0 written, 1 unreadable or not an equissl checkpoint, 2 malformed command line.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    positional = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    if len(positional) != 1 or set(options) - {"out"}:
        print(f"equissl-export: expected CHECKPOINT [out=PATH]; got {argv}\n\n{__doc__}")
        return 2
    checkpoint = Path(positional[0])
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    out = Path(options.get("out") or run / "encoder")
    from equissl.checkpointing import CheckpointError
    from equissl.ssl.export import export_encoder

    try:
        weights, card = export_encoder(checkpoint, out)
    except (CheckpointError, FileNotFoundError, RuntimeError) as err:
        print(f"equissl-export: {err}", file=sys.stderr)
        return 1
    print(f"encoder: {weights} (card: {card})")
    return 0
