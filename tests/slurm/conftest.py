"""The private SLURM of the ``slurm`` tests (:mod:`tests.slurm.cluster`), one per session,
and the jobs' environment: this interpreter's console scripts on ``PATH``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import write_iebench_tree
from tests.reliability.ft_helpers import fast_args
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


@pytest.fixture(autouse=True)
def empty_queue(request):
    """No job of one test competes for the node's CPUs with the next (a failed test may
    leave its jobs running)."""
    yield
    if "cluster" in request.fixturenames:
        request.getfixturevalue("cluster").cancel_all()


def job_environment() -> dict[str, str]:
    """What a user's shell would export to sbatch: this interpreter's console scripts on
    PATH, one thread per task, nothing of an enclosing SLURM job or pytest."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PYTEST"))}
    return {**env, "PATH": f"{bin_dir}:{env['PATH']}", "OMP_NUM_THREADS": "1"}


@pytest.fixture
def job_env() -> dict[str, str]:
    return job_environment()


def pretrain_args(root: Path, steps: int, *extra: str) -> list[str]:
    """The fault-tolerance tests' fast deterministic run (``fast_args``: timm's tiny test
    ResNet, every step's loss logged) without a trainer option, which the template picks
    from the allocation, checkpointing only at the end, the run folder ``./run``."""
    return [
        *(a for a in fast_args(root, steps) if not a.startswith("trainer=")),
        "checkpoint.every_n_steps=0",
        "checkpoint.every_n_epochs=0",
        "hydra.run.dir=run",
        *extra,
    ]


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> Path:
    return write_iebench_tree(tmp_path_factory.mktemp("data") / "3DIEBench")
