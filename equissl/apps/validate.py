"""``equissl-validate ROOT [splits_dir=PATH] [workers=N] [splits=train,val]``: check a dataset
before training.

ROOT is a 3DIEBench(-T) tree, its packed shards (``equissl-pack``, ``equissl-generate
format=packed``), or an HDF5 file / a folder of HDF5 files of PDE trajectories.
Exit status: 0 when every check passes (warnings are printed), 1 when a problem is found
(every offending file is named) or ROOT does not exist, 2 for a malformed command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def _split_names(value: str) -> tuple[str, ...]:
    names = tuple(n for n in value.split(",") if n)
    if not names:
        raise ValueError(value)
    return names


# key -> (parser, expected type in words)
OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "splits_dir": (str, "a folder path"),
    "workers": (_positive_int, "a positive integer"),
    "splits": (_split_names, "comma-separated split names, e.g. train,val"),
}


class UsageError(ValueError):
    """A malformed command line (exit status 2); the message names the key."""


Options = dict[str, tuple[Callable[[str], Any], str]]


def parse_options(argv: list[str], table: Options) -> dict[str, Any]:
    """The ``key=value`` arguments of ``argv``, each parsed by its entry of ``table``
    (``{key: (parse, expected)}``).

    Raises:
        UsageError: an unknown key, or a value ``parse`` rejects.
    """
    options: dict[str, Any] = {}
    for arg in (a for a in argv if "=" in a):
        key, value = arg.split("=", 1)
        if key not in table:
            known = ", ".join(f"{k}=<{t}>" for k, (_, t) in table.items())
            raise UsageError(f"unknown option {key!r}; known options: {known}")
        parse, expected = table[key]
        try:
            options[key] = parse(value)
        except ValueError:
            raise UsageError(f"{key}={value!r}: expected {expected}") from None
    return options


def parse_args(argv: list[str]) -> tuple[Path, dict[str, Any]]:
    """``(ROOT, typed options)`` from ``argv``.

    Raises:
        UsageError: not exactly one ROOT, an unknown key, or a value of the wrong type.
    """
    positional = [a for a in argv if "=" not in a]
    if len(positional) != 1:
        raise UsageError(f"expected exactly one ROOT, got {len(positional)}: {positional}")
    options = parse_options(argv, OPTIONS)
    return Path(positional[0]), options


def _is_pde(root: Path) -> bool:
    if root.suffix in (".h5", ".hdf5"):
        return True
    return root.is_dir() and any(root.glob("*.h5")) and not (root / "data").is_dir()


def main(argv: list[str]) -> int:
    try:
        root, options = parse_args(argv)
    except UsageError as err:
        print(f"equissl-validate: {err}\n\n{__doc__}")
        return 2
    if not root.exists():
        print(f"{root}: not found (ROOT must be a 3DIEBench tree, an .h5 file or a folder of them)")
        return 1
    if _is_pde(root):
        from equissl.datasets.pde import validate_pde_path

        problems = validate_pde_path(root)
        print(f"{root}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        for p in problems:
            print(f"  - {p}")
        return 1 if problems else 0
    from equissl.datasets.validate_tree import validate_iebench

    report = validate_iebench(
        root,
        options.get("splits_dir"),
        options.get("workers"),
        splits=options.get("splits", ("train", "val")),
    )
    print(report.summary())
    return 0 if report.ok else 1
