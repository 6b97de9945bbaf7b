"""The evaluation-facing interface is declared once and every registered method has it."""

import typing

from equissl.plugins import load_plugins
from equissl.registries import METHODS
from equissl.ssl.base import SSLMethod
from equissl.ssl.interface import FrozenRepresentation


def interface_members() -> set[str]:
    hints = set(typing.get_type_hints(FrozenRepresentation))
    calls = {
        n
        for n in vars(FrozenRepresentation)
        if not n.startswith("_") and callable(getattr(FrozenRepresentation, n))
    }
    return hints | calls


def test_every_registered_method_offers_the_interface():
    load_plugins()
    members = interface_members()
    assert {"represent", "parts", "predict", "num_views", "action"} <= members
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert issubclass(cls, SSLMethod)
        # class attributes and properties; instance attributes set in SSLMethod.__init__
        missing = {m for m in members if not hasattr(cls, m)} - {"num_views", "action"}
        assert not missing, f"method {name} lacks {sorted(missing)}"


def test_the_evaluation_stage_uses_nothing_else_of_a_method():
    """Every ``method.<name>`` the evaluation code reads is in the declared interface."""
    import re
    from pathlib import Path

    import equissl.eval

    used = set()
    for f in Path(equissl.eval.__file__).parent.rglob("*.py"):
        # attribute uses, not config keys in docs (``method.name=sie``)
        used |= set(re.findall(r"\bmethod\.([a-z_]+)\b(?!=)", f.read_text()))
    module_calls = {"eval", "to", "parameters", "train"}
    assert used - module_calls <= interface_members(), used - module_calls - interface_members()
