"""Path integration from a sequence representation (seq-JEPA, Ghaemi et al. 2025, Fig. 5):
regress the cumulative action of the observed sequence from its aggregate, as the sequence
grows, R² per length.

What is regressed. The seq-JEPA reference code (hafezgh/seq-jepa) has no path-integration
probe; the paper plots "angular path prediction R²" against the number of views, and the
authors describe the task as integrating "the path connecting the initial view to the final
view". The target here is therefore the relative action from the first to the last of the
``M`` observed views, ``action.relative(latents_1, latents_M)``: for every action-space
target that is the group element relating two views (3DIEBench's quaternion of R₁⁻¹R_M,
hue differences, translations, which are the translation part of M₁⁻¹M_M) this *is* the
composition of the ``M − 1`` step actions the model saw, so it works for any data with an
action space. ``cumulative: angle_sum`` offers the other reading, the summed rotation angle
of the steps (a scalar path length; for one target of kind ``quaternion``, its rotation
angle, or of kind ``angle``, the norm of its wrapped angles — chosen by the target's kind,
``ActionSpace.target_kind``, not its name). ``M = 1`` has no path (the
target is the identity for every object) and is not probed.

Features: the sequence parts ``"<part>@M<m>"`` of the cache (the first ``m`` evaluation
views of each object, one sequence per object), for every length in ``lengths``; the
evaluation stage adds these lengths to the cache (one ``represent_sequence`` pass per
length, Σ m view encodings per object). Head and training follow the project's pair
regression (the SIE protocol; the reference has none of its own): MLP
``D -> 1024 -> 1024 -> K``, Adam 1e-3, batch 256, 300 epochs, MSE, seeded. Metrics per
length: ``r2_global``, ``r2_sklearn``, ``mse``, and the constant predictor's floor on the
same validation sequences (``constant_r2_global``, ``constant_r2_sklearn``,
``constant_mse``: the mean target of the training sequences);
:meth:`PathIntegrationProbe.summarise` plots R² against ``M`` with the floor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from equissl.config import ProbeConfig
from equissl.datasets.contract import Action, wrap_angle
from equissl.eval.metrics import regression_metrics
from equissl.eval.probes.base import (
    PROBES,
    REGRESSION_FLOORS,
    EvalContext,
    Probe,
    ProbeResult,
    fit,
    predict,
    seeded,
    sequence_length,
    sequence_parts,
)
from equissl.eval.probes.pair_regression import pair_mlp
from equissl.eval.probes.protocol import trained_head_fields
from equissl.eval.report import plot_path_integration
from equissl.geometry import quaternion_angle

Cumulative = Callable[[Action, Tensor, int], Tensor]


@dataclass
class PathIntegrationProbeConfig(ProbeConfig):
    """MLP on the aggregate of M views regressing the action from view 1 to view M
    (pair-regression protocol: D-1024-1024-K, Adam 1e-3, batch 256, 300 epochs)."""

    # action-space targets integrated; None: the action the method is conditioned on
    # (its checkpoint's ``action``), else the data's default action
    components: list[str] | None = None
    cumulative: str = "composed"  # composed (first -> last view) | angle_sum (Σ step angles)
    # sequence lengths M (views observed); the paper's plot goes to 7. Each length costs one
    # sequence pass of the frozen model over both splits; lengths above the views per
    # object are left out.
    lengths: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6, 7])
    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    hidden_dim: int = 1024


def composed(action: Action, latents: Tensor, length: int) -> Tensor:
    """``[N, A]``: the action from view 1 to view ``length`` of ``latents [N, V, P]``
    (the composition of the ``length − 1`` step actions)."""
    return action.relative(latents[:, 0], latents[:, length - 1])


#: target kinds ``angle_sum`` can sum, with the angle (rad) of a step ``[..., K] -> [...]``
STEP_ANGLES: dict[str, Callable[[Tensor], Tensor]] = {
    "quaternion": quaternion_angle,
    "angle": lambda steps: wrap_angle(steps).norm(dim=-1),
}


def angle_sum(action: Action, latents: Tensor, length: int) -> Tensor:
    """``[N, 1]``: Σ over the ``length − 1`` steps of the step's angle (rad); ``action``
    must be one target of a kind in :data:`STEP_ANGLES` (a quaternion's rotation angle, the
    norm of an angle target's wrapped angles)."""
    (kind,) = action.kinds
    steps = action.relative(latents[:, : length - 1], latents[:, 1:length])  # [N, M-1, K]
    return STEP_ANGLES[kind](steps.double()).sum(1, keepdim=True).float()


CUMULATIVE: dict[str, Cumulative] = {"composed": composed, "angle_sum": angle_sum}


def path_integration_probe(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    cfg: dict[str, Any],
    device: torch.device,
    desc: str = "probe path integration",
    progress: bool = True,
) -> ProbeResult:
    """MLP on sequence features ``[N, D]`` regressing cumulative actions ``[N, K]``:
    ``r2_global``, ``r2_sklearn``, ``mse`` on val and the constant (train-mean) predictor's
    ``constant_r2_global`` / ``constant_r2_sklearn`` / ``constant_mse``."""

    def sample_epoch(gen: torch.Generator) -> tuple[Tensor, Tensor]:
        return train_x, train_y  # one cached sequence per object; fit shuffles

    with seeded(int(cfg["seed"])):
        head = pair_mlp(train_x.shape[1], int(cfg["hidden_dim"]), train_y.shape[1])
    model = fit(head, sample_epoch, F.mse_loss, cfg, device, desc, progress)
    pred = predict(model, val_x, device)
    metrics = regression_metrics(pred, val_y, train_y)
    return ProbeResult(metrics, pred, val_y, floors=dict(REGRESSION_FLOORS))


@PROBES.register("path_integration", config=PathIntegrationProbeConfig)
class PathIntegrationProbe(Probe):
    """Regress the cumulative action of M views from their aggregate, per length M."""

    def card_fields(self, ctx: EvalContext) -> dict[str, Any]:
        width = int(self.cfg["hidden_dim"])
        return {
            **trained_head_fields(self.cfg, f"mlp D-{width}-{width}-out"),
            "samples": f"random sequences of M = {list(self.cfg['lengths'])} views per object",
        }

    def __init__(self, name: str, cfg: dict[str, Any]) -> None:
        super().__init__(name, cfg)
        if cfg["cumulative"] not in CUMULATIVE:
            raise ValueError(
                f"eval.probes.{name}.cumulative={cfg['cumulative']!r}; "
                f"choose from {sorted(CUMULATIVE)}"
            )
        short = [int(m) for m in cfg["lengths"] if int(m) < 2]
        if short:
            raise ValueError(
                f"eval.probes.{name}.lengths has {short}: a path needs at least 2 views"
            )
        self.lengths = sorted({int(m) for m in cfg["lengths"]})

    def sequence_views(self) -> tuple[int, ...]:
        return tuple(self.lengths)

    def action(self, ctx: EvalContext) -> Action:
        """The integrated action: ``components``, the method's action, or the data's."""
        components = self.cfg.get("components") or (ctx.meta.get("action") or {}).get("components")
        return ctx.action_space.select(components)

    def available(self, ctx: EvalContext) -> list[int]:
        return [m for m in self.lengths if m <= ctx.train.views_per_object]

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if not ctx.meta.get("sequence_representation"):
            return "the method has no sequence representation (represent_sequence)"
        try:
            action = self.action(ctx)
        except ValueError as err:
            return str(err)
        if self.cfg["cumulative"] == "angle_sum" and (
            len(action.components) != 1 or action.kinds[0] not in STEP_ANGLES
        ):
            kinds = dict(zip(action.components, action.kinds, strict=True))
            return (
                "cumulative=angle_sum sums step angles: it needs one target of kind "
                f"{' or '.join(STEP_ANGLES)}, not {kinds}"
            )
        if not self.available(ctx):
            return (
                f"lengths {self.lengths} exceed the {ctx.train.views_per_object} evaluation "
                "views per object"
            )
        return None

    def parts(self, ctx: EvalContext, parts: list[str]) -> list[str]:
        return sequence_parts(ctx.train.sequences, parts, self.available(ctx))

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        _, m = sequence_length(part)
        action = self.action(ctx)
        target = CUMULATIVE[self.cfg["cumulative"]]
        return path_integration_probe(
            ctx.train.sequences[part][:, 0],
            target(action, ctx.train.latents, m),
            ctx.val.sequences[part][:, 0],
            target(action, ctx.val.latents, m),
            self.cfg,
            ctx.device,
            f"probe {self.name} [{part}]",
            ctx.progress,
        )

    def summarise(self, ctx: EvalContext, results: dict[str, ProbeResult]) -> dict[str, str]:

        if not results:
            return {}
        file = f"{self.name}.png"
        title = f"{ctx.meta['config']['method']['name']}: {'+'.join(self.action(ctx).components)}"
        plot_path_integration(
            {part: res.metrics for part, res in results.items()}, title, ctx.out_dir / file
        )
        return {self.name: file}
