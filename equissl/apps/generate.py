"""``equissl-generate data=NAME out=PATH key=value ...``: write a dataset with its generator.

``data`` picks a data option (``configs/data/NAME.yaml``); the remaining ``key=value``
settings are checked against that dataset's one generation schema (the same one
``data.generate`` uses) and handed to the one dispatcher, ``generate_dataset``.
Examples::

    equissl-generate out=data/mini num_classes=10 objects_per_class=20 views=12 resolution=64
    equissl-generate data=3diebench_t out=data/mini_t chunk=3 num_chunks=8
    equissl-generate data=pde_kdv out=data/kdv num_trajectories=512 params.nx=128
"""

from __future__ import annotations

import time
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


def data_config(name: str, out: str, overrides: list[str]) -> dict[str, Any]:
    """The resolved ``data`` section of option ``name`` with ``root=out``: the data group
    composed alone, with only the datasets' schemas registered (no method, model or probe
    is imported: generating data needs neither Lightning nor timm)."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    from equissl.plugins import register_data_configs

    register_data_configs()
    try:
        with initialize_config_module("equissl.configs", version_base="1.3"):
            cfg = compose(overrides=[f"+data={name}", f"data.root={out}", *overrides])
    except HydraException as err:
        raise SystemExit(f"equissl-generate: {err}") from None
    return OmegaConf.to_container(cfg.data, resolve=True)  # type: ignore[return-value]


def parse(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data config, generator settings)`` from ``key=value`` arguments."""
    from equissl.registries import DATASETS

    bad = [a for a in argv if "=" not in a]
    if bad:
        raise SystemExit(f"equissl-generate takes key=value arguments; got {bad}\n{__doc__}")
    args = dict(a.split("=", 1) for a in argv)
    out = args.pop("out", None)
    if not out:
        raise SystemExit(f"equissl-generate: out=PATH is required\n{__doc__}")
    name = args.pop("data", "3diebench")
    data_overrides = [f"{k}={v}" for k, v in args.items() if k.startswith("data.")]
    data = data_config(name, out, data_overrides)
    schema = DATASETS.get(data["impl"]).generate_schema
    if schema is None:
        raise SystemExit(f"equissl-generate: data={name} has no generator")
    dotlist = [f"{k}={v}" for k, v in args.items() if not k.startswith("data.")]
    try:
        settings = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(dotlist))
    except OmegaConfBaseException as err:
        raise SystemExit(f"equissl-generate: {err}") from None
    return data, OmegaConf.to_container(settings, resolve=True)  # type: ignore[return-value]


def main(argv: list[str]) -> int:
    from equissl.datasets.base import generate_dataset

    data, settings = parse(argv)
    start = time.perf_counter()
    try:
        summary = generate_dataset(data, settings)
    except ValueError as err:
        raise SystemExit(f"equissl-generate: {err}") from None
    print(f"wrote {data['root']} in {time.perf_counter() - start:.1f} s: {summary}")
    return 0
