"""Base class and registry of the SSL methods (DESIGN §3).

A method is a ``LightningModule`` that owns a backbone, its heads and its loss. The base
class owns what every method shares: the optimiser/scheduler from config, logging of
every loss term, a NaN guard, an optional online linear probe on detached features,
``represent(x)`` with named parts, and the resolved config carried in every checkpoint so
that the evaluation stage can rebuild the model from the checkpoint alone.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equissl.datasets.contract import ActionSpace
from equissl.models.backbones import build_backbone
from equissl.registry import Registry

METHODS: Registry[type[SSLMethod]] = Registry("method")

CHECKPOINT_KEY = "equissl"
CHECKPOINT_VERSION = 1


class NonFiniteLossError(RuntimeError):
    """Raised when a loss term becomes NaN/inf; the message lists every term's value."""


class SSLMethod(pl.LightningModule):
    """Shared machinery of every method.

    Args:
        config: the whole resolved run config as a plain dict (``method``, ``backbone``,
            ``data``, … sections); stored in checkpoints.
        action_space: the dataset's action space (relative actions between views).
        num_classes: classes of the online probe (0 disables it).

    Subclasses implement :meth:`compute_loss` and may override :attr:`parts`.
    """

    def __init__(self, config: dict[str, Any], action_space: ActionSpace, num_classes: int = 0):
        super().__init__()
        self.config = config
        self.mcfg = config["method"]
        self.action_space = action_space
        self.num_classes = int(num_classes)
        bcfg = config["backbone"]
        self.backbone, self.repr_dim = build_backbone(
            bcfg["name"], in_chans=self.in_chans, cifar_stem=bcfg["cifar_stem"],
            zero_init_residual=bcfg["zero_init_residual"],
        )
        self.online_classifier = (
            nn.Linear(self.repr_dim, self.num_classes)
            if self.mcfg.get("online_probe", False) and self.num_classes > 0 else None
        )

    # ------------------------------------------------------------------ representation
    @property
    def in_chans(self) -> int:
        return int(self.config["data"].get("in_chans", 3))

    @property
    def parts(self) -> dict[str, slice]:
        """Named slices of the representation evaluated separately (``full`` always)."""
        return {"full": slice(0, self.repr_dim)}

    def represent(self, x: Tensor) -> Tensor:
        """Frozen representation ``[B, D]`` of inputs ``[B, C, H, W]`` used by evaluation."""
        return self.backbone(x)

    # ------------------------------------------------------------------------ training
    @abstractmethod
    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """Loss terms (must include ``loss``, the total) and the representations
        ``[B, D]`` of the first view, for the online probe."""

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        terms, reps = self.compute_loss(batch)
        if not all(torch.isfinite(v.detach()).all() for v in terms.values()):
            values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
            raise NonFiniteLossError(
                f"non-finite loss at step {self.global_step} (epoch {self.current_epoch}): "
                f"{values}. Lower the learning rate, check the data, or use 32-bit precision."
            )
        loss = terms["loss"]
        batch_size = batch["views"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()},
                      prog_bar=False, batch_size=batch_size)
        self.log("loss", loss.detach(), prog_bar=True, logger=False, batch_size=batch_size)
        if self.online_classifier is not None:
            labels = batch["label"]
            known = labels >= 0
            if known.any():
                logits = self.online_classifier(reps.detach()[known])
                probe_loss = F.cross_entropy(logits, labels[known])
                acc = (logits.argmax(-1) == labels[known]).float().mean()
                self.log_dict({"online/ce": probe_loss.detach(), "online/top1": acc},
                              batch_size=batch_size)
                loss = loss + probe_loss
        return loss

    def relative_action(self, latents: Tensor, a: int, b: int) -> Tensor:
        """Action ``[B, A]`` taking view ``a`` to view ``b`` of ``latents [B, V, P]``."""
        return self.action_space.relative(latents[:, a], latents[:, b]).to(latents.device)

    # ----------------------------------------------------------------------- optimiser
    def _param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        if not self.mcfg["optim"]["exclude_bias_norm"]:
            return [{"params": [p for p in self.parameters() if p.requires_grad]}]
        # By module type and tensor rank, not by parameter name (name matching misses
        # some BatchNorms, a known flaw of the Lie-symmetry reference code).
        decay, no_decay = [], []
        for module in self.modules():
            for p in module.parameters(recurse=False):
                if not p.requires_grad:
                    continue
                is_norm = isinstance(module, nn.modules.batchnorm._NormBase | nn.LayerNorm
                                     | nn.GroupNorm)
                (no_decay if is_norm or p.ndim <= 1 else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def effective_lr(self) -> float:
        """Learning rate after the configured scaling rule (DESIGN §7)."""
        o = self.mcfg["optim"]
        if o["lr_scaling"] == "none":
            return float(o["lr"])
        if o["lr_scaling"] == "linear":
            world = self.trainer.world_size if self._trainer is not None else 1
            global_batch = self.config["data"]["batch_size"] * world
            return float(o["lr"]) * global_batch / float(o["base_batch_size"])
        raise ValueError(f"unknown lr_scaling {o['lr_scaling']!r}; use none or linear")

    def configure_optimizers(self) -> Any:
        o = self.mcfg["optim"]
        lr, wd = self.effective_lr(), float(o["weight_decay"])
        groups = self._param_groups(wd)
        optimizers = {
            "adam": lambda: torch.optim.Adam(groups, lr=lr, weight_decay=wd),
            "adamw": lambda: torch.optim.AdamW(groups, lr=lr, weight_decay=wd),
            "sgd": lambda: torch.optim.SGD(groups, lr=lr, weight_decay=wd,
                                           momentum=float(o["momentum"])),
        }
        if o["name"] not in optimizers:
            raise ValueError(f"unknown optimizer {o['name']!r}; choose from {list(optimizers)}")
        optimizer = optimizers[o["name"]]()
        if o["scheduler"] == "none":
            return optimizer
        if o["scheduler"] != "warmup_cosine":
            raise ValueError(f"unknown scheduler {o['scheduler']!r}; use none or warmup_cosine")
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        warmup = int(o["warmup_epochs"]) * per_epoch

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler,
                                                         "interval": "step"}}

    # --------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "version": CHECKPOINT_VERSION,
            "config": self.config,
            "num_classes": self.num_classes,
        }


def build_method(config: dict[str, Any], action_space: ActionSpace,
                 num_classes: int = 0) -> SSLMethod:
    """Instantiate the method named by ``config["method"]["impl"]``."""
    cls = METHODS.get(config["method"]["impl"])
    return cls(config, action_space, num_classes)
