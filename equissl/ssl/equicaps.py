"""EquiCaps: predictor-free pose-aware capsule networks (Konstantinou, Leontidis, Thota,
Durrant, ICCV 2025; AberdeenML/EquiCaps ``src/models.py``, classes ``EquiCaps_3x3`` and
``EquiCaps_4x4``).

A capsule projector (:class:`~equissl.models.capsules.CapsuleProjector`) on the backbone's
feature map gives ``K = 32`` activations ``a ∈ (0, 1)^K`` (the invariant embedding) and
``K`` pose matrices ``P ∈ R^{K×p×p}`` (the equivariant one). There is no predictor: view
1's poses are right-multiplied by the known relative transformation ``ρ(g)`` of the pair,

* ``p = 3``: ``R₁⁻¹R₂`` (action ``rotation_matrix``, 3DIEBench and 3DIEBench-T);
* ``p = 4``: ``M₁⁻¹M₂`` (3DIEBench-T) with ``M = T(t)·R`` (``frame: object``, action
  ``transform_object``, the reference without ``--base-frame``) or ``M = R·T(t)``
  (``frame: base``, action ``transform_base``, the reference's ``--base-frame``).

Loss (``forward`` of the reference), ``N(X) = X / ‖X‖_F`` per capsule::

    invariance   = mean_b Σ_k −a₂ log a₁                          (--sim-coeff 0.1)
    equivariance = MSE(N(P₁ ρ(g)), N(P₂))                         (--equi-factor 5)
    memax        = Σ_views log K − H(mean over the global batch of a)   (weight 1)
    variance     = ½ [v(Z₁) + v(Z₂)]                               (--std-coeff 10)
    covariance   = c(Z₁) + c(Z₂)                                   (--cov-coeff 1)

with ``Z₁ = [a₁ ‖ N(P₁ ρ(g))]``, ``Z₂ = [a₂ ‖ N(P₂)]`` and ``v``, ``c`` VICReg's variance
hinge and covariance penalty over the batch gathered across ranks. The downstream
representation is the 512-d average-pooled backbone feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from equissl.config import MethodConfig
from equissl.datasets.base import DataSpec
from equissl.models.capsules import CapsuleProjector
from equissl.registries import METHODS
from equissl.ssl.base import LossOutput, SSLMethod
from equissl.ssl.losses import covariance_term, mean_entropy_term, variance_term

EQUICAPS_TERMS = ("invariance", "equivariance", "memax", "variance", "covariance")
#: (pose size, frame) -> the action-space target that is ρ(g)
ACTIONS = {
    (3, "object"): "rotation_matrix",
    (3, "base"): "rotation_matrix",
    (4, "object"): "transform_object",
    (4, "base"): "transform_base",
}


@dataclass
class EquiCapsConfig(MethodConfig):
    """EquiCaps, README pretraining command of github.com/AberdeenML/EquiCaps
    (``--sim-coeff 0.1 --equi-factor 5 --std-coeff 10 --cov-coeff 1 --mlp 1111-16-32``).

    ``pose_size`` 3 (``EquiCaps_3x3``, 9 values per pose) or 4 (``EquiCaps_4x4``, 16);
    ``frame`` (4×4 only) object (``M = T·R``) or base (``M = R·T``, ``--base-frame``).
    ``action`` is derived from the two and may be left null. ``capsule_parts`` adds the
    capsule activations (``act``) and poses (``pose``) to the evaluated parts.
    """

    pose_size: int = 3
    frame: str = "object"
    num_capsules: int = 32  # --mlp 1111-16-32: only the last number is read
    activation_checkpoint: bool = True  # on unless --no-activation-checkpoint
    capsule_parts: bool = False
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "invariance": 0.1,
            "equivariance": 5.0,
            "memax": 1.0,
            "variance": 10.0,
            "covariance": 1.0,
        }
    )


def frobenius_normalize(poses: Tensor) -> Tensor:
    """Each ``[..., p, p]`` pose matrix divided by its Frobenius norm."""
    return poses / poses.norm(dim=(-2, -1), keepdim=True)


@METHODS.register("equicaps", config=EquiCapsConfig)
class EquiCaps(SSLMethod):
    """EquiCaps: capsule poses transformed by the known ρ(g), no predictor."""

    terms = EQUICAPS_TERMS
    uses_action = True

    def __init__(self, config: dict[str, Any], spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.pose_size = int(self.mcfg["pose_size"])
        frame = str(self.mcfg["frame"])
        if (self.pose_size, frame) not in ACTIONS:
            raise ValueError(
                f"method.pose_size={self.pose_size}, method.frame={frame!r}: "
                "pose_size is 3 or 4, frame is object or base"
            )
        components = [ACTIONS[(self.pose_size, frame)]]
        if self.mcfg.get("action") not in (None, components):
            raise ValueError(
                f"method.action={list(self.mcfg['action'])} is not ρ(g) of "
                f"pose_size={self.pose_size}, frame={frame!r}: {components} (or null)"
            )
        self.action = self.action_space.select(components)
        self.num_capsules = int(self.mcfg["num_capsules"])
        self.capsules = CapsuleProjector(
            self.repr_dim,
            self._map_size(),
            self.num_capsules,
            self.pose_size,
            bool(self.mcfg["activation_checkpoint"]),
        )

    def _map_size(self) -> tuple[int, int]:
        """``(h, w)`` of the backbone's feature map for this data's views (the kernel of
        the routing layer), from one eval-mode pass that leaves the BN statistics alone."""
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            fmap = self.backbone.feature_map(torch.zeros(1, *self.spec.view_shape))
        self.backbone.train(was_training)
        return int(fmap.shape[-2]), int(fmap.shape[-1])

    @property
    def capsule_dims(self) -> dict[str, int]:
        """Widths of the optional capsule parts."""
        return {"act": self.num_capsules, "pose": self.num_capsules * self.pose_size**2}

    @property
    def part_dims(self) -> dict[str, int]:
        dims = super().part_dims
        return {**dims, **self.capsule_dims} if self.mcfg["capsule_parts"] else dims

    def embed(self, views: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``views [B, *view_shape]`` -> pooled representation ``[B, D]``, capsule
        activations ``[B, K]`` and poses ``[B, K, p, p]``."""
        fmap = self.backbone.feature_map(views)
        act, pose = self.capsules(fmap)
        return self.backbone.pool_map(fmap), act, pose

    def represent(self, views: Tensor) -> dict[str, Tensor]:
        if not self.mcfg["capsule_parts"]:
            return super().represent(views)
        r, act, pose = self.embed(views)
        return {"full": r, "act": act, "pose": pose.flatten(1)}

    def compute_loss(self, batch: dict[str, Tensor]) -> LossOutput:
        views = batch["views"]
        p = self.pose_size
        rho = self.relative_action(batch["latents"], 0, 1).view(-1, p, p)
        r1, act1, pose1 = self.embed(views[:, 0])
        _, act2, pose2 = self.embed(views[:, 1])
        return LossOutput(equicaps_terms(act1, act2, pose1, pose2, rho), r1)


def equicaps_terms(
    act1: Tensor, act2: Tensor, pose1: Tensor, pose2: Tensor, rho: Tensor
) -> dict[str, Tensor]:
    """Unweighted EquiCaps terms.

    Args:
        act1, act2: ``[B, K]`` capsule activations of views 1 and 2, in (0, 1).
        pose1, pose2: ``[B, K, p, p]`` capsule poses.
        rho: ``[B, p, p]`` relative transformation from view 1 to view 2.
    """
    transformed = frobenius_normalize(pose1 @ rho.to(pose1.dtype).unsqueeze(1)).flatten(1)
    target = frobenius_normalize(pose2).flatten(1)
    z1 = torch.cat((act1, transformed), dim=1)
    z2 = torch.cat((act2, target), dim=1)
    return {
        "invariance": -(act2 * torch.log(act1)).sum(dim=1).mean(),
        "equivariance": F.mse_loss(transformed, target),
        "memax": mean_entropy_term(act1) + mean_entropy_term(act2),
        "variance": 0.5 * (variance_term(z1) + variance_term(z2)),
        "covariance": covariance_term(z1) + covariance_term(z2),
    }
