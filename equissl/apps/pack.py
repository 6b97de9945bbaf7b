"""``equissl-pack ROOT OUT [key=value ...]``: convert a 3DIEBench(-T) tree into packed shards.

ROOT is a loose tree (``<synset>/<obj_id>/image_{v}.jpg`` + ``latent_{v}.npy``, split files in
``ROOT/data`` or ``splits_dir=``); OUT receives ``packed.json``, ``packed/`` and a copy of
the split files, and is read by ``data=3diebench data.root=OUT`` (auto-detected). Options:

    chunk=K num_chunks=N   pack only chunk K (0-based) of N of every split (array jobs);
                           a finished chunk is skipped when run again
    index_only=true        only check the N chunks and write OUT/packed.json
    encoding=jpeg|raw      jpeg (default): the files' bytes as they are; raw: decoded pixels
    verify=true|false      decode every image while packing (default true)
    splits=train,val       splits to pack
    splits_dir=PATH        folder of ROOT's split files

The index is written by whichever chunk finishes last (and by ``index_only=true``).
Exit status: 0 done, 1 bad input (every message names its file), 2 malformed command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from equissl.apps.validate import UsageError, _split_names, parse_options


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(value)
    return lowered in ("true", "1", "yes")


# key -> (parser, expected type in words)
OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "chunk": (_non_negative_int, "a chunk number 0..num_chunks-1"),
    "num_chunks": (_non_negative_int, "a positive integer"),
    "index_only": (_bool, "true or false"),
    "encoding": (str, "jpeg or raw"),
    "verify": (_bool, "true or false"),
    "splits": (_split_names, "comma-separated split names, e.g. train,val"),
    "splits_dir": (str, "a folder path"),
}


def parse_args(argv: list[str]) -> tuple[Path, Path, dict[str, Any]]:
    """``(ROOT, OUT, typed options)`` from ``argv``.

    Raises:
        UsageError: not exactly ROOT and OUT, an unknown key, or a value of the wrong type.
    """
    positional = [a for a in argv if "=" not in a]
    if len(positional) != 2:
        raise UsageError(f"expected ROOT and OUT, got {len(positional)}: {positional}")
    options = parse_options(argv, OPTIONS)
    if options.get("num_chunks", 1) < 1:
        raise UsageError("num_chunks must be ≥ 1")
    return Path(positional[0]), Path(positional[1]), options


def main(argv: list[str]) -> int:
    from equissl.datasets.iebench_format import DatasetFormatError
    from equissl.datasets.packed import PackSettings, pack_chunk, write_index

    try:
        root, out, options = parse_args(argv)
    except UsageError as err:
        print(f"equissl-pack: {err}\n\n{__doc__}")
        return 2
    index_only = options.pop("index_only", False)
    settings = PackSettings(**options)
    start = time.perf_counter()
    try:
        if index_only:
            summary: dict[str, Any] = {
                "index": str(write_index(out, settings.splits, settings.num_chunks))
            }
        else:
            summary = pack_chunk(root, out, settings)
    except (DatasetFormatError, ValueError) as err:
        print(f"equissl-pack: {err}")
        return 1
    print(f"packed {root} -> {out} in {time.perf_counter() - start:.1f} s: {summary}")
    return 0
