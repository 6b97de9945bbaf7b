"""The package's import graph, function-level imports included: no circle, and every import
follows the layer table of docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import equissl

PACKAGE = Path(equissl.__file__).parent
PART_LAYERS = ("datasets", "models", "ssl", "training", "eval", "apps")
#: layer -> layers it may import (besides itself and the foundation)
MAY_IMPORT = {
    "foundation": set(),
    "datasets": set(),
    "models": {"datasets"},
    "ssl": {"datasets", "models"},
    "training": {"datasets", "models", "ssl"},
    "eval": {"datasets", "models", "ssl"},
    "apps": set(PART_LAYERS),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "configs" not in p.parts}


def layer(module: str) -> str:
    parts = module.split(".")
    return (
        parts[1]
        if len(parts) > 2 or (len(parts) == 2 and parts[1] in PART_LAYERS)
        else ("foundation")
    )


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every equissl module ``name`` imports, anywhere in the file."""
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod, *(f"{mod}.{a.name}" for a in node.names)]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != "equissl" and target != name:
                if not name.startswith(target + "."):  # a package's own __init__
                    found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> None:
        state[v] = 1
        stack.append(v)
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                circle = stack[stack.index(w) :]
                raise AssertionError(f"import circle: {' -> '.join([*circle, w])}")
            if w not in state:
                visit(w)
        stack.pop()
        state[v] = 2

    for v in sorted(edges):
        if v not in state:
            visit(v)


def test_imports_follow_the_layers():
    broken = []
    for a, targets in graph().items():
        for b in targets:
            la, lb = layer(a), layer(b)
            if la != lb and lb != "foundation" and lb not in MAY_IMPORT[la]:
                broken.append(f"{a} ({la}) -> {b} ({lb})")
            if la == "foundation" and lb != "foundation":
                broken.append(f"{a} (foundation) -> {b} ({lb})")
    assert not broken, "layer rules broken:\n" + "\n".join(sorted(broken))


def test_the_layer_test_sees_function_level_imports(tmp_path):
    """The reader counts an import written inside a function (it can fail)."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from equissl.eval import report\n")
    assert imports_of("equissl.datasets.m", f, {"equissl.eval.report"}) == {"equissl.eval.report"}
