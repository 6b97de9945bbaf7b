"""``equissl-validate ROOT [splits_dir=PATH] [workers=N]``: check a dataset before training.

ROOT is a 3DIEBench(-T) tree, or an HDF5 file / a folder of HDF5 files of PDE trajectories.
Exits with status 1 and names every offending file when anything is wrong.
"""

from __future__ import annotations

from pathlib import Path


def main(argv: list[str]) -> int:
    positional = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    unknown = set(options) - {"splits_dir", "workers"}
    if len(positional) != 1 or unknown:
        print(__doc__)
        return 2
    root = Path(positional[0])
    is_pde = root.suffix in (".h5", ".hdf5") or (
        root.is_dir() and any(root.glob("*.h5")) and not (root / "data").is_dir())
    if is_pde:
        from equissl.datasets.pde import validate_pde_path

        problems = validate_pde_path(root)
        print(f"{root}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        for p in problems:
            print(f"  - {p}")
        return 1 if problems else 0
    from equissl.datasets.validate import validate_iebench

    report = validate_iebench(root, options.get("splits_dir"), int(options.get("workers", 8)))
    print(report.summary())
    return 0 if report.ok else 1
