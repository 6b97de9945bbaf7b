"""``equissl-import LAYOUT SOURCE OUT [key=value ...]``: turn a checkpoint of a reference
repository into an equissl checkpoint that ``equissl-evaluate checkpoint=OUT`` runs.

LAYOUT is the repository whose state-dict layout SOURCE has:

  sie       facebookresearch/SIE      model.pth (backbone, both projectors, predictor)
  equicaps  AberdeenML/EquiCaps       model.pth, final_weights.pth, the released .pth files
  seq_jepa  hafezgh/seq-jepa          ckpt_*.pth, the released checkpoints

The model is built from a pretraining config: the layout's paper recipe
(experiment=sie_3diebench, equicaps_3x3_3diebench, seq_jepa_3diebench) with the key=value
overrides given, as equissl-pretrain reads them (experiment=... picks another recipe).
data.root is required: the data spec (view shape, action space, classes) is read from its
training split, as pretraining reads it. Keys missing from SOURCE, keys of SOURCE that map
to nothing, and shapes that differ are refused, each named. docs/released_checkpoints.md
gives every key's equissl name.

Examples::

    equissl-import sie runs/SIE/model.pth models/sie.ckpt data.root=/data/3DIEBench
    equissl-import equicaps EquiCaps_3DIEBenchT_with_base_transl.pth models/equicaps.ckpt \\
        experiment=equicaps_4x4_base_3diebench_t data.root=/data/3DIEBench-T
    equissl-evaluate checkpoint=models/sie.ckpt

Exit status: 0 written, 1 SOURCE unreadable or its weights do not fit the model, 2 malformed
command line or config.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def compose_config(experiment: str, overrides: list[str]) -> dict[str, Any]:
    """The resolved pretraining config of ``experiment`` (unless ``overrides`` pick one)
    with ``overrides``, as ``equissl-pretrain`` composes it; ``data.num_views`` sets the
    method's views as pretraining does."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from equissl.plugins import register_configs
    from equissl.training.pretrain import views_per_object

    register_configs()
    if not any(o.lstrip("+~").startswith("experiment=") for o in overrides):
        overrides = [f"experiment={experiment}", *overrides]
    with initialize_config_module("equissl.configs", version_base="1.3"):
        cfg = compose("pretrain", overrides=overrides)
    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    views_per_object(config)  # type: ignore[arg-type]
    return config  # type: ignore[return-value]


def main(argv: list[str]) -> int:
    positional = [a for a in argv if "=" not in a]
    overrides = [a for a in argv if "=" in a]
    if len(positional) != 3:
        print(
            f"equissl-import: expected LAYOUT SOURCE OUT [key=value ...]; got {argv}\n\n{__doc__}"
        )
        return 2
    layout_name, source, out = positional
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from equissl.checkpointing import CheckpointError
    from equissl.ssl.released import RELEASED_LAYOUTS, import_released

    if layout_name not in RELEASED_LAYOUTS:
        known = ", ".join(RELEASED_LAYOUTS.names())
        print(f"equissl-import: unknown layout {layout_name!r}; known: {known}", file=sys.stderr)
        return 2
    layout = RELEASED_LAYOUTS.get(layout_name)
    try:
        config = compose_config(layout.experiment, overrides)
    except (HydraException, OmegaConfBaseException) as err:
        print(f"equissl-import: {err}", file=sys.stderr)
        return 2
    if not config["data"].get("root"):
        print("equissl-import: data.root=PATH is required (the data spec)", file=sys.stderr)
        return 2
    try:
        written = import_released(layout_name, source, out, config)
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"equissl-import: {err}", file=sys.stderr)
        return 1
    print(f"checkpoint: {written} (equissl-evaluate checkpoint={Path(written)})")
    return 0
