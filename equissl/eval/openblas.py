"""The BLAS kernels of faiss's CPU searches.

faiss's pip wheels bundle their own OpenBLAS (0.3.15 in faiss 1.15), whose run-time CPU
detection predates Sapphire Rapids and newer x86 cores: on those it falls back to its
*Prescott* (SSE3) kernels, and every faiss matrix product (exact search, k-means, list
assignment) runs about 4.5× slower than the CPU allows, 2.5× slower than torch's MKL
(exact k-NN at 100 k × 256: 63 s against 14 s, ``bench/results/faiss_knn_cpu.txt``).
OpenBLAS takes the core type from the ``OPENBLAS_CORETYPE`` environment variable instead,
read once, when the library loads.

:func:`load_faiss` imports faiss with it set to the best core type the CPU's instruction
set supports (``SkylakeX`` with AVX-512, ``Haswell`` with AVX2 + FMA; these are also what
OpenBLAS's own detection picks on the cores it knows), then restores the environment, so
that no process started later (a SLURM job on another node, whose CPU may lack AVX-512)
inherits the choice. A value the user set is kept and used (``OPENBLAS_CORETYPE=Prescott``
restores the wheel's own behaviour here); nothing is chosen off Linux x86. :mod:`equissl.eval`
calls it on import, so every equissl path to faiss goes through it; code that imports faiss
itself must import :mod:`equissl.eval` first. An OpenBLAS loaded in the same import (numpy's,
if numpy was not imported yet) gets the same choice, which is as right for this CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

ENV = "OPENBLAS_CORETYPE"
#: core type -> the CPU flags (``/proc/cpuinfo``) its kernels need, best first
CORE_FLAGS: dict[str, frozenset[str]] = {
    "SkylakeX": frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}),
    "Haswell": frozenset({"avx2", "fma"}),
}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The instruction-set flags of the first CPU in ``cpuinfo`` (empty if unreadable)."""
    try:
        with cpuinfo.open() as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def best_core(flags: frozenset[str]) -> str | None:
    """The best OpenBLAS core type whose kernels ``flags`` support (``None``: none here)."""
    return next((core for core, need in CORE_FLAGS.items() if need <= flags), None)


@contextlib.contextmanager
def chosen_kernels() -> Iterator[str | None]:
    """``OPENBLAS_CORETYPE`` set to :func:`best_core` of this CPU inside the block, unless
    the user set it (kept) or this is not Linux (left unset); the environment as it was
    afterwards. Yields the core type OpenBLAS libraries loaded in the block use, ``None``
    for their own detection."""
    if ENV in os.environ or not sys.platform.startswith("linux"):
        yield os.environ.get(ENV)
        return
    core = best_core(cpu_flags())
    if core is not None:
        os.environ[ENV] = core
    try:
        yield core
    finally:
        os.environ.pop(ENV, None)


def load_faiss() -> ModuleType:
    """faiss, imported (on the first call) with :func:`chosen_kernels`."""
    if "faiss" not in sys.modules:
        with chosen_kernels():
            importlib.import_module("faiss")
    return sys.modules["faiss"]


def loaded_cores() -> dict[str, str]:
    """Core type of every OpenBLAS loaded in this process: ``{library file name: core}``
    (Linux; for reports)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return {}
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()}
    cores = {}
    for path in sorted(p for p in paths if p.startswith("/")):
        try:
            corename = ctypes.CDLL(path).openblas_get_corename
        except (OSError, AttributeError):
            continue
        corename.restype = ctypes.c_char_p
        cores[Path(path).name] = corename().decode()
    return cores
