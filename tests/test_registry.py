"""Registries: names, errors that list the known parts, discovery, schemas in Hydra's
ConfigStore."""

from __future__ import annotations

import sys

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

import tests.toy_parts  # noqa: F401  (registers the toy parts)
from equissl.config import MethodConfig
from equissl.plugins import describe_registries, load_plugins, register_configs
from equissl.registries import METHODS
from equissl.registry import Registry, discover


def test_duplicate_names_are_rejected():
    reg: Registry[type] = Registry("widget", group="widget")
    reg.register("a")(int)
    with pytest.raises(KeyError, match="widget 'a' is registered twice"):
        reg.register("a")(float)
    assert reg.get("a") is int  # the first registration stands


def test_unknown_names_list_the_known_ones():
    reg: Registry[type] = Registry("widget")
    assert reg.names() == [] and "a" not in reg
    with pytest.raises(KeyError, match=r"unknown widget 'x'; known: \(none\)"):
        reg.get("x")
    for name in ("b", "a"):
        reg.register(name, config=MethodConfig)(type(name, (), {"__doc__": f"The {name}.\n..."}))
    with pytest.raises(KeyError, match="unknown widget 'x'; known: a, b"):
        reg.entry("x")
    assert list(reg) == ["a", "b"] and reg.entry("b").summary == "The b."
    load_plugins()
    with pytest.raises(KeyError, match="unknown method 'nosuch'; known: .*sie.*toy.*vicreg"):
        METHODS.get("nosuch")


def test_discover_imports_every_direct_module(tmp_path, monkeypatch):
    pkg = tmp_path / "equissl_discover_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("FOUND = []\n")
    for name in ("mod_a", "mod_b", "_private"):
        (pkg / f"{name}.py").write_text(
            f"from equissl_discover_pkg import FOUND\nFOUND.append({name!r})\n"
        )
    (pkg / "sub" / "__init__.py").write_text("raise RuntimeError('sub-packages are skipped')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert discover("equissl_discover_pkg") == ["mod_a", "mod_b"]
        assert sorted(sys.modules["equissl_discover_pkg"].FOUND) == ["mod_a", "mod_b"]
    finally:
        for mod in [m for m in sys.modules if m.startswith("equissl_discover_pkg")]:
            del sys.modules[mod]


def test_every_part_package_is_discovered():
    names = {reg.kind: reg.names() for reg in load_plugins()}
    assert {"sie", "simclr", "vicreg"} <= set(names["method"])
    assert {"iebench", "pde"} <= set(names["dataset"])
    assert "timm" in names["backbone"]
    assert {"classification", "pair_regression"} <= set(names["probe"])
    assert {"iebench", "pde"} <= set(names["action space"])


def test_schemas_land_in_the_config_store_with_impl():
    register_configs()
    register_configs()  # idempotent
    cs = ConfigStore.instance()
    for group, name in (
        ("method", "vicreg"),
        ("method", "toy"),
        ("data", "iebench"),
        ("backbone", "tiny_cnn"),
        ("probe", "feature_norm"),
    ):
        node = cs.load(f"{group}/{name}_schema.yaml").node
        assert node.impl == name
    toy = cs.load("method/toy_schema.yaml").node
    assert toy.dim == 16 and toy.weights == {"align": 1.0} and toy.num_views == 2
    assert toy._get_node("name")._value() == MISSING  # the YAML option names itself


def test_equissl_list_text():
    text = describe_registries()
    assert "methods (configs/method/, schema <name>_schema):" in text
    assert "  toy                Toy: align the projections" in text
    assert (
        "keys: name, impl, action, num_views, online_probe, weights, optim, momentum, dim" in text
    )
    assert "action spaces:" in text
