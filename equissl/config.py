"""Structured configs (DESIGN §6): the schemas every part shares, and the ConfigStore.

A part's own schema lives beside the part and is registered with it
(``@METHODS.register("sie", config=SIEConfig)``); :func:`register_configs` stores every
registered schema in Hydra's ConfigStore as ``<group>/<name>_schema`` (with ``impl``
filled in), so a YAML option under ``configs/<group>/`` starts from it with
``defaults: [<name>_schema, _self_]`` and a misspelt key or a wrong type is an error at
start-up. Published recipes live in the schemas' defaults and the YAML options; every value
names its source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


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
    lr: float = 1e-3
    weight_decay: float = 1e-6
    momentum: float = 0.9  # sgd only
    exclude_bias_norm: bool = False  # no weight decay on biases and norm parameters
    scheduler: str = "none"  # none | warmup_cosine | warmup_constant
    warmup_epochs: float = 0.0
    warmup_steps: int = 0
    warmup_start_lr: float = 0.0  # lr the warm-up starts from (seq-JEPA: 1e-5)
    min_lr: float = 0.0  # where warmup_cosine ends
    # Explicit learning-rate scaling (DESIGN §7): "linear" multiplies lr by
    # global_batch / base_batch_size; "none" uses lr as given.
    lr_scaling: str = "none"
    base_batch_size: int = 1024


@dataclass
class MomentumConfig:
    """EMA target of momentum methods: τ from ``base_tau`` to ``final_tau`` on a cosine
    over the run's optimizer steps (BYOL, seq-JEPA: 0.996 → 1)."""

    base_tau: float = 0.996
    final_tau: float = 1.0


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
    num_views: int = 2  # views per object the method consumes (the one owner of this number)
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
    root: str = MISSING
    batch_size: int = 128  # per device; 8 GPUs x 128 = the SIE global batch of 1024
    # Batch over all ranks. When set, data.batch_size is derived from it at start:
    # global_batch_size / (devices x nodes), which must divide (equissl.train.resolve_batch).
    global_batch_size: int | None = None
    # The README's spelling of the method's views per object: when set, it sets
    # method.num_views (the method owns the number and checks it).
    num_views: int | None = None
    num_workers: int = 4
    train_split: str = "train"
    val_split: str = "val"
    eval_views: int = 0  # views per object of the evaluation protocol (0: the dataset's)
    # A damaged view met during training: fail (stop, naming the file) | skip (next index,
    # counted and logged; items carry `skipped`). See equissl.datasets.on_error.
    on_error: str = "fail"


@dataclass
class TrainerConfig:
    """Passed to ``lightning.pytorch.Trainer`` (same names)."""

    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    max_epochs: int = 2000
    max_steps: int = -1
    precision: str = "32-true"
    log_every_n_steps: int = 50
    sync_batchnorm: bool = False
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    limit_train_batches: float = 1.0
    enable_progress_bar: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms (bit-exact GPU reruns)


@dataclass
class LoggerConfig:
    name: str = "tensorboard"  # tensorboard | csv | none
    view_grid_every_n_steps: int = 500  # 0 disables the input-view grid
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

    batch_size: int = 256  # feature extraction
    num_workers: int = 4
    cache_dir: str | None = None  # default <run dir>/features (shared by its evaluations)
    # storage of the cached parts: float16 halves disk and page cache; probes get float32
    cache_dtype: str = "float32"
    parts: list[str] | None = None  # default: every part the method names
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


@dataclass
class CheckpointConfig:
    """When ``<run>/checkpoints/last.ckpt`` is written (DESIGN §10; equissl.training).

    It is also written after the final step and on SIGTERM / SIGUSR1. Default 500 steps:
    at the SIE scale (8 GPUs x 128, ResNet-18 at 256 px, roughly 0.3-0.5 s per step) that is
    3-4 minutes of work at risk, against a ~250 MB write (model + Adam moments) taking about
    a second; an epoch of 3DIEBench is only ~40 such steps, so there the end-of-epoch
    checkpoint comes first and ``every_n_steps`` bounds the loss for long epochs (one GPU,
    larger datasets). Neither key enters the run-directory hash.
    """

    every_n_steps: int = 500  # 0: no step-based checkpoints
    every_n_epochs: int = 1  # 0: no end-of-epoch checkpoints
    requeue: bool = True  # on SLURM's SIGUSR1: checkpoint, then `scontrol requeue` (we own it)


@dataclass
class SpeedConfig:
    """How fast the training step runs, never what it computes (:mod:`equissl.training.speed`).

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
    prefetch_factor: int | None = None  # batches per loader worker in flight (None: torch's 2)
    persistent_workers: bool = False  # keep loader workers across epochs (see sampler)


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
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    evaluate_after: bool = False  # run the evaluation stage on the final checkpoint
    eval: EvalRunConfig = field(default_factory=EvalRunConfig)


@dataclass
class EvaluateConfig:
    checkpoint: str = MISSING
    # Evaluate on another copy of the data (default: the checkpoint's data config).
    data_root: str | None = None
    splits_dir: str | None = None
    train_split: str | None = None  # probe training split (default: the data config's)
    val_split: str | None = None
    eval: EvalRunConfig = field(default_factory=EvalRunConfig)


# Overrides that change how long, how safely or how fast a run trains, not what it is: they
# stay out of the run-directory hash so that the same command with a larger budget resumes.
UNHASHED_KEYS = ("trainer.max_steps", "trainer.max_epochs", "resume")
UNHASHED_PREFIXES = ("checkpoint.", "speed.")


def hashed_override(override: str) -> bool:
    """False for the overrides :func:`run_hash` ignores (budget, checkpoint cadence, speed)."""
    key = str(override).lstrip("~+").split("=", 1)[0].strip()
    return key not in UNHASHED_KEYS and not key.startswith(UNHASHED_PREFIXES)


def run_hash(overrides: Any) -> str:
    """Short stable hash of a run's command-line overrides (deterministic run directories).

    ``trainer.max_steps``, ``trainer.max_epochs``, ``resume``, ``checkpoint.*`` and
    ``speed.*`` are left out (:data:`UNHASHED_KEYS`): re-running with a larger budget
    continues the same run.
    """
    items = sorted(str(o) for o in (overrides or []) if hashed_override(str(o)))
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:8]


def run_hash_all(overrides: Any) -> str:
    """Hash of every override: multirun sweep jobs, which may differ only in budget."""
    items = sorted(str(o) for o in (overrides or []))
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:8]


def _registries() -> list[Any]:
    from equissl.plugins import load_plugins

    return load_plugins()


def register_configs() -> None:
    """Fill Hydra's ConfigStore from the registries and add our resolvers (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="pretrain_schema", node=PretrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="logger", name="logger_schema", node=LoggerConfig)
    for registry in _registries():
        if registry.group is None:
            continue
        for entry in registry.entries():
            if entry.config is None:
                continue
            node = OmegaConf.structured(entry.config)
            node.impl = entry.name
            cs.store(group=registry.group, name=f"{entry.name}_schema", node=node)
    if not OmegaConf.has_resolver("run_hash"):
        OmegaConf.register_new_resolver("run_hash", run_hash)
    if not OmegaConf.has_resolver("run_hash_all"):
        OmegaConf.register_new_resolver("run_hash_all", run_hash_all)


def _nested_schema(hint: Any) -> type | None:
    """The dataclass a field's type hint names (``Foo`` or ``Foo | None``), else None."""
    import dataclasses
    import typing

    if dataclasses.is_dataclass(hint):
        return hint
    inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    return inner[0] if inner else None


def _section_registries() -> dict[str, Any]:
    """The registry of each config section whose schema depends on its ``impl``."""
    from equissl.datasets.base import DATASETS
    from equissl.models.backbones import BACKBONES
    from equissl.ssl.base import METHODS

    return {"method": METHODS, "data": DATASETS, "backbone": BACKBONES}


def schema_problems(values: Any, schema: type, prefix: str) -> list[str]:
    """Keys of ``values`` (a plain dict) that ``schema`` (a dataclass) does not know, and
    schema keys it lacks, as ``"unknown key method.foo"`` / ``"missing key data.root"``.
    Nested dataclass fields are checked recursively; free-form dict fields are not."""
    import dataclasses
    import typing

    if not isinstance(values, dict):
        return [f"{prefix} should be a mapping, got {type(values).__name__}"]
    hints = typing.get_type_hints(schema)
    known = {f.name: f for f in dataclasses.fields(schema)}
    problems = [f"unknown key {prefix}.{k}" for k in sorted(set(values) - set(known))]
    problems += [f"missing key {prefix}.{k}" for k in sorted(set(known) - set(values))]
    for name in sorted(set(known) & set(values)):
        sub = _nested_schema(hints.get(name))
        if sub is not None and values[name] is not None:
            problems += schema_problems(values[name], sub, f"{prefix}.{name}")
    return problems


def fill_schema_defaults(values: Any, schema: type, prefix: str) -> list[str]:
    """Add to ``values`` (a plain dict, changed in place) every key of ``schema`` it lacks
    that has a default, recursively into nested dataclass fields; returns the dotted keys
    added. This is how a checkpoint written before a key existed is read: the key's default
    is what the older code did (a new key must default to the old behaviour). Keys without
    a default (``???``) are left missing, so :func:`schema_problems` still names them."""
    import dataclasses
    import typing

    if not isinstance(values, dict):
        return []
    hints = typing.get_type_hints(schema)
    filled = []
    for f in dataclasses.fields(schema):
        if f.name not in values:
            if f.default is not dataclasses.MISSING and f.default != "???":
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
                values[f.name] = (
                    dataclasses.asdict(default) if dataclasses.is_dataclass(default) else default
                )
            else:
                continue
            filled.append(f"{prefix}.{f.name}")
            continue
        sub = _nested_schema(hints.get(f.name))
        if sub is not None and values[f.name] is not None:
            filled += fill_schema_defaults(values[f.name], sub, f"{prefix}.{f.name}")
    return filled


def _section_schemas(config: dict[str, Any]) -> dict[str, type | None]:
    """The registered schema of the config's method, data and backbone (None: unregistered)."""
    schemas: dict[str, type | None] = {}
    for section, registry in _section_registries().items():
        values = config.get(section) or {}
        impl = values.get("impl") if isinstance(values, dict) else None
        schemas[section] = registry.entry(impl).config if impl in registry else None
    return schemas


def fill_config_defaults(config: dict[str, Any]) -> list[str]:
    """:func:`fill_schema_defaults` on a stored pretraining config: the top level and the
    registered method, data and backbone sections; returns the keys added."""
    filled = [
        k.replace("config.", "", 1) for k in fill_schema_defaults(config, PretrainConfig, "config")
    ]
    for section, schema in _section_schemas(config).items():
        if schema is not None:
            filled += fill_schema_defaults(config[section], schema, section)
    return filled


def config_problems(config: dict[str, Any]) -> list[str]:
    """Every mismatch between a resolved pretraining config (as stored in checkpoints) and
    the schemas registered now: top level, method, data, backbone, trainer, logger, eval."""
    problems = [
        p.replace(" config.", " ") for p in schema_problems(config, PretrainConfig, "config")
    ]
    registries = _section_registries()
    for section, schema in _section_schemas(config).items():
        if schema is None:
            values = config.get(section) or {}
            impl = values.get("impl") if isinstance(values, dict) else None
            known = ", ".join(registries[section].names())
            problems.append(f"{section}.impl={impl!r} is not registered; known: {known}")
            continue
        problems += schema_problems(config[section], schema, section)
    return problems
