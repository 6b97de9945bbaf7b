"""The one place where equissl touches Lightning's and torch's private internals.

Everything else uses public API. Each function here says which internal it wraps, why no
public API serves, and the versions on which that was checked; ``tests/test_lightning_compat.py``
exercises every one against the installed versions, so an upgrade that moves an internal
fails there, by name, rather than as a silent change of training or resume behaviour.

Verified: lightning 2.2.0, 2.3.0, 2.4.0, 2.5.0, 2.6.0 (source) and 2.6.6 (installed, tests);
torch 2.14.1 (installed, tests). ``pyproject.toml`` pins lightning to ``>=2.2,<2.7``: 2.2 is the
first release that saves and restores a stateful training loader (what exact mid-epoch resume
relies on, :mod:`equissl.training.sampler`).

This module imports only lightning and torch, never another equissl module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # lightning is imported only where needed: equissl.speed stays torch-only
    import lightning.pytorch as pl

__all__ = [
    "LOADER_STATES_PATH",
    "InternalsMoved",
    "apply_restored_loader_state",
    "attached_trainer",
    "checkpoint_loader_states",
    "fused_optimizer_devices",
    "load_train_dataloader",
]

# Where Lightning's checkpoint keeps the ``state_dict()`` of each stateful training loader.
LOADER_STATES_PATH = ("loops", "fit_loop", "state_dict", "combined_loader")


class InternalsMoved(RuntimeError):
    """A Lightning/torch internal wrapped here is gone or changed shape in the installed
    version; the message names the adapter function to revisit."""


def _moved(function: str, what: str) -> InternalsMoved:
    import lightning

    return InternalsMoved(
        f"equissl.lightning_compat.{function}: {what} (lightning {lightning.__version__}, "
        f"torch {torch.__version__}); the adapter was verified on lightning 2.2-2.6 and "
        "torch 2.14 — revisit it and the pins in pyproject.toml"
    )


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The :class:`~lightning.pytorch.Trainer` that ``module`` is attached to, or ``None``.

    Wraps no private API: ``LightningModule.trainer`` (public) raises ``RuntimeError`` when no
    trainer is attached, and returns a ``_TrainerFabricShim`` rather than a Trainer when the
    module runs under Fabric (``module.fabric``, public), which counts as "no trainer" here as
    it did when equissl read ``module._trainer``. There is no public ``has_trainer``.

    Verified: lightning 2.2.0-2.6.0 (source of ``LightningModule.trainer``), 2.6.6 (tests).
    """
    if module.fabric is not None:
        return None
    try:
        return module.trainer
    except RuntimeError:
        return None


def apply_restored_loader_state(trainer: pl.Trainer) -> None:
    """Hand the training loaders the state restored from the checkpoint, if it is pending.

    Wraps ``trainer.fit_loop._load_combined_loader_states()`` (private). Lightning applies the
    restored loader state only in ``FitLoop.setup_data`` when it *builds* the loader; when the
    loader was built before the checkpoint was restored (``configure_optimizers`` reading
    ``trainer.estimated_stepping_batches``, as a warm-up schedule does), ``setup_data`` returns
    early and the state is never applied, so a resumed run would restart the epoch. No public
    API applies it. A no-op when not resuming, when nothing is pending, or when it was applied.

    Verified: lightning 2.2.0-2.6.0 (source: the method and its guard are unchanged since 2.2
    added it), 2.6.6 (tests).
    """
    method = getattr(trainer.fit_loop, "_load_combined_loader_states", None)
    if not callable(method):
        raise _moved("apply_restored_loader_state", "FitLoop._load_combined_loader_states is gone")
    method()


def load_train_dataloader(trainer: pl.Trainer) -> None:
    """Build the training loader now, so ``trainer.num_training_batches`` is known.

    Wraps ``trainer.fit_loop.setup_data()`` (loops are internal API since Lightning 2.0).
    ``trainer.estimated_stepping_batches`` (public) builds the loader as a side effect except
    with ``max_epochs=-1`` and ``max_steps`` set, where it returns ``max_steps`` without it;
    no public API builds the training loader on demand. Building it here is what Lightning
    does itself later (``setup_data`` returns early once the loader exists).

    Verified: lightning 2.2.0-2.6.0 (source), 2.6.6 (tests).
    """
    method = getattr(trainer.fit_loop, "setup_data", None)
    if not callable(method):
        raise _moved("load_train_dataloader", "FitLoop.setup_data is gone")
    method()


def checkpoint_loader_states(checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``state_dict()`` of each stateful training loader saved in a Lightning checkpoint
    (``[]`` when none was stateful).

    Wraps the checkpoint layout ``checkpoint["loops"]["fit_loop"]["state_dict"]
    ["combined_loader"]`` (:data:`LOADER_STATES_PATH`), written by ``FitLoop.on_save_checkpoint``
    (private); Lightning offers no public reader of the loop state in a checkpoint.

    Raises:
        KeyError: the checkpoint has no loop state at all (e.g. a weights-only checkpoint).
        InternalsMoved: it has loop state, but not in this layout.

    Verified: lightning 2.2.0-2.6.0 (source), 2.6.6 (tests).
    """
    if "loops" not in checkpoint:
        raise KeyError("checkpoint has no 'loops' (training loop) state; is it weights-only?")
    node: Any = checkpoint
    for key in LOADER_STATES_PATH[:-1]:
        if not isinstance(node, dict) or key not in node:
            raise _moved("checkpoint_loader_states", f"checkpoint has no {key!r} loop state")
        node = node[key]
    states = node.get(LOADER_STATES_PATH[-1], [])
    if not isinstance(states, list):
        raise _moved("checkpoint_loader_states", "the saved loader states are not a list")
    return states


def fused_optimizer_devices() -> frozenset[str]:
    """Device types for which torch has fused (single-kernel) Adam/AdamW/SGD.

    Wraps ``torch.utils._foreach_utils._get_fused_kernels_supported_devices`` (private), the
    list torch's own optimisers check ``fused=True`` against. No public API exposes it; the
    public alternative, constructing an optimiser with ``fused=True`` and catching its error,
    needs parameters on each device to probe. The list grows with torch releases (``cpu``
    since 2.4).

    Verified: torch 2.14.1 (installed, tests); the function exists from torch 2.2 on.
    """
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError as exc:
        raise _moved(
            "fused_optimizer_devices",
            "torch.utils._foreach_utils._get_fused_kernels_supported_devices is gone",
        ) from exc
    return frozenset(_get_fused_kernels_supported_devices())
