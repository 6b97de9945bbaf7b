"""Checkpoints released by the reference repositories, turned into equissl checkpoints.

The mirror of :mod:`equissl.ssl.export`: a state dict in a reference repository's layout
goes in, an equissl checkpoint that ``equissl-evaluate`` runs comes out. Our models compute
what the references compute with the same weights, so importing is renaming keys, plus two
changes of form:

* **SIE's projector biases.** The hidden Linears of SIE's projectors (``Projector`` in
  ``src/models.py``) have biases; ours have none, since the BatchNorm after each removes
  them. A bias ``b`` folds into that BatchNorm's running mean: BN in ``eval()`` mode
  computes ``(y − μ) / √(σ² + ε) · γ + β``, and with ``y = Wx + b`` this is
  ``(Wx − (μ − b)) / √(σ² + ε) · γ + β``, so ``μ' = μ − b`` gives the same output from the
  bias-free Linear. The fold is exact in ``eval()`` mode, where the running statistics
  are used (evaluation's case). In ``train()`` mode the batch mean cancels ``b`` whatever
  the running mean holds, and the running mean then tracks the bias-free ``Wx``, which is
  what ``μ'`` is.
* **EquiCaps' self-routing parameters** are stored as ``W1 [N, K·D, C]`` and
  ``b2 [1, 1, N, K]``; ours are ``[N, K, D, C]`` and ``[N, K]``, the same numbers in the
  same order (:class:`~equissl.models.capsules.SelfRouting`).

Each layout is one :class:`ReleasedLayout`, registered in :data:`RELEASED_LAYOUTS`: the
prefix renames, the reference's modules that are no part of our model (online evaluators,
probes), and the changes of form above. Keys missing from the file, keys of the file that
map to nothing, and shapes that differ from the model the config builds are refused, each
named as the reference names it. The model comes from a pretraining config (default: the
layout's paper recipe) and the data spec of the config's training split, as pretraining
builds it; the online probe is left out (``method.online_probe=false``), since the
references' online evaluators are other modules.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from equissl.checkpointing import (
    CHECKPOINT_KEY,
    CheckpointError,
    atomic_torch_save,
    file_digest,
)
from equissl.datasets.base import build_dataset
from equissl.registry import Registry
from equissl.ssl.loading import build_method

#: prefixes that wrappers add to every key of a model they hold, removed before renaming:
#: DistributedDataParallel's ``module.`` (at the start of a key) and the activation
#: checkpoint wrapper's ``_checkpoint_wrapped_module.`` (torch removes it from state dicts
#: itself; older versions did not)
DDP_PREFIX = "module."
WRAPPER_PART = "_checkpoint_wrapped_module."
#: how many keys an error names of each kind before it counts the rest
NAMED = 8

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ReleasedLayout:
    """How a reference repository names the weights of a model equissl implements.

    Attributes:
        repository: the reference repository (for messages and the checkpoint's record).
        experiment: the pretraining recipe its models are built from by default.
        methods: the method implementations (``method.impl``) the layout fills.
        renames: ``(reference prefix, equissl prefix)`` pairs; a key takes the first whose
            prefix it starts with.
        ignored: prefixes of the reference's modules that are no part of our model.
        bias_folds: equissl prefixes of ``Sequential`` heads whose Linear ``i`` is followed
            by BatchNorm ``i + 1``: a bias of Linear ``i`` that our head lacks is folded into
            that BatchNorm's running mean.
        stored_shapes: equissl key -> the shape the reference stores it in, from ours (the
            same numbers in the same order; the import reshapes).
        note: said after a refusal (which file of the reference to import).
    """

    repository: str
    experiment: str
    methods: tuple[str, ...]
    renames: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...] = ()
    bias_folds: tuple[str, ...] = ()
    stored_shapes: dict[str, Callable[[Shape], Shape]] = field(default_factory=dict)
    note: str = ""

    def rename(self, key: str) -> str | None:
        """Our name of the reference's ``key`` (``None``: none of the renames applies)."""
        for theirs, ours in self.renames:
            if key.startswith(theirs):
                return ours + key[len(theirs) :]
        return None

    def reference_name(self, key: str) -> str:
        """The reference's name of our ``key`` (the longest equissl prefix that fits)."""
        fits = [(o, t) for t, o in self.renames if key.startswith(o)]
        if not fits:
            return key
        ours, theirs = max(fits, key=lambda pair: len(pair[0]))
        return theirs + key[len(ours) :]

    def ignores(self, key: str) -> bool:
        return key.startswith(self.ignored)

    def stored_shape(self, key: str, shape: Shape) -> Shape:
        """The shape the reference stores our tensor ``key`` of ``shape`` in."""
        convert = self.stored_shapes.get(key)
        return tuple(convert(shape)) if convert else shape


#: the layouts ``equissl-import`` reads, by name
RELEASED_LAYOUTS: Registry[ReleasedLayout] = Registry("released checkpoint layout")


def register_layout(name: str, layout: ReleasedLayout) -> ReleasedLayout:
    """Register ``layout`` under ``name`` (``equissl-import NAME ...``)."""
    return RELEASED_LAYOUTS.register(name)(layout)


# facebookresearch/SIE, main.py: model.pth = {"epoch", "model": the DDP state dict,
# "optimizer"}; models.SIE holds backbone (src/resnet.py, our resnet_sie names),
# projector_inv / projector_equi (Projector: Linear(bias)-BN-ReLU x2, Linear(no bias)),
# predictor (hypernetwork.ParametrizedNet: a bias-free Linear in hypernet.net.0) and the
# online evaluator.
register_layout(
    "sie",
    ReleasedLayout(
        repository="facebookresearch/SIE",
        experiment="sie_3diebench",
        methods=("sie",),
        renames=(
            ("backbone.", "backbone.trunk."),
            ("projector_inv.", "projector_inv.layers."),
            ("projector_equi.", "projector_equi.layers."),
            ("predictor.hypernet.net.0.", "predictor.hypernet."),
        ),
        ignored=("evaluator.",),
        bias_folds=("projector_inv.layers.", "projector_equi.layers."),
        note=(
            "SIE's main.py writes model.pth (the whole model: backbone, projectors, "
            "predictor) and final_weights.pth (the backbone alone); import model.pth"
        ),
    ),
)

# AberdeenML/EquiCaps, main.py: model.pth = {"epoch", "model", "optimizer"}, and
# final_weights.pth / the released checkpoints = the DDP state dict itself; models.EquiCaps_3x3
# / _4x4 hold backbone (SIE's ResNet, keep_conv), projector (sr_capsnet.CapsNetNoStem:
# conv_a, conv_pose, bn_a, bn_pose, fc = SelfRouting2d) and the online evaluator.
register_layout(
    "equicaps",
    ReleasedLayout(
        repository="AberdeenML/EquiCaps",
        experiment="equicaps_3x3_3diebench",
        methods=("equicaps",),
        renames=(
            ("backbone.", "backbone.trunk."),
            ("projector.conv_a.", "capsules.primary.conv_act."),
            ("projector.conv_pose.", "capsules.primary.conv_pose."),
            ("projector.bn_a.", "capsules.primary.bn_act."),
            ("projector.bn_pose.", "capsules.primary.bn_pose."),
            ("projector.fc.", "capsules.routing."),
        ),
        ignored=("evaluator.",),
        stored_shapes={
            "capsules.routing.W1": lambda s: (s[0], s[1] * s[2], s[3]),  # [N, K·D, C]
            "capsules.routing.b2": lambda s: (1, 1, *s),  # [1, 1, N, K]
        },
        note=(
            "4x4 poses: experiment=equicaps_4x4_3diebench_t (or _base_); 3DIEBench-T with "
            "3x3 poses: experiment=equicaps_3x3_3diebench_t"
        ),
    ),
)

# hafezgh/seq-jepa, main_transformed_views.py: ckpt_*.pth = {"model", "optimizer", "epoch",
# ...}; models.SeqJEPA_Transforms holds encoder / target_encoder (torchvision resnet18, fc
# removed: timm's resnet18 names), action_proj (Linear, BatchNorm1d without affine),
# agg_token, transformer_encoder (TransformerEncoder_: an nn.TransformerEncoder and a final
# LayerNorm), predictor (Linear(no bias)-BN-ReLU-Linear), and the probes the training and
# evaluation scripts attach.
register_layout(
    "seq_jepa",
    ReleasedLayout(
        repository="hafezgh/seq-jepa",
        experiment="seq_jepa_3diebench",
        methods=("seq_jepa",),
        renames=(
            ("encoder.", "backbone.trunk."),
            ("target_encoder.", "target_backbone.trunk."),
            ("action_proj.0.", "action_embedding.linear."),
            ("action_proj.1.", "action_embedding.norm."),
            ("agg_token", "aggregator.aggregate_token"),
            ("transformer_encoder.transformer_encoder.", "aggregator.encoder."),
            ("transformer_encoder.norm.", "aggregator.encoder.norm."),
            ("predictor.", "predictor.layers."),
        ),
        ignored=(
            "online_linprobe.",
            "online_equiprobe.",
            "agg_classifier.",
            "res_classifier.",
            "rot_regressor.",
            "color_regressor.",
            "crop_regressor.",
            "jitter_regressor.",
            "blur_regressor.",
        ),
        note=(
            "rotation and colour (--latent-type rotcolor): "
            "experiment=seq_jepa_rotcolor_3diebench; the target encoder is the EMA one "
            "(--ema)"
        ),
    ),
)


def read_released(source: str | Path) -> tuple[dict[str, Tensor], dict[str, Any], bool]:
    """The model state dict of a reference checkpoint file.

    Accepts ``{"model": state_dict, ...}`` (what the references' training loops write) or a
    bare state dict (EquiCaps' released files, SIE's ``final_weights.pth``).

    Returns:
        ``(state dict without wrapper prefixes, {"epoch": …} where the file has it, whether
        the keys carried DDP's "module." prefix)``.
    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a PyTorch file, or no state dict in it (the file is named).
    """
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} cannot be read as a PyTorch checkpoint: {err}") from err
    if isinstance(obj, dict) and CHECKPOINT_KEY in obj:
        raise CheckpointError(
            f"{path} is an equissl checkpoint already: evaluate it as it is "
            f"(equissl-evaluate checkpoint={path})"
        )
    state = obj.get("model") if isinstance(obj, dict) and "model" in obj else obj
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items())
    ):
        raise CheckpointError(
            f"{path} holds no state dict: expected a file with a 'model' entry (the "
            "references' model.pth) or a state dict of tensors"
        )
    ddp = all(k.startswith(DDP_PREFIX) for k in state)
    cleaned = {
        (k[len(DDP_PREFIX) :] if ddp else k).replace(WRAPPER_PART, ""): v for k, v in state.items()
    }
    info = {"epoch": obj["epoch"]} if isinstance(obj, dict) and "epoch" in obj else {}
    return cleaned, info, ddp


def convert_state_dict(
    layout: ReleasedLayout,
    state: dict[str, Tensor],
    own: dict[str, Tensor],
    source: str = "the file",
    prefix: str = "",
) -> dict[str, Tensor]:
    """``state`` in ``layout``'s names -> the state dict of our model, whose own state dict
    is ``own`` (for its keys and shapes).

    Args:
        prefix: said before the reference's key names in errors (``"module."`` when the
            file's keys carried it).
    Raises:
        CheckpointError: naming ``source``, every missing key, every key of the file that
            maps to nothing, and every shape that differs (the file's and the one this
            model needs, both in the reference's layout).
    """
    renamed: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    unexpected = []
    for key, value in state.items():
        if layout.ignores(key):
            continue
        ours = layout.rename(key)
        if ours is None:
            unexpected.append(prefix + key)
            continue
        renamed[ours], origin[ours] = value, key
    fold_biases(layout, renamed, own)
    unexpected += [prefix + origin[k] for k in renamed if k not in own]
    missing = [prefix + layout.reference_name(k) for k in own if k not in renamed]
    converted, reshaped = {}, []
    for key, value in renamed.items():
        if key not in own:
            continue
        stored = layout.stored_shape(key, tuple(own[key].shape))
        if tuple(value.shape) != stored:
            reshaped.append(
                f"{prefix}{origin[key]} {tuple(value.shape)} in the file, {stored} in the model"
            )
            continue
        converted[key] = value.reshape(own[key].shape).to(own[key].dtype)
    if missing or unexpected or reshaped:
        found = [
            _named("missing", missing),
            _named("unexpected", unexpected),
            _named("of another shape", reshaped),
        ]
        note = f"\n{layout.note}" if layout.note else ""
        raise CheckpointError(
            f"{source} does not fit the model the config builds ({layout.repository} "
            "layout):\n" + "\n".join(f for f in found if f) + note
        )
    return converted


def fold_biases(layout: ReleasedLayout, state: dict[str, Tensor], own: dict[str, Tensor]) -> None:
    """Fold, in place, each bias of a Linear that our head lacks into the running mean of
    the BatchNorm after it (``μ' = μ − b``; the module docstring gives why this is exact).
    A bias without such a BatchNorm, or of another width, is left for the key check."""
    for prefix in layout.bias_folds:
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.bias")
        for key in [k for k in state if pattern.fullmatch(k) and k not in own]:
            index = int(pattern.fullmatch(key).group(1))  # type: ignore[union-attr]
            mean = f"{prefix}{index + 1}.running_mean"
            if mean in state and mean in own and state[mean].shape == state[key].shape:
                state[mean] = state[mean] - state.pop(key).to(state[mean].dtype)


def _named(kind: str, entries: list[str]) -> str:
    """``  missing (12): a; b; … 4 more`` (empty for no entries)."""
    if not entries:
        return ""
    more = f"; … {len(entries) - NAMED} more" if len(entries) > NAMED else ""
    return f"  {kind} ({len(entries)}): {'; '.join(entries[:NAMED])}{more}"


def import_released(
    layout_name: str, source: str | Path, out: str | Path, config: dict[str, Any]
) -> Path:
    """Write ``out``, an equissl checkpoint of the model ``config`` builds, holding the
    weights of ``source`` (a checkpoint in the layout ``layout_name``).

    Args:
        config: a resolved pretraining config (its ``method`` must be one the layout
            fills); the data spec is read from its training split (``data.root``).
    Returns:
        ``out`` (written atomically).
    Raises:
        KeyError: an unknown layout (the known ones are listed).
        ValueError: the config's method is not the layout's.
        FileNotFoundError, CheckpointError: ``source`` is missing, unreadable, or its
            weights do not fit (every key at fault named).
    """
    layout = RELEASED_LAYOUTS.get(layout_name)
    config = copy.deepcopy(config)
    impl = config["method"]["impl"]
    if impl not in layout.methods:
        raise ValueError(
            f"the {layout_name} layout holds a {'/'.join(layout.methods)} model; the config "
            f"builds method {config['method']['name']} ({impl}): use "
            f"experiment={layout.experiment} or another {'/'.join(layout.methods)} config"
        )
    state, info, ddp = read_released(source)  # a wrong file fails before the data are read
    config["method"]["online_probe"] = False  # the references' online evaluators differ
    data = config["data"]
    spec = build_dataset(data, data["train_split"], 1).spec()
    method = build_method(config, spec)
    own = method.state_dict()
    weights = convert_state_dict(layout, state, own, str(source), DDP_PREFIX if ddp else "")
    method.load_state_dict(weights, strict=True)
    checkpoint = {
        "state_dict": method.state_dict(),
        CHECKPOINT_KEY: method.describe(),
        "global_step": 0,
        "epoch": 0,
        "released": {
            "layout": layout_name,
            "repository": layout.repository,
            "source": str(source),
            "source_sha1": file_digest(source),
            **info,
        },
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(checkpoint, out)
    return out
