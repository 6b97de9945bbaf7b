"""faiss's OpenBLAS kernel choice (equissl.eval.openblas): the core type from the CPU
flags, set only while faiss loads, the user's choice kept, and the real library loaded
with it."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from equissl.eval import openblas
from equissl.eval.openblas import ENV, best_core, cpu_flags

AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


@pytest.mark.parametrize(
    ("flags", "core"),
    [
        (AVX512 | {"avx2", "fma", "sse3"}, "SkylakeX"),
        ({"avx512f", "avx2", "fma"}, "Haswell"),  # AVX-512 without BW/DQ/VL: not SkylakeX
        ({"avx2", "fma", "sse4_2"}, "Haswell"),
        ({"avx2"}, None),  # no FMA
        ({"sse3", "sse4_2"}, None),
        (set(), None),
    ],
)
def test_best_core_needs_every_flag_of_its_kernels(flags: set[str], core: str | None) -> None:
    assert best_core(frozenset(flags)) == core


def test_cpu_flags_reads_the_first_flags_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t: sse\n")
    assert cpu_flags(info) == {"fpu", "avx2", "fma"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_chosen_kernels_sets_the_best_core_inside_the_block_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(openblas.sys, "platform", "linux")
    monkeypatch.setattr(openblas, "cpu_flags", lambda: frozenset(AVX512 | {"avx2", "fma"}))
    monkeypatch.delenv(ENV, raising=False)
    with openblas.chosen_kernels() as core:
        assert core == "SkylakeX"
        assert os.environ[ENV] == "SkylakeX"
    assert ENV not in os.environ  # no later process (a job on another node) inherits it
    monkeypatch.setattr(openblas, "cpu_flags", lambda: frozenset({"sse3"}))
    with openblas.chosen_kernels() as core:
        assert core is None
        assert ENV not in os.environ


def test_chosen_kernels_keeps_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openblas, "cpu_flags", lambda: frozenset(AVX512 | {"avx2", "fma"}))
    monkeypatch.setenv(ENV, "Prescott")
    with openblas.chosen_kernels() as core:
        assert core == "Prescott"
        assert os.environ[ENV] == "Prescott"
    assert os.environ[ENV] == "Prescott"


def run_python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != ENV} | env
    done = subprocess.run(
        [sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


PROBE = (
    "import os\n"
    "import equissl.eval.neighbours\n"
    "from equissl.eval.openblas import ENV, loaded_cores\n"
    "print(' '.join(loaded_cores().values()), os.environ.get(ENV, '-'))"
)


def bundled_openblas() -> list[Path]:
    """The OpenBLAS libraries a faiss pip wheel bundles (``faiss_*.libs/``)."""
    spec = importlib.util.find_spec("faiss")
    if spec is None or spec.origin is None:
        return []
    return sorted(Path(spec.origin).parent.parent.glob("faiss*.libs/*openblas*"))


@pytest.mark.e2e  # several seconds (processes): the e2e tier, which CI runs
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not bundled_openblas(),
    reason="needs Linux and a faiss wheel that bundles its own OpenBLAS",
)
def test_faiss_openblas_loads_with_the_chosen_kernels() -> None:
    """In a fresh process, importing the stage loads faiss's OpenBLAS with the best kernels
    of this CPU (or its own detection where none is known), and a user's choice wins."""
    want = best_core(cpu_flags())
    *cores, env = run_python(PROBE).split()
    assert cores, "faiss's bundled OpenBLAS was not found among the loaded libraries"
    if want is not None:
        assert want in cores
    assert env == "-"  # the choice did not stay in the environment
    *cores, env = run_python(PROBE, **{ENV: "Prescott"}).split()
    assert "Prescott" in cores
    assert env == "Prescott"
