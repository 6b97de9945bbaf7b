"""Structured configs: the schemas every part shares (this module's one job).

A part's own schema lives beside the part and is registered with it
(``@METHODS.register("sie", config=SIEConfig)``); :func:`equissl.plugins.register_configs`
stores every
registered schema in Hydra's ConfigStore as ``<group>/<name>_schema`` (with ``impl``
filled in), so a YAML option under ``configs/<group>/`` starts from it with
``defaults: [<name>_schema, _self_]`` and a misspelt key or a wrong type is an error at
start-up. Published recipes live in the schemas' defaults and the YAML options; every value
names its source.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


def at_least(low: float, default: Any) -> Any:
    """A schema field whose value must be ``>= low`` (``None`` allowed where the type is
    optional); checked at start-up by :func:`range_problems`, naming the key."""
    return field(default=default, metadata={"min": low})


def above(low: float, default: Any) -> Any:
    """A schema field whose value must be ``> low`` (see :func:`at_least`)."""
    return field(default=default, metadata={"gt": low})


def in_unit_interval(default: float) -> Any:
    """A schema field whose value must lie in ``[0, 1]``."""
    return field(default=default, metadata={"min": 0.0, "max": 1.0})


def nested_schema(hint: Any) -> type | None:
    """The dataclass a field's type hint names (``Foo`` or ``Foo | None``), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    return inner[0] if inner else None


def range_problems(values: Any, schema: type, prefix: str) -> list[str]:
    """``"data.batch_size=0 must be >= 1"`` for every value of ``values`` (a plain dict)
    outside the range its ``schema`` field declares, recursively into nested schemas."""
    if not isinstance(values, dict) or not dataclasses.is_dataclass(schema):
        return []
    hints = typing.get_type_hints(schema)
    problems = []
    for f in dataclasses.fields(schema):
        if f.name not in values:
            continue
        value, key = values[f.name], f"{prefix}.{f.name}" if prefix else f.name
        nested = nested_schema(hints.get(f.name))
        if nested is not None and isinstance(value, dict):
            problems += range_problems(value, nested, key)
            continue
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        rules = f.metadata
        if "min" in rules and value < rules["min"]:
            problems.append(f"{key}={value} must be >= {rules['min']}")
        if "gt" in rules and value <= rules["gt"]:
            problems.append(f"{key}={value} must be > {rules['gt']}")
        if "max" in rules and value > rules["max"]:
            problems.append(f"{key}={value} must be <= {rules['max']}")
    return problems


@dataclass
class OptimConfig:
    """Optimiser and schedule. SIE: Adam, lr 1e-3, wd 1e-6, constant lr (main.py).

    The schedule is computed from the optimizer steps the run will really make
    (``trainer.max_steps``, or epochs × batches ÷ accumulation): ``warmup_steps`` when > 0,
    else ``warmup_epochs`` × steps per epoch. Warm-up goes linearly from ``warmup_start_lr``
    to ``lr``; then ``warmup_cosine`` decays on a cosine to ``min_lr`` at the last step and
    ``warmup_constant`` stays at ``lr`` (both absolute rates, not scaled by ``lr_scaling``).
    """

    name: str = "adam"  # adam | adamw | sgd
    lr: float = above(0.0, 1e-3)
    weight_decay: float = at_least(0.0, 1e-6)
    momentum: float = in_unit_interval(0.9)  # sgd only
    exclude_bias_norm: bool = False  # no weight decay on biases and norm parameters
    scheduler: str = "none"  # none | warmup_cosine | warmup_constant
    warmup_epochs: float = at_least(0.0, 0.0)
    warmup_steps: int = at_least(0, 0)
    warmup_start_lr: float = at_least(0.0, 0.0)  # lr the warm-up starts from (seq-JEPA: 1e-5)
    min_lr: float = at_least(0.0, 0.0)  # where warmup_cosine ends
    # Learning-rate scaling is explicit, never implied by devices x nodes: "linear"
    # multiplies lr by global_batch / base_batch_size; "none" uses lr as given.
    lr_scaling: str = "none"
    base_batch_size: int = at_least(1, 1024)


@dataclass
class MomentumConfig:
    """EMA target of momentum methods: τ from ``base_tau`` to ``final_tau`` on a cosine
    over the run's optimizer steps (BYOL, seq-JEPA: 0.996 → 1)."""

    base_tau: float = in_unit_interval(0.996)
    final_tau: float = in_unit_interval(1.0)


@dataclass
class MethodConfig:
    """Fields every method shares.

    ``weights`` holds one weight per loss term the method computes; the loss is
    Σ weight·term. ``action`` lists the action-space targets the method is conditioned on
    (``None``: the dataset's default action, e.g. the relative quaternion on 3DIEBench).
    """

    name: str = MISSING  # the config option's name, reported in results.json
    impl: str = MISSING  # registry key of the implementing class (filled by registration)
    action: list[str] | None = None
    num_views: int = at_least(
        1, 2
    )  # views per object the method consumes (the one owner of this number)
    online_probe: bool = True  # linear classifier on detached representations, logged only
    weights: dict[str, float] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    momentum: MomentumConfig = field(default_factory=MomentumConfig)


@dataclass
class BackboneConfig:
    """Fields every backbone shares; see ``equissl.models.backbones``."""

    impl: str = MISSING


@dataclass
class GenerateSettings:
    """Fields every dataset generator shares (``equissl-generate`` and ``data.generate``)."""

    seed: int = 0
    chunk: int = 0  # write part ``chunk`` of ``num_chunks`` (parallel generation)
    num_chunks: int = 1


@dataclass
class DataConfig:
    """Fields every dataset shares (per-device batch)."""

    name: str = MISSING  # the config option's name, reported in results.json
    impl: str = MISSING  # registry key of the dataset (filled by registration)
    root: str | None = None  # a folder of files; None for generated or in-memory data
    batch_size: int = at_least(1, 128)  # per device; 8 GPUs x 128 = the SIE global batch of 1024
    # Batch over all ranks. When set, data.batch_size is derived from it at start:
    # global_batch_size / (devices x nodes), which must divide
    # (equissl.training.pretrain.resolve_batch).
    global_batch_size: int | None = at_least(1, None)
    # docs/guide.md's spelling of the method's views per object: when set, it sets
    # method.num_views (the method owns the number and checks it).
    num_views: int | None = at_least(1, None)
    num_workers: int = at_least(0, 4)
    train_split: str = "train"
    val_split: str = "val"
    eval_views: int = at_least(
        0, 0
    )  # views per object of the evaluation protocol (0: the dataset's)
    # A damaged view met during training: fail (stop, naming the file) | skip (next index,
    # counted and logged; items carry `skipped`). See equissl.datasets.on_error.
    on_error: str = "fail"


@dataclass
class TrainerConfig:
    """Passed to ``lightning.pytorch.Trainer`` (same names)."""

    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = at_least(1, 1)
    strategy: str = "auto"
    max_epochs: int = at_least(-1, 2000)
    max_steps: int = at_least(-1, -1)
    precision: str = "32-true"
    log_every_n_steps: int = at_least(1, 50)
    sync_batchnorm: bool = False
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = at_least(1, 1)
    limit_train_batches: float = above(0.0, 1.0)
    enable_progress_bar: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms (bit-exact GPU reruns)


@dataclass
class LoggerConfig:
    """Where pretraining's scalars go: any Lightning logger by import path (``target``,
    constructed with ``kwargs``; ``save_dir`` defaults to the run folder where the logger
    takes one), e.g. ``logger=wandb`` (configs/logger/), plus any in ``also``
    (``logger=tensorboard_wandb``). ``name: none`` logs nowhere."""

    name: str = "tensorboard"  # the option's name; "none" disables logging
    target: str | None = None  # e.g. lightning.pytorch.loggers.TensorBoardLogger
    kwargs: dict[str, Any] = field(default_factory=dict)
    # more loggers beside it, each {target: <Logger class>, kwargs: {...}}
    # (configs/logger/tensorboard_wandb.yaml: TensorBoard and wandb at once)
    also: list[Any] = field(default_factory=list)
    view_grid_every_n_steps: int = at_least(0, 500)  # 0 disables the input-view grid
    step_losses: bool = False  # append {"step", "loss"} per step to <run>/step_losses.jsonl


@dataclass
class ProbeConfig:
    """Fields every probe shares; each probe's schema adds its protocol."""

    impl: str = MISSING
    seed: int = 0  # probe initialisation and sampling (repeated evaluations agree)


@dataclass
class EvalRunConfig:
    """Where the evaluation stage reads features from and writes results.

    ``probes`` is filled from the ``probe`` config group (``configs/probe/<name>.yaml``,
    each at ``eval.probes.<name>``); ``eval/probes=[rotation]`` picks a subset.
    """

    batch_size: int = at_least(1, 256)  # feature extraction
    num_workers: int = at_least(0, 4)
    cache_dir: str | None = None  # default <run dir>/features (shared by its evaluations)
    # storage of the cached parts: float16 halves disk and page cache; probes get float32
    cache_dtype: str = "float32"
    # what keys the feature cache to the data (docs/evaluation.md, "The feature cache"):
    # folders: per object folder its listing, mtime and view 0's files (a few system calls
    # per object); files: every file's size and mtime (one stat per file)
    data_check: str = "folders"
    parts: list[str] | None = None  # default: every part the method names
    # eval: probes train on the cached eval()-mode features; reference: probes whose
    # protocol reran the frozen backbone in train() mode every batch (SIE's classification,
    # rotation, colour) do so, at one backbone pass per view and epoch (docs/protocols.md)
    backbone_mode: str = "eval"
    device: str = "auto"
    seed: int = 0  # evaluation views (PDE windows), pairs, probe initialisation
    # Methods with a sequence representation: views per sequence at evaluation time (M),
    # the M_val of classification on the aggregate; probes may cache more lengths
    # (eval.probes.path_integration.lengths).
    sequence_views: list[int] = field(default_factory=lambda: [1, 3, 5])
    probes: dict[str, Any] = field(default_factory=dict)
    # Other models put through the same probes (equissl.eval.baselines, e.g. [untrained]),
    # reported under results.json["baselines"] and as "<name> (baseline)" table rows.
    baselines: list[str] = field(default_factory=list)
    # Out-of-distribution test set (seq-JEPA's 3DIEBench-OOD protocol): a root of the same
    # data kind whose val split the probes are also scored on, heads trained on this
    # data's train split as usual; reported under results.json["ood"] and as "ood:" rows.
    ood_root: str | None = None


@dataclass
class CheckpointConfig:
    """When ``<run>/checkpoints/last.ckpt`` is written, for exact resume (equissl.training).

    It is also written after the final step and on SIGTERM / SIGUSR1. Default 500 steps:
    at the SIE scale (8 GPUs x 128, ResNet-18 at 256 px, roughly 0.3-0.5 s per step) that is
    3-4 minutes of work at risk, against a ~250 MB write taking about a second; an epoch
    of 3DIEBench is only ~40 such steps, so there the end-of-epoch
    checkpoint comes first and ``every_n_steps`` bounds the loss for long epochs (one GPU,
    larger datasets). No key enters the run-directory hash.

    What ``last.ckpt`` holds, all of it needed to resume exactly: the model (backbone,
    projectors, predictor, online probe; a third of the file), the optimizer's state (Adam's
    two moments per weight: two thirds), the scheduler, Lightning's loop and loader
    positions and the RNG states (kilobytes). E.g. the quickstart's SIE on resnet10t: 32 MB
    of weights + 63 MB of moments = 95 MB.
    """

    every_n_steps: int = at_least(0, 500)  # 0: no step-based checkpoints
    every_n_epochs: int = at_least(0, 1)  # 0: no end-of-epoch checkpoints
    # An end-of-epoch checkpoint is skipped when the last one is younger than this (seconds):
    # with epochs of a few seconds (small data, the quickstart's 5 batches) writing model +
    # Adam moments every epoch would dominate the run; step, final and signal checkpoints
    # are never skipped. 0: every end-of-epoch checkpoint.
    epoch_min_interval_s: float = at_least(0.0, 60.0)
    requeue: bool = True  # SLURM's SIGUSR1 or time-limit SIGTERM: `scontrol requeue` (we own it)


@dataclass
class SpeedConfig:
    """How fast the training step runs, never what it computes (:mod:`equissl.speed`).

    Every default is the plain path (the behaviour before these flags existed). Each flag is
    tested against the plain path on CPU (``tests/training/test_speed.py``, tolerances there);
    bf16 autocast is ``trainer.precision=bf16-mixed`` (Lightning), with the loss statistics
    kept in float32 (:mod:`equissl.ssl.losses`). None of these keys enters the run-directory
    hash: a run resumed with other speed flags continues the same run.
    """

    channels_last: bool = False  # NHWC backbone weights and inputs
    compile: bool = False  # torch.compile the backbone in place (state_dict keys unchanged)
    compile_mode: str = "default"  # torch.compile mode: default | reduce-overhead | max-autotune
    # false: torch's default Adam/AdamW/SGD kernel | foreach | fused | auto (fused where torch
    # has a fused kernel for the parameters' device, else foreach)
    fused_optimizer: Any = False
    pin_memory: Any = "auto"  # auto: when CUDA is present (the plain path) | true | false
    prefetch_factor: int | None = at_least(
        1, None
    )  # batches per loader worker in flight (None: torch's 2)
    persistent_workers: bool = False  # keep loader workers across epochs (see sampler)
    # datasets that can (3DIEBench) serve uint8 views, normalised after the batch transfer
    normalize_on_device: bool = False


@dataclass
class MonitorConfig:
    """Validation during pretraining (:mod:`equissl.training.monitor`): every
    ``every_n_steps`` optimizer steps, and after the last, the frozen model (``eval()``
    mode, no gradients) represents a fixed seeded subset of the evaluation views of the
    validation split and of the training split, and logs per part ``monitor/<part>/…``: a
    closed-form ridge linear classifier's ``top1`` (fitted on the training subset), the
    cosine k-NN's ``knn_top1``, the ridge regression of the pair target from
    ``[r_a ‖ r_b]`` (``<target>_r2``, SIE's global-mean R²; its constant predictor's at
    ``monitor/constant/<target>_r2``), and the collapse monitors ``std_min`` / ``std_mean``
    (per-dimension std) and ``rankme``. Metrics the data cannot give are left out (no
    labels: no ``top1`` / ``knn_top1``). Never changes what a run computes (not a result
    key): it leaves the RNGs, the loader and the train / eval mode of every module as it
    found them, and runs on global rank 0 only.
    """

    every_n_steps: int = at_least(0, 0)  # 0: off
    at_end: bool = True  # also after the last step (when that is not a multiple)
    objects: int = at_least(1, 512)  # objects per split (seeded subset; all when fewer)
    views: int = at_least(1, 2)  # evaluation views per object (seeded; pairs need 2)
    seed: int = 0  # the subsets and views: the same across runs, whatever their seed
    # relative ridge penalty of the linear classifier (x mean Gram diagonal); 0: lstsq. The
    # pair regression chooses its own among equissl.scores.RIDGES on held-out objects
    ridge: float = at_least(0.0, 1e-2)
    knn_k: int = at_least(1, 20)  # neighbours of the k-NN vote (the knn probe's default)
    knn_temperature: float = above(0.0, 0.07)  # exp(s / T) vote weights (the knn probe's)
    # the action-space target regressed from view pairs; None: rotation where the data
    # have it, else the first of the action space's default action
    target: str | None = None
    batch_size: int = at_least(1, 256)  # views per forward pass
    # keep the subsets' views in host memory between passes when they take at most this
    # (MiB); larger subsets are re-read every pass with data.num_workers loader workers
    cache_mb: int = at_least(0, 1024)


@dataclass
class PretrainConfig:
    method: Any = MISSING
    data: Any = MISSING
    backbone: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    resume: bool = True  # continue from <run dir>/checkpoints/last.ckpt when present
    # Start from this checkpoint when the run directory has none of its own (a new run
    # continuing another's state, e.g. with a larger budget in a fresh directory).
    resume_from: str | None = None
    # Result-changing settings that may differ from the resumed checkpoint's (dotted keys,
    # e.g. [method.optim.lr]); any other difference stops the resume (training/resume.py).
    resume_allow: list[str] = field(default_factory=list)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    evaluate_after: bool = False  # run the evaluation stage on the final checkpoint
    eval: EvalRunConfig = field(default_factory=EvalRunConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


@dataclass
class EvaluateConfig:
    checkpoint: str = MISSING
    # Evaluate on another copy of the data (default: the checkpoint's data config).
    data_root: str | None = None
    splits_dir: str | None = None
    train_split: str | None = None  # probe training split (default: the data config's)
    val_split: str | None = None
    eval: EvalRunConfig = field(default_factory=EvalRunConfig)


# Settings that change how long, how fast, how safely, where or how visibly a run trains,
# never what it computes: a resume may change them freely (equissl.training.resume), while
# every other difference from the resumed checkpoint's config is refused unless named in
# ``resume_allow``. Dotted keys; a key ending in "." covers a whole section.
NOT_RESULT_KEYS = (
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "data.num_workers",
    "data.global_batch_size",  # its result, the per-device data.batch_size, is compared
    "data.on_error",
    "data.generate",
    "data.format",
    "resume",
    "resume_from",
    "resume_allow",
    "evaluate_after",
    "checkpoint.",
    "speed.",
    "logger.",
    "eval.",
    "monitor.",  # validation during pretraining: logged only (equissl.training.monitor)
    "probe.",  # the config group that fills eval.probes
)


def is_result_key(key: str) -> bool:
    """Whether the dotted config ``key`` can change what a run computes."""
    return not any(
        key == k or key.startswith(k if k.endswith(".") else k + ".") for k in NOT_RESULT_KEYS
    )
