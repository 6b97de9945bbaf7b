"""The batch contract shared by every dataset and method, so every method runs on every dataset.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import torch
from torch import Tensor

from equissl.registries import ACTION_SPACES

KEYS = ("views", "latents", "label", "coeffs", "index")

#: What the values of an action-space target are (:attr:`ActionSpace.target_kinds`); the
#: evaluation chooses its maths by kind, never by a target's name:
#:
#: * ``quaternion`` — a relative rotation as a unit quaternion ``(x, y, z, w)``, width 4:
#:   rotation angles, geodesic errors and angle plots apply (sign-blind: ``q ≡ −q``);
#: * ``angle`` — relative angles in radians, one per component, periodic in ``2π`` (plots
#:   and angle sums wrap them onto ``(−π, π]``);
#: * ``hue`` — differences of hues in ``[0, 1)`` (periodic in 1, differences as the action
#:   space computes them);
#: * ``matrix`` — a (rotation, rigid) matrix flattened row-major;
#: * ``scalar`` — one real number (width 1);
#: * ``vector`` — any real vector (the default: only the generic regression maths apply).
TARGET_KINDS = ("quaternion", "angle", "hue", "matrix", "scalar", "vector")
#: the kind of a target its action space does not declare (third-party action spaces)
DEFAULT_TARGET_KIND = "vector"


def wrap_angle(angle: Tensor) -> Tensor:
    """Angles in radians wrapped onto ``(−π, π]`` (targets of kind ``angle``)."""
    wrapped = torch.remainder(angle + torch.pi, 2 * torch.pi) - torch.pi
    return torch.where(wrapped == -torch.pi, torch.full_like(wrapped, torch.pi), wrapped)


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
    pixels: bool = False,
) -> Item:
    """Build an :class:`Item`, casting dtypes and checking shapes.

    Args:
        views: ``[V, C, ...]`` observations.
        latents: ``[V, P]`` absolute parameters of each view.
        label: class index or -1.
        coeffs: ``[K]`` invariant targets (``[0]`` when ``None``).
        index: object id.
        pixels: keep ``views`` as they are (uint8 pixels that the dataset's
            ``device_transform`` finishes after the batch transfer,
            ``speed.normalize_on_device``) instead of casting them to float32.
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
        views=views.float() if not (pixels or views.is_floating_point()) else views,
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
            raise ValueError(
                f"{key} must be int64 [B]={b}, got {batch[key].dtype} {tuple(batch[key].shape)}"
            )
    if batch["coeffs"].ndim != 2 or batch["coeffs"].shape[0] != b:
        raise ValueError(f"coeffs must be [B, K], got {tuple(batch['coeffs'].shape)}")


class ActionSpace(ABC):
    """Knows a dataset's latents: relative transformations between views and the named
    equivariant targets they can be probed on.

    Subclasses set :attr:`targets` (target name -> width, e.g. ``{"rotation": 4}``),
    :attr:`default_action` (the targets a method is conditioned on unless its config says
    otherwise) and :attr:`latent_dim`, implement :meth:`target`, and describe themselves
    by :meth:`spec` (a plain dict that :func:`build_action_space` turns back into an equal
    object, stored in checkpoints).

    :attr:`target_kinds` declares what each target's values are (target name -> one of
    :data:`TARGET_KINDS`, e.g. ``{"rotation": "quaternion"}``); a target it leaves out is
    a ``vector`` (:meth:`target_kind`). Kinds belong to the class, not to :meth:`spec`, so
    the specs stored in checkpoints are unchanged.
    """

    kind: str  # registry name, set by ACTION_SPACES.register
    latent_dim: int
    targets: dict[str, int]
    default_action: tuple[str, ...]
    target_kinds: dict[str, str] = {}  # target name -> kind; missing: DEFAULT_TARGET_KIND

    @abstractmethod
    def target(self, name: str, latents_a: Tensor, latents_b: Tensor) -> Tensor:
        """Target ``name`` of the pair (a, b): ``[..., targets[name]]`` float32.

        Args:
            latents_a, latents_b: ``[..., P]`` absolute latents of views a and b.
        """

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this action space."""

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params()}

    def unknown_target(self, name: str) -> KeyError:
        return KeyError(
            f"{type(self).__name__} has no target {name!r}; it offers {sorted(self.targets)}"
        )

    def target_kind(self, name: str) -> str:
        """The kind (:data:`TARGET_KINDS`) of target ``name``: the declared one, else
        ``vector``. Raises ``KeyError`` for a target not offered and ``ValueError`` for an
        unknown kind or a quaternion target whose width is not 4."""
        if name not in self.targets:
            raise self.unknown_target(name)
        kind = self.target_kinds.get(name, DEFAULT_TARGET_KIND)
        if kind not in TARGET_KINDS:
            raise ValueError(
                f"{type(self).__name__} declares target {name!r} of kind {kind!r}; "
                f"target kinds are {list(TARGET_KINDS)}"
            )
        if kind == "quaternion" and self.targets[name] != 4:
            raise ValueError(
                f"{type(self).__name__} target {name!r} is a quaternion of width "
                f"{self.targets[name]}, not 4"
            )
        if kind == "scalar" and self.targets[name] != 1:
            raise ValueError(
                f"{type(self).__name__} target {name!r} is a scalar of width "
                f"{self.targets[name]}, not 1"
            )
        return kind

    def kinds(self) -> dict[str, str]:
        """``{target: kind}`` of every target offered (:meth:`target_kind`)."""
        return {name: self.target_kind(name) for name in self.targets}

    def targets_of_kind(self, kind: str) -> list[str]:
        """The targets of ``kind``, those of :attr:`default_action` first, then in
        :attr:`targets` order."""
        names = [*self.default_action, *(n for n in self.targets if n not in self.default_action)]
        return [n for n in names if n in self.targets and self.target_kind(n) == kind]

    def relative(self, latents_a: Tensor, latents_b: Tensor) -> Tensor:
        """The default action between views a and b: ``[..., dim]``."""
        return self.select().relative(latents_a, latents_b)

    def select(self, components: Sequence[str] | None = None) -> Action:
        """The action made of ``components`` (``None``: :attr:`default_action`)."""
        return Action(self, tuple(components) if components else self.default_action)


@dataclass(frozen=True)
class Action:
    """The transformation a method is conditioned on: action-space targets concatenated.

    ``relative(latents_a, latents_b) -> [..., dim]`` (e.g. SIE's quaternion, 4-d, or
    rotation + colour, 6-d).
    """

    space: ActionSpace
    components: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [c for c in self.components if c not in self.space.targets]
        if unknown or not self.components:
            raise ValueError(
                f"action components {list(self.components)} not available on this data; "
                f"choose from {sorted(self.space.targets)} (method.action)"
            )

    @property
    def dim(self) -> int:
        return sum(self.space.targets[c] for c in self.components)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kind of each component (:meth:`ActionSpace.target_kind`)."""
        return tuple(self.space.target_kind(c) for c in self.components)

    def relative(self, latents_a: Tensor, latents_b: Tensor) -> Tensor:
        parts = [self.space.target(c, latents_a, latents_b) for c in self.components]
        return torch.cat(parts, dim=-1).float()

    def spec(self) -> dict[str, Any]:
        return {
            "components": list(self.components),
            "dim": self.dim,
            "widths": [self.space.targets[c] for c in self.components],
        }


def register_action_space(name: str) -> Any:
    """Class decorator: register an :class:`ActionSpace` under ``name`` (its ``kind``)."""

    def decorator(cls: type[ActionSpace]) -> type[ActionSpace]:
        cls.kind = name
        return ACTION_SPACES.register(name)(cls)

    return decorator


def build_action_space(spec: dict[str, Any]) -> ActionSpace:
    """Rebuild an action space from :meth:`ActionSpace.spec`."""
    return ACTION_SPACES.get(spec["kind"])(**spec["params"])
