"""The private SLURM of the ``slurm`` tests (:mod:`tests.slurm.cluster`), one per session,
and the jobs' environment: this interpreter's console scripts on ``PATH``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.slurm.cluster import Cluster, Unavailable

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "slurm"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except Unavailable as err:
        pytest.fail(f"no SLURM for the slurm tests: {err}")
    yield c
    c.stop()


@pytest.fixture
def job_env() -> dict[str, str]:
    """What a user's shell would export to sbatch: the environment's scripts on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PYTEST"))}
    return {**env, "PATH": f"{bin_dir}:{env['PATH']}", "OMP_NUM_THREADS": "1"}
