"""Validation during pretraining: cheap, seeded, logged to every logger (``monitor`` config,
:class:`equissl.config.MonitorConfig`; off unless ``monitor.every_n_steps > 0``).

Every ``monitor.every_n_steps`` optimizer steps, and after the last step (``at_end``), the
frozen model represents a fixed subset of the data's evaluation views
(:meth:`ViewDataset.evaluation_views`, the evaluation stage's views): ``objects`` objects
of the validation split and as many of the training split, ``views`` views each, all drawn
once from ``monitor.seed``. It logs, per part of the representation (``full``, ``inv``,
``equi``, ...):

* ``monitor/<part>/top1`` — a linear classifier in closed form (ridge regression of one-hot
  labels, :func:`equissl.scores.ridge_classifier_scores`) fitted on the training subset,
  scored on the validation views;
* ``monitor/<part>/knn_top1`` — the weighted cosine k-NN vote of the knn probe
  (``knn_k``, ``knn_temperature``), training subset as bank;
* ``monitor/<part>/<target>_r2`` — the ridge regression of the pair target (``rotation`` on
  3DIEBench, the action space's first default target elsewhere, e.g. ``lie`` on PDEs) from
  ``[r_a ‖ r_b]`` of every ordered pair of an object's views, SIE's global-mean R²
  (:func:`equissl.scores.r2_global`); ``monitor/constant/<target>_r2`` is the constant
  predictor's (the training pairs' mean target), the floor to read it against. Its penalty
  is the one of :data:`equissl.scores.RIDGES` that predicts every fifth training object
  best from the others (:func:`equissl.scores.ridge_fit_held_out`): a few hundred objects
  against a 2·D-wide design overfit any fixed small penalty (a quickstart run logged −0.52
  against its floor's 0.28 with ``ridge`` alone), while the chosen one shrinks towards the
  mean target where the features do not carry the rotation;
* ``monitor/<part>/std_min``, ``std_mean`` — per-dimension std of the validation
  representations, and ``monitor/<part>/rankme`` — their effective rank
  (:mod:`equissl.ssl.monitor`): the collapse monitors;
* ``monitor/seconds`` — what the pass cost.

Metrics the data cannot give are left out, never a failure: no class labels, no
``top1`` / ``knn_top1``; one view per object or no target, no ``<target>_r2``. A linear
readout of a few hundred objects is a trend to watch, not the evaluation stage's number
(whose probes train MLP heads on every object for hundreds of epochs).

**Training is not perturbed.** The pass runs on the LightningModule itself (not the DDP
wrapper) under ``torch.no_grad`` with every module in ``eval()`` mode (BatchNorm reads its
running statistics and updates nothing), then restores each module's own mode; it reads
its own datasets through its own loader (seeded by its own generator) and saves and
restores the Python, NumPy, torch and CUDA RNG states around the pass, so the training
loader, the RNG states a checkpoint stores and every later step are those of a run without
the monitor (tested bitwise, with a resume in between:
tests/training/test_pretraining_monitor.py). It is skipped once a stop signal has arrived
(the checkpoint comes first); a pass that fails is a warning, and training goes on.

**DDP**: every rank reads the split files at set-up (a split the monitor cannot read, or a
wrong ``monitor.target``, stops all ranks alike before training); global rank 0 alone
measures and logs, and the other ranks wait for it at their next collective (the
checkpoint callback's signal check, the gradient all-reduce). No collective runs inside
the pass: the module's own forward in ``eval()`` mode syncs no BatchNorm statistics.
Measuring on one rank costs the same wall time as measuring on every rank, and keeps the
numbers independent of the world size (tested with two gloo ranks, ``pytest -m e2e``).
The values go straight to every logger of the Trainer (``logger.log_metrics`` at the
global step, as Lightning's LearningRateMonitor does) rather than through
``LightningModule.log``, which writes only at ``trainer.log_every_n_steps`` boundaries and
is not allowed after the last step.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from equissl.datasets.base import ViewDataset, build_dataset, num_classes_of
from equissl.datasets.contract import ActionSpace
from equissl.progress import usable_workers
from equissl.scores import (
    RIDGES,
    knn_scores,
    r2_global,
    ridge_classifier_scores,
    ridge_fit_held_out,
    ridge_predict,
)
from equissl.scores import top1 as top1_of
from equissl.ssl.monitor import dimension_std, rankme
from equissl.training.checkpoints import collect_rng_states, set_rng_states

log = logging.getLogger(__name__)


@dataclass
class MonitorFeatures:
    """Representations of a split's subset: ``parts {part: [N, V, D]}``, ``latents
    [N, V, P]``, ``labels [N]`` (-1 unknown)."""

    parts: dict[str, Tensor]
    latents: Tensor
    labels: Tensor


def pair_target(space: ActionSpace, wanted: str | None) -> str | None:
    """The target regressed from view pairs: ``wanted`` (must exist), else ``rotation`` where
    the action space offers it, else the first of its default action (``None``: none)."""
    if wanted:
        if wanted not in space.targets:
            raise ValueError(
                f"monitor.target={wanted!r}: the data's action space offers {sorted(space.targets)}"
            )
        return wanted
    if "rotation" in space.targets:
        return "rotation"
    return next((t for t in space.default_action if t in space.targets), None)


def ordered_pairs(views: int) -> tuple[Tensor, Tensor]:
    """Every ordered pair ``(a, b)``, ``a != b``, of ``views`` view ids."""
    a, b = torch.meshgrid(torch.arange(views), torch.arange(views), indexing="ij")
    keep = a != b
    return a[keep], b[keep]


def monitor_metrics(
    train: MonitorFeatures,
    val: MonitorFeatures,
    space: ActionSpace,
    num_classes: int,
    cfg: dict[str, Any],
) -> dict[str, float]:
    """The monitor's scores (module docstring) of ``val`` with ``train`` to fit on;
    ``cfg`` is the ``monitor`` section."""
    out: dict[str, float] = {}
    ridge = float(cfg["ridge"])
    tr_known, va_known = train.labels >= 0, val.labels >= 0
    labelled = num_classes > 1 and bool(tr_known.any()) and bool(va_known.any())
    target = pair_target(space, cfg.get("target"))
    pairs = min(train.latents.shape[1], val.latents.shape[1]) >= 2 and target is not None
    if pairs:
        a_tr, b_tr = ordered_pairs(train.latents.shape[1])
        a_va, b_va = ordered_pairs(val.latents.shape[1])

        def pair_y(f: MonitorFeatures, a: Tensor, b: Tensor) -> Tensor:
            return space.target(target, f.latents[:, a], f.latents[:, b]).flatten(0, 1)

        y_tr, y_va = pair_y(train, a_tr, b_tr), pair_y(val, a_va, b_va)
        # the penalty predicting every fifth training object best from the others
        objects = torch.arange(train.latents.shape[0]).repeat_interleave(len(a_tr))
        held_out = objects % 5 == 0
        constant = y_tr.double().mean(0, keepdim=True).expand(len(y_va), -1)
        out[f"monitor/constant/{target}_r2"] = r2_global(constant, y_va)
    for part, z_val in val.parts.items():
        key = f"monitor/{part}"
        z_tr = train.parts[part]
        if labelled:
            v_tr, v_va = z_tr.shape[1], z_val.shape[1]
            x_tr = z_tr[tr_known].flatten(0, 1)
            y_tr_lab = train.labels[tr_known].repeat_interleave(v_tr)
            x_va = z_val[va_known].flatten(0, 1)
            y_va_lab = val.labels[va_known].repeat_interleave(v_va)
            scores = ridge_classifier_scores(x_tr, y_tr_lab, x_va, num_classes, ridge)
            out[f"{key}/top1"] = top1_of(scores, y_va_lab)
            votes = knn_scores(
                x_tr,
                y_tr_lab,
                x_va,
                num_classes,
                int(cfg["knn_k"]),
                float(cfg["knn_temperature"]),
            )
            out[f"{key}/knn_top1"] = top1_of(votes, y_va_lab)
        if pairs:
            x_pairs_tr = torch.cat((z_tr[:, a_tr], z_tr[:, b_tr]), dim=-1).flatten(0, 1)
            x_pairs_va = torch.cat((z_val[:, a_va], z_val[:, b_va]), dim=-1).flatten(0, 1)
            fit, _ = ridge_fit_held_out(x_pairs_tr, y_tr, held_out, RIDGES)
            out[f"{key}/{target}_r2"] = r2_global(ridge_predict(fit, x_pairs_va), y_va)
        flat_val = z_val.flatten(0, 1)
        out[f"{key}/std_min"], out[f"{key}/std_mean"] = dimension_std(flat_val)
        out[f"{key}/rankme"] = float(rankme(flat_val))
    return out


class MonitorSubset:
    """A fixed subset of one split's evaluation views: ``objects`` objects (all when the
    split has fewer) and ``views`` distinct views of each, drawn once from ``seed``.

    Args:
        dataset: the split (a :class:`ViewDataset`).
        eval_views: views per object asked of :meth:`ViewDataset.evaluation_views` (the
            dataset may give another number: IEBench gives every stored view).
        objects, views, seed: the subset.
    """

    def __init__(
        self, dataset: ViewDataset, eval_views: int, objects: int, views: int, seed: int
    ) -> None:
        self.items = dataset.evaluation_views(eval_views, seed)
        n = len(dataset)
        if n == 0:
            raise ValueError(f"split {dataset.split_name!r} is empty")
        per_object = len(self.items) // n
        gen = torch.Generator().manual_seed(int(seed))
        chosen = torch.randperm(n, generator=gen)[: min(objects, n)].sort().values
        self.views = min(views, per_object)
        order = torch.rand(len(chosen), per_object, generator=gen).argsort(dim=1)
        view_ids = order[:, : self.views].sort(dim=1).values
        #: flat item indices ``[objects, views]`` (object-major, as the protocol lays them)
        self.index = chosen[:, None] * per_object + view_ids
        self._cached: tuple[Tensor, Tensor, Tensor] | None = None

    def batches(
        self, batch_size: int, num_workers: int, cache_mb: int
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """``(views [b, *view_shape], latents [b, P], labels [b])`` of the subset's views in
        order, read through a loader of its own (seeded by its own generator: the global RNGs
        are not drawn from), one batch in memory at a time; the views are kept for the next
        pass when they take ``<= cache_mb`` MiB in all."""
        if self._cached is not None:
            views, latents, labels = self._cached
            for start in range(0, len(views), batch_size):
                end = start + batch_size
                yield views[start:end], latents[start:end], labels[start:end]
            return
        loader = DataLoader(
            Subset(self.items, self.index.flatten().tolist()),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(0),
        )
        kept: list[tuple[Tensor, Tensor, Tensor]] | None = []
        size = 0
        for batch in loader:
            item = (batch["views"][:, 0], batch["latents"][:, 0], batch["label"])
            size += item[0].element_size() * item[0].nelement()
            if kept is not None and size <= cache_mb * 2**20:
                kept.append(item)
            else:
                kept = None
            yield item
        if kept:
            self._cached = (
                torch.cat([k[0] for k in kept]),
                torch.cat([k[1] for k in kept]),
                torch.cat([k[2] for k in kept]),
            )


class TrainingMonitor(pl.Callback):
    """The monitor (module docstring) as a Lightning callback.

    Args:
        cfg: the resolved ``monitor`` section (:class:`equissl.config.MonitorConfig`).
        data: the resolved ``data`` section (splits, evaluation views, loader workers).
        stop_requested: whether a stop signal has arrived (the pass is then skipped).
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        data: dict[str, Any],
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cfg = dict(cfg)
        self.data = data
        self.every_n_steps = int(cfg["every_n_steps"])
        self.stop_requested = stop_requested
        self.subsets: dict[str, MonitorSubset] | None = None
        self.num_classes = 0
        self.space: ActionSpace | None = None
        #: the last pass's values (global rank 0), for callers and tests
        self.last: dict[str, float] = {}
        self._measured_step: int | None = None

    # ------------------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # every rank (split files only, no view is read): a split the monitor cannot read or
        # a wrong monitor.target stops every rank alike, before training
        if self.every_n_steps > 0 and self.subsets is None:
            self._build()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0:
            self.measure(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        if self.every_n_steps <= 0 or not self.cfg.get("at_end", True) or step == 0:
            return
        if step % self.every_n_steps:  # a multiple was measured by on_train_batch_end
            self.measure(trainer, pl_module)

    # ----------------------------------------------------------------------- the pass
    def _build(self) -> None:
        data, cfg = self.data, self.cfg
        splits = {"train": data["train_split"], "val": data["val_split"]}
        built = {}
        for role, split in splits.items():
            try:
                ds = build_dataset(data, split, 1)
                eval_views = int(data.get("eval_views") or 0) or type(ds).default_eval_views
                built[role] = (
                    ds,
                    MonitorSubset(
                        ds,
                        eval_views,
                        int(cfg["objects"]),
                        int(cfg["views"]),
                        int(cfg["seed"]) + (1 if role == "train" else 0),
                    ),
                )
            except (OSError, ValueError, NotImplementedError) as err:
                raise ValueError(
                    f"monitor: cannot read the {role} split {split!r} of the data ({err}); "
                    "fix the data or turn the monitor off with monitor.every_n_steps=0"
                ) from err
        self.space = built["train"][0].action_space
        self.num_classes = num_classes_of(built["train"][0].labels, built["val"][0].labels)
        self.subsets = {role: subset for role, (_, subset) in built.items()}
        pair_target(self.space, self.cfg.get("target"))  # a wrong monitor.target, named now

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """One pass at this step on global rank 0 (see the module docstring)."""
        step = trainer.global_step
        if step == self._measured_step or not trainer.is_global_zero or self.stop_requested():
            return
        self._measured_step = step
        start = time.monotonic()
        rng = collect_rng_states()
        modes = {m: m.training for m in pl_module.modules()}
        try:
            if self.subsets is None:
                self._build()
            pl_module.eval()
            with torch.no_grad():
                feats = {
                    role: self._represent(trainer, pl_module, subset)
                    for role, subset in (self.subsets or {}).items()
                }
            metrics = monitor_metrics(
                feats["train"], feats["val"], self.space, self.num_classes, self.cfg
            )
        except Exception as err:
            # watching must not end a run of days, nor (DDP) leave the other ranks waiting
            # for rank 0 in their next all-reduce
            log.warning(
                "monitor at step %d failed, training goes on: %s: %s", step, type(err).__name__, err
            )
            return
        finally:
            for module, training in modes.items():  # each its own flag (EMA targets stay eval)
                module.training = training
            set_rng_states(rng)
        metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
        metrics["monitor/seconds"] = time.monotonic() - start
        self.last = metrics
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        log.info(
            "monitor at step %d (%.2f s): %s",
            step,
            metrics["monitor/seconds"],
            ", ".join(f"{k[8:]}={v:.4g}" for k, v in metrics.items() if k != "monitor/seconds"),
        )

    def _represent(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, subset: MonitorSubset
    ) -> MonitorFeatures:
        precision = trainer.precision_plugin
        chunks: dict[str, list[Tensor]] = {}
        latents, labels = [], []
        for views, lat, lab in subset.batches(
            int(self.cfg["batch_size"]),
            usable_workers(int(self.data.get("num_workers", 0))),
            int(self.cfg["cache_mb"]),
        ):
            x = views.to(pl_module.device, non_blocking=True)
            with precision.val_step_context():
                parts = pl_module.represent(precision.convert_input(x))
            for name, z in parts.items():
                chunks.setdefault(name, []).append(z.float().cpu())
            latents.append(lat)
            labels.append(lab)
        n, v = subset.index.shape
        return MonitorFeatures(
            {name: torch.cat(z).reshape(n, v, -1) for name, z in chunks.items()},
            torch.cat(latents).reshape(n, v, -1),
            torch.cat(labels).reshape(n, v)[:, 0],
        )
