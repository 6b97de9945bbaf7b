"""Validating PDE files needs no torch: the equation names the validator knows are written out
in :mod:`equissl.datasets.pde.storage`; they must stay those with symmetry generators."""

from __future__ import annotations

import subprocess
import sys


def test_known_equations_are_those_with_generators():
    from equissl.datasets.pde import EQUATIONS
    from equissl.datasets.pde.storage import KNOWN_EQUATIONS
    from equissl.datasets.pde.symmetries import GENERATORS

    assert set(GENERATORS) == KNOWN_EQUATIONS
    assert set(EQUATIONS.names()) == KNOWN_EQUATIONS


def test_pde_validation_imports_no_torch(tmp_path):
    code = (
        "import sys\n"
        "from equissl.datasets.pde import validate_pde_path\n"
        f"validate_pde_path({str(tmp_path)!r})\n"
        "print('torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "False"
