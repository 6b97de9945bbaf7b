"""The five part registries, in one module that imports no part.

Each part module registers itself here (``@METHODS.register("sie", config=SIEConfig)``);
:func:`equissl.plugins.load_plugins` imports every part module so that the registrations
run. Keeping the registries apart from the parts' base classes is what lets the config
checks, checkpoint reading and ``equissl-list`` look parts up without importing Lightning
or a single part (``docs/architecture.md``).

The values are typed loosely (``Registry[Any]``) because their part types live in the
layers above: methods are :class:`equissl.ssl.base.SSLMethod` subclasses, datasets
:class:`equissl.datasets.base.ViewDataset` subclasses, backbones trunk builders
(:mod:`equissl.models.backbones`), probes :class:`equissl.eval.probes.base.Probe`
subclasses, action spaces :class:`equissl.datasets.contract.ActionSpace` subclasses.
"""

from __future__ import annotations

from typing import Any

from equissl.registry import Registry

METHODS: Registry[Any] = Registry("method", group="method")
DATASETS: Registry[Any] = Registry("dataset", group="data")
BACKBONES: Registry[Any] = Registry("backbone", group="backbone")
PROBES: Registry[Any] = Registry("probe", group="probe")
ACTION_SPACES: Registry[Any] = Registry("action space")

#: every registry, in the order ``equissl-list`` prints them
ALL: tuple[Registry[Any], ...] = (METHODS, DATASETS, BACKBONES, PROBES, ACTION_SPACES)
