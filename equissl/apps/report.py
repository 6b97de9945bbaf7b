"""``equissl-report FOLDER [sort_by=PART/PROBE/METRIC] [out=DIR]``: one report over every
evaluated run under FOLDER (a finished sweep, a folder of runs).

Collects each ``results.json`` below FOLDER (results of earlier checkpoints, moved to
``earlier/``, are left out) and writes into ``out`` (default FOLDER): ``results.md`` (runs
labelled by the settings that differ between them, runs that differ only in seed grouped
as mean ± std with n, one floor row per metric, sorted by ``sort_by`` — default
``equi/rotation/r2_global`` when present — with the best configuration named), ``results.csv``
(one row per run × part × metric, every differing setting a column), ``combined.json`` and
``metrics.png``. ``equissl-evaluate -m`` writes the same report into its sweep folder.

Examples::

    equissl-report multirun/pretrain
    equissl-report outputs/pretrain sort_by=equi/rotation/r2_global
    equissl-report outputs/pretrain sort_by=inv/classification/top1 out=reports/today

Exit status: 0 written, 1 no results.json under FOLDER, 2 malformed command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

OPTIONS = ("sort_by", "out")


def main(argv: list[str]) -> int:
    positional = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    unknown = sorted(set(options) - set(OPTIONS))
    if len(positional) != 1 or unknown:
        problem = f"unknown option(s) {unknown}" if unknown else "expected one FOLDER"
        print(f"equissl-report: {problem}; options: {', '.join(OPTIONS)}\n\n{__doc__}")
        return 2
    folder = Path(positional[0])
    if not folder.is_dir():
        print(f"equissl-report: {folder} is not a folder", file=sys.stderr)
        return 1
    files = [
        f for f in folder.rglob("results.json") if "earlier" not in f.relative_to(folder).parts
    ]
    if not files:
        print(f"equissl-report: no results.json under {folder}", file=sys.stderr)
        return 1
    from equissl.eval.sweep import combine

    out = Path(options.get("out") or folder)
    text = combine(files, out, options.get("sort_by"))
    print(f"{len(files)} run(s): {out / 'results.md'}, {out / 'results.csv'}\n\n{text}")
    return 0
