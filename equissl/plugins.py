"""Discovery of the parts: every module of the part packages is imported once, so that its
``@REGISTRY.register(...)`` lines run. Users add their own parts without editing equissl by
naming importable modules in ``EQUISSL_PLUGINS`` (comma-separated) and their YAML options
through ``hydra.searchpath``; see ``docs/extending.md``."""

from __future__ import annotations

import importlib
import os
from functools import cache
from typing import Any

from equissl.registry import Registry, discover

PART_PACKAGES = ("equissl.datasets", "equissl.models", "equissl.ssl", "equissl.eval.probes")


@cache
def load_plugins() -> list[Registry[Any]]:
    """Import every part module (and ``EQUISSL_PLUGINS``); return the registries."""
    for package in PART_PACKAGES:
        discover(package)
    for name in filter(None, (n.strip() for n in os.environ.get("EQUISSL_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(
                f"EQUISSL_PLUGINS names {name!r}, which cannot be imported: {err}"
            ) from err
    return registries()


def registries() -> list[Registry[Any]]:
    from equissl.datasets.base import DATASETS
    from equissl.datasets.contract import ACTION_SPACES
    from equissl.eval.probes.base import PROBES
    from equissl.models.backbones import BACKBONES
    from equissl.ssl.base import METHODS

    return [METHODS, DATASETS, BACKBONES, PROBES, ACTION_SPACES]


def describe_registries() -> str:
    """Text listing every registered part with its schema's fields (``equissl-list``)."""
    import dataclasses

    lines = []
    for registry in load_plugins():
        where = f" (configs/{registry.group}/, schema <name>_schema)" if registry.group else ""
        lines.append(f"{registry.kind}s{where}:")
        for entry in registry.entries():
            lines.append(f"  {entry.name:<18} {entry.summary}")
            if entry.config is not None:
                names = [f.name for f in dataclasses.fields(entry.config)]
                lines.append(f"  {'':<18} keys: {', '.join(names)}")
        lines.append("")
    lines.append("config options (configs/<group>/<option>.yaml; add yours with hydra.searchpath):")
    for group, options in config_options().items():
        lines.append(f"  {group:<18} {', '.join(options)}")
    return "\n".join(lines)


def config_options() -> dict[str, list[str]]:
    """The YAML options shipped in ``equissl.configs``, by group."""
    from importlib.resources import files

    root = files("equissl.configs")
    groups = {}
    for group in sorted(root.iterdir(), key=lambda p: p.name):
        if group.is_dir() and not group.name.startswith(("_", ".")) and group.name != "hydra":
            names = sorted(p.name[:-5] for p in group.iterdir() if p.name.endswith(".yaml"))
            if names:
                groups[group.name] = names
    return groups
