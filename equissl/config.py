"""Structured configs (DESIGN §6): dataclass schemas that type-check every config group.

Each YAML option under ``equissl/configs/<group>/`` starts from one of these schemas
(``defaults: [<schema>]``), so a misspelt key or a wrong type is an error at start-up.
Published recipes live in the YAML options and in the dataclass defaults below; every
value names its source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


@dataclass
class OptimConfig:
    """Optimiser and schedule. SIE: Adam, lr 1e-3, wd 1e-6, constant lr (main.py)."""

    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-6
    momentum: float = 0.9  # sgd only
    exclude_bias_norm: bool = False  # no weight decay on biases and norm parameters
    scheduler: str = "none"  # none | warmup_cosine
    warmup_epochs: int = 0
    # Explicit learning-rate scaling (DESIGN §7): "linear" multiplies lr by
    # global_batch / base_batch_size; "none" uses lr as given.
    lr_scaling: str = "none"
    base_batch_size: int = 1024


@dataclass
class MethodConfig:
    """Fields every method shares."""

    name: str = MISSING  # the config option's name, reported in results.json
    impl: str = MISSING  # registry key of the implementing class
    action: list[str] = field(default_factory=lambda: ["rotation"])  # action-space targets
    num_views: int = 2  # views per object the method consumes
    online_probe: bool = True  # linear classifier on detached representations, logged only
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class VICRegConfig(MethodConfig):
    """VICReg on 3DIEBench as in the SIE paper's baseline (SIE main.py defaults)."""

    projector: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    sim_coeff: float = 10.0
    std_coeff: float = 10.0
    cov_coeff: float = 1.0


@dataclass
class SIEConfig(MethodConfig):
    """SIE (Garrido et al., ICML 2023), recipe of the README command of the SIE code.

    512-d representation = ``inv_dim`` invariant + the rest equivariant; each part gets a
    projector scaled by its share of ``--mlp 2048-2048-2048`` (256 -> 1024-1024-1024).
    """

    inv_dim: int = 256
    projector: list[int] = field(default_factory=lambda: [1024, 1024, 1024])
    sim_coeff: float = 10.0
    equi_factor: float = 0.45
    std_coeff: float = 10.0
    pred_std_coeff: float = 10.0  # 0 gives SIENoVar
    cov_coeff: float = 1.0


@dataclass
class BackboneConfig:
    name: str = "resnet18"
    cifar_stem: bool = False
    zero_init_residual: bool = True


@dataclass
class GenerateConfig:
    """Rendering settings used when the data root must be generated first (quickstart)."""

    num_classes: int = 10
    objects_per_class: int = 20
    views: int = 50
    resolution: int = 256
    spp: int = 16
    seed: int = 0
    translation: bool = False
    ood: bool = False
    val_fraction: float = 0.2
    mesh_root: str | None = None
    workers: int | None = None


@dataclass
class DataConfig:
    """Fields every dataset shares (per-device batch)."""

    name: str = MISSING  # the config option's name, reported in results.json
    impl: str = MISSING  # registry key of the dataset builder
    root: str = MISSING
    batch_size: int = 128  # per device; 8 GPUs x 128 = the SIE global batch of 1024
    num_views: int = 2
    num_workers: int = 4
    train_split: str = "train"
    val_split: str = "val"


@dataclass
class IEBenchDataConfig(DataConfig):
    impl: str = "iebench"
    splits_dir: str | None = None  # default <root>/data
    image_size: int = 256  # SIE trains at 256 px
    canonical_sign: bool = False  # quaternion sign as the reference (not canonicalised)
    generate: GenerateConfig | None = None  # render the dataset into root if it is absent


@dataclass
class PDEGenerateConfig:
    """Trajectories to generate into ``data.root`` when it holds none."""

    num_trajectories: int = 512
    seed: int = 0


@dataclass
class PDEDataConfig(DataConfig):
    """Windows of PDE trajectories under Lie point symmetries (equissl.datasets.pde)."""

    impl: str = "pde"
    equation: str = MISSING  # kdv | ks | burgers
    window: int = 16  # frames per view (the public code's crop_t)
    strengths: dict[str, float] = field(default_factory=dict)  # max |ε| per generator
    mode: str = "coords"  # coords (the paper's) | grid (Fourier-shift resampling)
    composition: str = "expm"  # expm (exact) | strang (public code's Lie–Trotter, 2 steps)
    val_every: int = 5  # trajectory ids divisible by this form the val split
    in_chans: int = 3  # (t, x, u) coordinate channels
    batch_size: int = 32  # 1-D setting of Mialon et al.
    generate: PDEGenerateConfig | None = None


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
    """Frozen-feature probes; defaults are the SIE evaluation protocol
    (eval_classification.py / eval_angle_prediction.py: Adam 1e-3, batch 256, 300 epochs)."""

    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    hidden_dim: int = 1024  # rotation MLP 2d -> 1024 -> 1024 -> 4
    val_pairs_per_object: int = 10  # fixed (seeded) view pairs per val object
    probes: list[str] = field(default_factory=lambda: ["classification", "rotation"])
    parts: list[str] | None = None  # default: every part the method names
    seed: int = 0
    device: str = "auto"


@dataclass
class EvalRunConfig:
    """Where the evaluation stage reads features from and writes results."""

    batch_size: int = 256  # feature extraction
    num_workers: int = 4
    cache_dir: str | None = None  # default <run dir>/features
    probe: ProbeConfig = field(default_factory=ProbeConfig)


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
class PretrainConfig:
    method: Any = MISSING
    data: Any = MISSING
    backbone: BackboneConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    resume: bool = True  # continue from <run dir>/checkpoints/last.ckpt when present
    # Start from this checkpoint when the run directory has none of its own (a new run
    # continuing another's state, e.g. with a larger budget in a fresh directory).
    resume_from: str | None = None
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    evaluate_after: bool = False  # run the evaluation stage on the final checkpoint
    eval: EvalRunConfig = field(default_factory=EvalRunConfig)


@dataclass
class EvaluateConfig:
    checkpoint: str = MISSING
    data_root: str | None = None  # evaluate on another copy of the data (default: the ckpt's)
    splits_dir: str | None = None
    eval: EvalRunConfig = field(default_factory=EvalRunConfig)


# Overrides that change how long or how safely a run trains, not what it is: they stay out
# of the run-directory hash so that the same command with a larger budget resumes the run.
UNHASHED_KEYS = ("trainer.max_steps", "trainer.max_epochs", "resume")
UNHASHED_PREFIXES = ("checkpoint.",)


def hashed_override(override: str) -> bool:
    """False for the overrides :func:`run_hash` ignores (budget and checkpoint cadence)."""
    key = str(override).lstrip("~+").split("=", 1)[0].strip()
    return key not in UNHASHED_KEYS and not key.startswith(UNHASHED_PREFIXES)


def run_hash(overrides: Any) -> str:
    """Short stable hash of a run's command-line overrides (deterministic run directories).

    ``trainer.max_steps``, ``trainer.max_epochs``, ``resume`` and ``checkpoint.*`` are left
    out (:data:`UNHASHED_KEYS`): re-running with a larger budget continues the same run.
    """
    items = sorted(str(o) for o in (overrides or []) if hashed_override(str(o)))
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:8]


def run_hash_all(overrides: Any) -> str:
    """Hash of every override: multirun sweep jobs, which may differ only in budget."""
    items = sorted(str(o) for o in (overrides or []))
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:8]


def register_configs() -> None:
    """Register schemas with Hydra's ConfigStore and the ``run_hash`` resolver (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="pretrain_schema", node=PretrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    schemas = {
        "method": {"vicreg_schema": VICRegConfig, "sie_schema": SIEConfig},
        "data": {"iebench_schema": IEBenchDataConfig, "pde_schema": PDEDataConfig},
        "backbone": {"backbone_schema": BackboneConfig},
        "trainer": {"trainer_schema": TrainerConfig},
        "logger": {"logger_schema": LoggerConfig},
    }
    for group, nodes in schemas.items():
        for name, node in nodes.items():
            cs.store(group=group, name=name, node=node)
    if not OmegaConf.has_resolver("run_hash"):
        OmegaConf.register_new_resolver("run_hash", run_hash)
    if not OmegaConf.has_resolver("run_hash_all"):
        OmegaConf.register_new_resolver("run_hash_all", run_hash_all)
