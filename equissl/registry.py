"""Name -> part registries with the part's config schema attached (methods, datasets,
backbones, probes, action spaces).

Each part registers itself once, where it is defined, with the dataclass that types its
config::

    @METHODS.register("sie", config=SIEConfig)
    class SIE(SSLMethod): ...

:func:`equissl.plugins.load_plugins` imports every module of the part packages, and
:func:`equissl.config.register_configs` stores each schema in Hydra's ConfigStore as
``<group>/<name>_schema`` with ``impl: <name>`` filled in, so a YAML option only names it::

    defaults: [sie_schema, _self_]
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered part: its name, the object, its config schema (or ``None``)."""

    name: str
    obj: T
    config: type | None

    @property
    def summary(self) -> str:
        """First line of the part's docstring."""
        doc = (getattr(self.obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


class Registry(Generic[T]):
    """Maps config names to parts; unknown names fail listing the known ones.

    Args:
        kind: what the registry holds, for messages (``"method"``).
        group: the Hydra config group whose schemas come from here (``"method"``), or
            ``None`` when the parts have no config group of their own.
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config: type | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` with its config dataclass."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, obj, config)
            return obj

        return decorator

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]


def discover(package: str) -> list[str]:
    """Import every direct child module of ``package`` (not sub-packages), so that their
    registrations run. Returns the imported module names."""
    pkg = importlib.import_module(package)
    names = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        importlib.import_module(f"{package}.{info.name}")
        names.append(info.name)
    return names
