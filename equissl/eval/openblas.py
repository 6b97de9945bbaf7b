"""The BLAS kernels of faiss's CPU searches.

faiss's pip wheels bundle their own OpenBLAS (0.3.15 in faiss 1.15), whose run-time CPU
detection predates Sapphire Rapids and newer x86 cores: on those it falls back to its
*Prescott* (SSE3) kernels, and every faiss matrix product (exact search, k-means, list
assignment) runs 3-4× slower than the CPU allows, 2.5× slower than torch's MKL
(``bench/results/faiss_knn_cpu.txt``). OpenBLAS takes the core type from the
``OPENBLAS_CORETYPE`` environment variable instead, read once, when the library loads.

:func:`select_kernels` sets it, before faiss is first imported, to the best core type the
CPU's instruction set supports (``SkylakeX`` with AVX-512, ``Haswell`` with AVX2 + FMA;
these are also what OpenBLAS's own detection picks on the cores it knows). A value the
user set is kept (``OPENBLAS_CORETYPE=Prescott`` restores the wheel's behaviour here), and
nothing is set off Linux x86 or once faiss is loaded. :mod:`equissl.eval` calls it on
import, so every equissl path to faiss goes through it; code that imports faiss itself must
import :mod:`equissl.eval` first. The choice affects OpenBLAS libraries loaded afterwards
in the process (numpy's and torch's BLAS are loaded earlier, and unaffected).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

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


def select_kernels() -> str | None:
    """Set ``OPENBLAS_CORETYPE`` for faiss's OpenBLAS (see the module docstring).

    Returns:
        The core type OpenBLAS libraries loaded from now on will use if this process sets
        or inherits one, else ``None`` (their own detection).
    """
    if ENV in os.environ or "faiss" in sys.modules or not sys.platform.startswith("linux"):
        return os.environ.get(ENV)
    core = best_core(cpu_flags())
    if core is not None:
        os.environ[ENV] = core
    return core


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
