"""The built wheel carries the package and its config tree (``configs/`` ->
``equissl.configs``): installed into a fresh venv without the editable install, it composes
a config and trains."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import write_iebench_tree

REPO = Path(__file__).resolve().parents[1]
SKIP_NAMES = shutil.ignore_patterns(
    ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv"
)
# the checkout's own untracked top-level folders (.gitignore): data, runs, outputs ...
SKIP_TOP = {"outputs", "multirun", "data", "runs", "tmp", "lightning_logs"}


def skip(directory: str, names: list[str]) -> set[str]:
    """``shutil.copytree`` ignore: :data:`SKIP_NAMES` anywhere, :data:`SKIP_TOP` at the root
    only (``configs/data`` is part of the package)."""
    top = SKIP_TOP if Path(directory) == REPO else set()
    return set(SKIP_NAMES(directory, names)) | (top & set(names))


def sh(*cmd: str | Path, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel built from this checkout, and the dependencies of the
    running venv through a path line (its ``.pth`` files, the editable finder among them,
    are not processed)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = shutil.copytree(REPO, tmp / "src", ignore=skip)  # build outside the checkout
    pip = Path(sys.executable).parent / "pip"
    sh(pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", src, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("equissl-*.whl")
    venv = tmp / "venv"
    # the interpreter the running venv was made from (same version as the project's venv)
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    # without PYTHONPATH: pip would take a checkout on it for an installed equissl and skip
    sh(base, "-m", "venv", venv, cwd=tmp, env=clean_env())
    sh(venv / "bin" / "pip", "install", "--no-deps", "-q", wheel, cwd=tmp, env=clean_env())
    site = Path(
        sh(
            venv / "bin" / "python",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            cwd=tmp,
            env=clean_env(),
        ).stdout.strip()
    )
    (site / "deps_of_the_project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def clean_env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "EQUISSL_PLUGINS", "VIRTUAL_ENV")
    }
    return env


@pytest.mark.e2e
def test_wheel_installs_package_and_configs(wheel_venv, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = clean_env()
    where = sh(
        wheel_venv / "bin" / "python",
        "-c",
        "import equissl, equissl.configs, importlib.resources as r; "
        "print(equissl.__file__); print(equissl.configs.__file__); "
        "print(r.files('equissl.configs').joinpath('method/sie.yaml').is_file()); "
        "print(equissl.__version__)",
        cwd=scratch,
        env=env,
    ).stdout.split()
    for path in where[:2]:
        assert Path(path).resolve().is_relative_to(wheel_venv.resolve()), where
    assert where[2] == "True" and where[3] == "0.1.0"

    job = sh(
        wheel_venv / "bin" / "equissl-pretrain",
        "--cfg",
        "job",
        "method=vicreg",
        "data.root=/x",
        cwd=scratch,
        env=env,
    ).stdout
    assert "impl: vicreg" in job and "root: /x" in job and "impl: iebench" in job

    tree = write_iebench_tree(tmp_path / "tree")
    sh(
        wheel_venv / "bin" / "equissl-pretrain",
        "method=vicreg",
        "method.projector=[16]",
        f"data.root={tree}",
        "trainer=cpu",
        "data.batch_size=4",
        "data.image_size=32",
        "data.num_workers=0",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "trainer.max_steps=1",
        cwd=scratch,
        env=env,
    )
    (ckpt,) = (scratch / "outputs").rglob("last.ckpt")
    assert ckpt.stat().st_size > 0
