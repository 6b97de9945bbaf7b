"""The batch contract shared by every dataset and method (DESIGN §2.1).

One item is one *object* (a 3D model, a PDE trajectory) seen in V views:

============  =====================================  ==========================================
key           shape                                  meaning
============  =====================================  ==========================================
``views``     ``[V, C, H, W]`` / ``[V, C, T, X]`` /  the observations (float32)
              ``[V, C, T, X, Y]``
``latents``   ``[V, P]`` float32                     absolute generative parameters of each view
``label``     ``[]`` int64                           class index, -1 when unknown
``coeffs``    ``[K]`` float32                        invariant physical targets; ``[0]`` for images
``index``     ``[]`` int64                           object id, stable across epochs
============  =====================================  ==========================================

A collated batch adds a leading batch dimension ``B`` to every entry.

Each dataset owns an :class:`ActionSpace` that turns pairs of absolute latents into
the relative transformation methods are conditioned on. Methods never parse latents.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TypedDict

import torch
from torch import Tensor

from equissl.registry import Registry

KEYS = ("views", "latents", "label", "coeffs", "index")


class Item(TypedDict):
    """One object seen in V views (see module docstring for shapes)."""

    views: Tensor
    latents: Tensor
    label: Tensor
    coeffs: Tensor
    index: Tensor


def make_item(
    views: Tensor,
    latents: Tensor,
    label: int = -1,
    coeffs: Tensor | None = None,
    index: int = 0,
) -> Item:
    """Build an :class:`Item`, casting dtypes and checking shapes.

    Args:
        views: ``[V, C, ...]`` observations.
        latents: ``[V, P]`` absolute parameters of each view.
        label: class index or -1.
        coeffs: ``[K]`` invariant targets (``[0]`` when ``None``).
        index: object id.
    """
    latents = torch.as_tensor(latents, dtype=torch.float32)
    if views.ndim < 3:
        raise ValueError(f"views must be [V, C, ...], got shape {tuple(views.shape)}")
    if latents.ndim != 2 or latents.shape[0] != views.shape[0]:
        raise ValueError(
            f"latents must be [V, P] with V={views.shape[0]}, got {tuple(latents.shape)}"
        )
    coeffs_t = (
        torch.zeros(0, dtype=torch.float32)
        if coeffs is None
        else torch.as_tensor(coeffs, dtype=torch.float32).reshape(-1)
    )
    return Item(
        views=views.float() if not views.is_floating_point() else views,
        latents=latents,
        label=torch.tensor(int(label), dtype=torch.int64),
        coeffs=coeffs_t,
        index=torch.tensor(int(index), dtype=torch.int64),
    )


def check_batch(batch: dict[str, Tensor]) -> None:
    """Raise ``ValueError`` when a collated batch breaks the contract."""
    missing = [k for k in KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch lacks keys {missing}; the contract needs {list(KEYS)}")
    b, v = batch["views"].shape[:2]
    if batch["latents"].shape[:2] != (b, v):
        raise ValueError(
            f"latents {tuple(batch['latents'].shape)} do not match views [B={b}, V={v}, ...]"
        )
    for key in ("label", "index"):
        if batch[key].shape != (b,) or batch[key].dtype != torch.int64:
            raise ValueError(f"{key} must be int64 [B]={b}, got {batch[key].dtype} "
                             f"{tuple(batch[key].shape)}")
    if batch["coeffs"].ndim != 2 or batch["coeffs"].shape[0] != b:
        raise ValueError(f"coeffs must be [B, K], got {tuple(batch['coeffs'].shape)}")


class ActionSpace(ABC):
    """Knows a dataset's latents: relative actions and equivariant probe targets.

    Subclasses set :attr:`action_dim` (width of :meth:`relative`) and
    :attr:`targets` (names of the equivariant probe targets they can produce, e.g.
    ``("rotation", "color")``).
    """

    action_dim: int
    targets: tuple[str, ...] = ()

    @abstractmethod
    def relative(self, latents_a: Tensor, latents_b: Tensor) -> Tensor:
        """The transformation taking view a to view b.

        Args:
            latents_a, latents_b: ``[..., P]`` absolute latents.
        Returns:
            ``[..., action_dim]`` float32 action in the parametrisation methods use.
        """

    def target(self, name: str, latents_a: Tensor, latents_b: Tensor) -> Tensor:
        """Probe target ``name`` for the pair (a, b): ``[..., D]``."""
        raise KeyError(f"{type(self).__name__} has no target {name!r}; it offers {self.targets}")

    def target_dim(self, name: str) -> int:
        """Width of :meth:`target` for ``name``."""
        probe = torch.zeros(1, self.latent_dim)
        return int(self.target(name, probe, probe).shape[-1])

    latent_dim: int


ACTION_SPACES: Registry[type[ActionSpace]] = Registry("action space")
