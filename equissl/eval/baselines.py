"""Baseline models of the evaluation stage (``eval.baselines``): other models put through the
same probes as the checkpoint's, so that a report shows what pretraining added.

A baseline is one builder registered by name, ``(trained method, checkpoint description) ->
frozen method`` with the same parts and view shape; its metrics go to
``results.json["baselines"][name]`` and its features to their own cache files.

* ``untrained`` — the checkpoint's method and backbone architecture rebuilt from its config
  with fresh weights, initialised under the pretraining ``seed`` (torch's generator seeded
  as ``pl.seed_everything`` seeds it before pretraining builds the model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from equissl.datasets.base import DataSpec
from equissl.eval.probes.base import seeded
from equissl.registry import Registry
from equissl.ssl.base import SSLMethod
from equissl.ssl.loading import build_method

BaselineBuilder = Callable[[SSLMethod, dict[str, Any]], SSLMethod]

BASELINES: Registry[BaselineBuilder] = Registry("baseline")


@BASELINES.register("untrained")
def untrained(method: SSLMethod, meta: dict[str, Any]) -> SSLMethod:
    """The same architecture with a fresh, seeded initialisation, in ``eval()`` mode."""
    with seeded(int(meta["config"].get("seed", 0))):
        fresh = build_method(meta["config"], DataSpec.from_dict(meta["spec"]))
    return fresh.eval()
