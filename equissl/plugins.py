"""Discovery of the parts: every module of the part packages is imported once, so that its
``@REGISTRY.register(...)`` lines run. Users add their own parts without editing equissl by
naming importable modules in ``EQUISSL_PLUGINS`` (comma-separated) and their YAML options
through ``hydra.searchpath``; see ``docs/extending.md``."""

from __future__ import annotations

import importlib
import os
from functools import cache
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from equissl.config import EvaluateConfig, LoggerConfig, PretrainConfig, TrainerConfig
from equissl.registries import ALL, DATASETS
from equissl.registry import Registry, discover

PART_PACKAGES = ("equissl.datasets", "equissl.models", "equissl.ssl", "equissl.eval.probes")


@cache
def load_plugins() -> list[Registry[Any]]:
    """Import every part module (and ``EQUISSL_PLUGINS``); return the registries."""
    for package in PART_PACKAGES:
        discover(package)
    load_user_plugins()
    return registries()


def load_user_plugins() -> None:
    """Import the modules named in ``EQUISSL_PLUGINS`` (comma-separated; once each: Python
    keeps an imported module)."""
    for name in filter(None, (n.strip() for n in os.environ.get("EQUISSL_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(
                f"EQUISSL_PLUGINS names {name!r}, which cannot be imported: {err}"
            ) from err


def registries() -> list[Registry[Any]]:
    return list(ALL)


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


def register_configs() -> None:
    """Fill Hydra's ConfigStore with the shared schemas and every registered part's schema
    (``<group>/<name>_schema``, ``impl`` filled in); idempotent."""
    cs = ConfigStore.instance()
    cs.store(name="pretrain_schema", node=PretrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="logger", name="logger_schema", node=LoggerConfig)
    for registry in load_plugins():
        _store_schemas(cs, registry)


def register_data_configs() -> None:
    """Fill Hydra's ConfigStore with the ``data`` group's schemas alone: imports the dataset
    modules and ``EQUISSL_PLUGINS``, not the models, methods or probes (``equissl-generate``
    composes a data option without Lightning or timm); idempotent."""
    discover("equissl.datasets")
    load_user_plugins()
    _store_schemas(ConfigStore.instance(), DATASETS)


def _store_schemas(cs: ConfigStore, registry: Registry[Any]) -> None:
    """``<group>/<name>_schema`` of every entry of ``registry`` with a schema (``impl``
    filled in)."""
    if registry.group is None:
        return
    for entry in registry.entries():
        if entry.config is None:
            continue
        node = OmegaConf.structured(entry.config)
        node.impl = entry.name
        cs.store(group=registry.group, name=f"{entry.name}_schema", node=node)
