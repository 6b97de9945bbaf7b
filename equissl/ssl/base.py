"""The method extension point (docs/extending.md, "A method"): the base class every method
subclasses and the registry it registers in.

A method is one module::

    @METHODS.register("sie", config=SIEConfig)
    class SIE(SSLMethod):
        terms = ("invariance", "equivariance", ...)
        def compute_loss(self, batch) -> LossOutput: ...

plus one YAML option in ``configs/method/``. The base class owns what every method shares:
the backbone for the dataset's view shape, the action the method is conditioned on, the
optimiser and a schedule computed from the run's real step count, the weighted sum
Σ weight·term of the loss terms (weights in ``method.weights``, every term logged), a NaN
guard, the batch-contract check on the first batch, an online linear probe on detached
features, EMA targets (:meth:`momentum_pairs`), ``represent`` with named parts, and
checkpoints that describe themselves (config, data spec, action, parts, versions) so that
:func:`load_method` rebuilds the model without the training data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equissl import __version__
from equissl.checkpointing import (
    CHECKPOINT_KEY,
    CHECKPOINT_VERSION,
    CheckpointError,
    check_resume,
    read_description,
)
from equissl.config import MomentumConfig
from equissl.datasets.base import DataSpec
from equissl.datasets.contract import check_batch
from equissl.lightning_compat import attached_trainer, load_train_dataloader
from equissl.models.backbones import build_backbone
from equissl.models.ema import momentum_tau, update_targets
from equissl.registries import METHODS as METHODS  # where plugins written for 0.1 import it
from equissl.speed import optimizer_options, speed_of, speed_up_backbone
from equissl.ssl.monitor import rankme
from equissl.ssl.optim import build_optimizer, build_schedule, param_groups, scaled_lr


class NonFiniteLossError(RuntimeError):
    """Raised when a loss term becomes NaN/inf; the message lists every term's value."""


@dataclass
class LossOutput:
    """What :meth:`SSLMethod.compute_loss` returns.

    Attributes:
        terms: unweighted loss terms (scalars), one per name in the method's ``terms``.
        embedding: ``[B, D]`` representation of the first view (the collapse monitor's,
            and the online probe's unless ``online_input`` is given).
        online_input: ``[B, D_probe]`` what the online classifier reads instead (e.g.
            seq-JEPA's aggregate of the training sequence, as its reference's online probe),
            of width :attr:`SSLMethod.online_probe_dim`.
    """

    terms: dict[str, Tensor]
    embedding: Tensor
    online_input: Tensor | None = None


class SSLMethod(pl.LightningModule):
    """Shared machinery of every method.

    Args:
        config: the whole resolved run config (``method``, ``backbone``, ``data``, …
            sections), stored in checkpoints.
        spec: the training data's :class:`DataSpec` (view shape, action space, classes).

    Subclasses set :attr:`terms`, implement :meth:`compute_loss`, and may override
    :attr:`parts`, :meth:`represent`, :meth:`momentum_pairs` and :attr:`num_views_range`.
    """

    #: names of the loss terms compute_loss returns; ``method.weights`` has one per name
    terms: ClassVar[tuple[str, ...]] = ()
    #: (fewest, most) views per object the method can consume
    num_views_range: ClassVar[tuple[int, int]] = (2, 2)
    #: whether the method is conditioned on the relative action between views
    uses_action: ClassVar[bool] = False
    #: a method whose representation spans several views sets this and implements
    #: :meth:`represent_sequence`
    sequence_representation: ClassVar[bool] = False
    #: the part holding the per-view encodings a sequence representation aggregates, for
    #: methods that implement :meth:`aggregate_encodings` (``None``: none does)
    sequence_encoding_part: ClassVar[str | None] = None
    #: the part whose embedding the method's predictor maps under an action (``None``: the
    #: method has no such predictor); methods with one implement
    #: :meth:`prediction_embedding` and :meth:`predict`
    predictor_part: ClassVar[str | None] = None

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__()
        self.config = config
        self.mcfg = config["method"]
        self.spec = spec
        self.num_views = int(self.mcfg["num_views"])
        lo, hi = self.num_views_range
        if not lo <= self.num_views <= hi:
            allowed = str(lo) if lo == hi else f"{lo}..{hi}"
            raise ValueError(
                f"method {self.mcfg['name']} consumes {allowed} views per object, "
                f"not method.num_views={self.num_views} (data.num_views)"
            )
        self.weights = self._check_weights(dict(self.mcfg.get("weights") or {}))
        self.action_space = spec.build_action_space()
        self.action = (
            self.action_space.select(self.mcfg.get("action")) if self.uses_action else None
        )
        self.backbone = build_backbone(config["backbone"], spec.view_shape)
        self.repr_dim = self.backbone.num_features
        self.num_classes = int(spec.num_classes)
        self.online_classifier = (
            nn.Linear(self.online_probe_dim, self.num_classes)
            if self.mcfg.get("online_probe", False) and self.num_classes > 0
            else None
        )
        self._contract_checked = False

    @property
    def online_probe_dim(self) -> int:
        """Width of what the online classifier reads (:attr:`LossOutput.online_input`,
        by default the representation)."""
        return self.repr_dim

    @property
    def online_probe_part(self) -> str | None:
        """The part whose representations the trained online classifier can score at
        evaluation (:meth:`online_logits`); ``None`` where it read something else."""
        return None

    @torch.no_grad()
    def online_logits(self, rep: Tensor) -> Tensor:
        """The online classifier's logits ``[B, C]`` of representations ``rep [B, D]`` of
        :attr:`online_probe_part`."""
        if self.online_classifier is None:
            raise RuntimeError(f"{type(self).__name__} has no online classifier")
        return self.online_classifier(rep)

    def _check_weights(self, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(self.terms))
        missing = sorted(set(self.terms) - set(weights))
        if unknown or missing:
            raise ValueError(
                f"method {self.mcfg['name']}: method.weights must give one weight per loss "
                f"term {list(self.terms)}; unknown {unknown}, missing {missing}"
            )
        return {k: float(v) for k, v in weights.items()}

    # ------------------------------------------------------------------ representation
    @property
    def parts(self) -> dict[str, slice]:
        """Named slices of the backbone representation (``full`` always)."""
        return {"full": slice(0, self.repr_dim)}

    @property
    def part_dims(self) -> dict[str, int]:
        """Width of each named part."""
        return {name: len(range(self.repr_dim)[sl]) for name, sl in self.parts.items()}

    def represent(self, views: Tensor) -> dict[str, Tensor]:
        """Frozen representation of ``views [B, *view_shape]``: ``{part: [B, D_part]}``."""
        r = self.backbone(views)
        return {name: r[:, sl] for name, sl in self.parts.items()}

    def represent_sequence(self, views: Tensor, latents: Tensor) -> dict[str, Tensor]:
        """Representation of ``M`` views of each object: ``views [B, M, *view_shape]`` and
        their latents ``[B, M, P]`` (the method derives its actions with
        ``self.action.relative``) -> ``{part: [B, D_part]}``. Only for methods with
        :attr:`sequence_representation`; the evaluation stage calls it for every
        ``M`` in ``eval.sequence_views`` and every length a probe asks for
        (``eval.probes.path_integration.lengths``)."""
        raise NotImplementedError(f"{type(self).__name__} has no sequence representation")

    def aggregate_encodings(self, z: Tensor, latents: Tensor) -> dict[str, Tensor]:
        """:meth:`represent_sequence` from the views' encodings ``z [B, M, D]`` (the part
        :attr:`sequence_encoding_part` of each view) and latents ``[B, M, P]``: what lets
        a probe aggregate fresh sequences from cached features without rerunning the
        backbone. Only for methods that set :attr:`sequence_encoding_part`."""
        raise NotImplementedError(f"{type(self).__name__} aggregates no cached encodings")

    @property
    def has_predictor(self) -> bool:
        """Whether the method predicts a view's embedding from another's and the action."""
        return self.predictor_part is not None

    def prediction_embedding(self, rep: Tensor) -> Tensor:
        """Embedding ``[B, E]`` the predictor consumes and predicts (e.g. a projector's
        output) of the part :attr:`predictor_part` of representations ``rep [B, D_part]``."""
        raise NotImplementedError(f"{type(self).__name__} has no predictor")

    def predict(self, embedding: Tensor, action: Tensor) -> Tensor:
        """Predicted embedding ``[B, E]`` of the view that ``action [B, A]`` (this method's
        action, :attr:`action`) leads to from a view of embedding ``embedding [B, E]``."""
        raise NotImplementedError(f"{type(self).__name__} has no predictor")

    # ------------------------------------------------------------------------ training
    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        """Unweighted loss terms of one batch (see :class:`LossOutput`)."""
        raise NotImplementedError

    def relative_action(self, latents: Tensor, a: int, b: int) -> Tensor:
        """Action ``[B, A]`` taking view ``a`` to view ``b`` of ``latents [B, V, P]``."""
        if self.action is None:
            raise RuntimeError(f"{type(self).__name__} sets uses_action = False")
        return self.action.relative(latents[:, a], latents[:, b]).to(latents.device)

    def total_loss(self, terms: dict[str, Tensor]) -> Tensor:
        """Σ weight·term over the method's terms."""
        return sum(self.weights[k] * terms[k] for k in self.terms)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if not self._contract_checked:
            check_batch(batch)
            if batch["views"].shape[1] != self.num_views:
                raise ValueError(
                    f"batch has {batch['views'].shape[1]} views per object, the "
                    f"method consumes {self.num_views}"
                )
            self._contract_checked = True
        out = self.compute_loss(batch)
        terms = out.terms
        if set(terms) != set(self.terms):
            raise RuntimeError(
                f"{type(self).__name__}.compute_loss returned terms "
                f"{sorted(terms)}, declared {sorted(self.terms)}"
            )
        if not all(torch.isfinite(v.detach()).all() for v in terms.values()):
            values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
            raise NonFiniteLossError(
                f"non-finite loss at step {self.global_step} (epoch {self.current_epoch}): "
                f"{values}. Lower the learning rate, check the data, or use 32-bit precision."
            )
        loss = self.total_loss(terms)
        batch_size = batch["views"].shape[0]
        logged = {f"train/{k}": v.detach() for k, v in terms.items()}
        logged["train/loss"] = loss.detach()
        if self._logs_this_step():  # the collapse monitor, only where it is written
            logged["monitor/rankme"] = rankme(out.embedding)
        self.log_dict(logged, prog_bar=False, batch_size=batch_size)
        self.log("loss", loss.detach(), prog_bar=True, logger=False, batch_size=batch_size)
        if "skipped" in batch:  # data.on_error=skip: damaged items replaced in this batch
            self.log(
                "data/skipped",
                batch["skipped"].sum().float(),
                reduce_fx="sum",
                batch_size=batch_size,
            )
        if self.online_classifier is not None:
            labels = batch["label"]
            known = labels >= 0
            if known.any():
                seen = out.embedding if out.online_input is None else out.online_input
                logits = self.online_classifier(seen.detach()[known])
                probe_loss = F.cross_entropy(logits, labels[known])
                acc = (logits.argmax(-1) == labels[known]).float().mean()
                self.log_dict(
                    {"online/ce": probe_loss.detach(), "online/top1": acc}, batch_size=batch_size
                )
                loss = loss + probe_loss
        return loss

    def _logs_this_step(self) -> bool:
        """Whether the Trainer writes this step's logged values (an SVD per step would be
        wasted work otherwise); False without a Trainer."""
        connector = getattr(getattr(self, "_trainer", None), "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", False))

    # ------------------------------------------------------------------ momentum targets
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(online, target)`` pairs updated by EMA after each optimizer step (targets made
        with :func:`equissl.models.ema.momentum_copy`)."""
        return []

    def momentum(self, step: int | None = None) -> float:
        """τ of the EMA update after optimizer step ``step`` (default: steps completed so
        far) of the run (``method.momentum``)."""
        m = self.mcfg.get("momentum") or asdict(MomentumConfig())
        trainer = attached_trainer(self)
        total = int(trainer.estimated_stepping_batches) if trainer is not None else 1
        step = self.global_step if step is None else step
        return momentum_tau(step, total, float(m["base_tau"]), float(m["final_tau"]))

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimizer step, then the EMA update of every :meth:`momentum_pairs` target.

        Here rather than in ``on_train_batch_end``: callbacks' ``on_train_batch_end`` runs
        before the module's, so the step checkpoint written there
        (:mod:`equissl.training.checkpoints`) would miss the update, and a resumed run would
        lose one. Called once per optimizer step (not per batch under gradient accumulation).
        """
        super().optimizer_step(*args, **kwargs)
        pairs = self.momentum_pairs()
        if pairs:
            tau = self.momentum(self.global_step + 1)  # Lightning counts the step after this hook
            update_targets(pairs, tau)
            self.log("train/tau", tau, batch_size=int(self.config["data"]["batch_size"]))

    # ----------------------------------------------------------------------- optimiser
    def effective_lr(self) -> float:
        """Learning rate after ``method.optim.lr_scaling`` (:func:`equissl.ssl.optim.scaled_lr`)."""
        return scaled_lr(self.mcfg["optim"], self.global_batch_size())

    def global_batch_size(self) -> int:
        per_device = int(self.config["data"]["batch_size"])
        trainer = attached_trainer(self)
        world = trainer.world_size if trainer is not None else 1
        return per_device * world

    def schedule_steps(self) -> tuple[int, int]:
        """``(total optimizer steps, warm-up steps)`` of this run, from the trainer's real
        budget: ``max_steps`` or epochs × batches per epoch ÷ accumulation."""
        o = self.mcfg["optim"]
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if int(o.get("warmup_steps", 0)) > 0:
            return total, int(o["warmup_steps"])
        batches = self.trainer.num_training_batches  # set by estimated_stepping_batches
        if not math.isfinite(batches) and self.trainer.train_dataloader is None:
            # max_epochs=-1: estimated_stepping_batches returned max_steps without loading
            # the data; load it (as it does otherwise) for the batches per epoch.
            load_train_dataloader(self.trainer)
            batches = self.trainer.num_training_batches
        per_epoch = (
            max(1, math.ceil(batches / self.trainer.accumulate_grad_batches))
            if math.isfinite(batches)
            else total
        )
        return total, min(total, round(float(o["warmup_epochs"]) * per_epoch))

    def configure_model(self) -> None:
        """The ``speed`` flags on the backbone (channels_last, compile), once per module."""
        if not getattr(self, "_speed_applied", False):
            speed_up_backbone(self.backbone, speed_of(self.config))
            self._speed_applied = True

    def configure_optimizers(self) -> Any:
        o = self.mcfg["optim"]
        groups = param_groups(self, bool(o["exclude_bias_norm"]))
        kernel = optimizer_options(
            speed_of(self.config)["fused_optimizer"], (p for g in groups for p in g["params"])
        )
        optimizer = build_optimizer(o, groups, self.effective_lr(), kernel)
        if o["scheduler"] == "none":
            return optimizer
        total, warmup = self.schedule_steps()
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": build_schedule(o, optimizer, self.effective_lr(), total, warmup),
                "interval": "step",
            },
        }

    # --------------------------------------------------------------------- checkpoints
    def describe(self) -> dict[str, Any]:
        """The self-description stored in every checkpoint under ``"equissl"``."""
        return {
            "version": CHECKPOINT_VERSION,
            "package_version": __version__,
            "config": self.config,
            "spec": self.spec.to_dict(),
            "action": self.action.spec() if self.action is not None else None,
            "parts": self.part_dims,
            "num_classes": self.num_classes,
            "sequence_representation": self.sequence_representation,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.describe()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_resumable(checkpoint, str(self.trainer.ckpt_path or "the checkpoint"))

    def check_resumable(self, checkpoint: dict[str, Any], source: str) -> None:
        """Whether this model may resume ``checkpoint`` (read from ``source``): format
        version and config schema (as evaluation checks them), the data it was trained on
        (view shape, action space), the result-changing settings (``resume_allow``), and
        weights that fit this model. Raises :class:`CheckpointError` naming what differs.

        The pretraining stage calls it before the Trainer starts (nothing written yet);
        Lightning's resume calls it again before it loads the weights."""
        meta = read_description(checkpoint, source)
        problems = DataSpec.from_dict(meta["spec"]).mismatch(self.spec)
        if problems:
            raise CheckpointError(
                f"{source} was trained on other data: this run's data have " + "; ".join(problems)
            )
        # Before Lightning loads the weights (callbacks see the checkpoint only afterwards):
        # a changed recipe is named key by key, not met as a raw load_state_dict error.
        check_resume(source, meta["config"], self.config)
        self._check_weights_fit(checkpoint.get("state_dict") or {}, source, meta["config"])

    def _check_weights_fit(
        self, stored: dict[str, Any], source: str, stored_config: dict[str, Any]
    ) -> None:
        """Raise :class:`CheckpointError` when the stored weights do not fit this model
        (another method or backbone, allowed through ``resume_allow`` or not)."""
        own = self.state_dict()
        missing = [k for k in own if k not in stored]
        unexpected = [k for k in stored if k not in own]
        reshaped = [
            f"{k} {tuple(stored[k].shape)} -> {tuple(v.shape)}"
            for k, v in own.items()
            if k in stored and hasattr(stored[k], "shape") and stored[k].shape != v.shape
        ]
        if not (missing or unexpected or reshaped):
            return

        def names(cfg: dict[str, Any]) -> str:
            method = (cfg.get("method") or {}).get("name", "?")
            return f"method={method} backbone={(cfg.get('backbone') or {}).get('name', '?')}"

        found = [
            f"{len(missing)} missing ({', '.join(missing[:3])})" if missing else "",
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})" if unexpected else "",
            f"{len(reshaped)} reshaped ({', '.join(reshaped[:3])})" if reshaped else "",
        ]
        raise CheckpointError(
            f"{source} holds a {names(stored_config)} model; this command builds "
            f"{names(self.config)}, whose weights do not fit it: "
            + "; ".join(f for f in found if f)
            + ". Resume with the checkpoint's method and backbone, or start the new model in "
            "another run directory."
        )
