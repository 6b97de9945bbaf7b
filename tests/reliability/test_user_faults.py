"""A user's mistakes at the command line, run through the installed console scripts.

Each case starts a real command against a "home" holding what a user already has: a
dataset in the published layout (no render record), a PDE folder, a trained run with its
``.hydra`` record and log, and a folder of notes. Every case asserts that the command fails,
that its message names the key or file at fault in a few lines without a traceback, and
that nothing already in the home changed: every file keeps its bytes (log files may only
grow) and no file or folder appears or disappears.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOY, write_iebench_tree

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
#: a real method on the test backbone (tests/toy_parts.py, loaded as a plugin)
SMALL = [
    "method=vicreg",
    "method.projector=[16,16]",
    *(o for o in TOY if not o.startswith(("method", "logger.name"))),  # csv logger kept
]
#: Lightning and library lines a run must not print (issue: quiet logs)
NOISE = ("💡 Tip", "srun", "Total Flops", "limit_train_batches", "LeafSpec", "logging interval")


def run(app: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"PYTHONPATH": str(REPO), "EQUISSL_PLUGINS": "tests.toy_parts"}
    script = Path(sys.executable).parent / f"equissl-{app}"
    return subprocess.run(
        [str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def state(home: Path) -> tuple[dict[str, str], set[str]]:
    """``({file: sha1 or log text}, {every path})`` under ``home``."""
    files, paths = {}, set()
    for p in sorted(home.rglob("*")):
        rel = str(p.relative_to(home))
        paths.add(rel)
        if p.is_file():
            data = p.read_bytes()
            files[rel] = data.decode() if p.suffix == ".log" else hashlib.sha1(data).hexdigest()
    return files, paths


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    write_iebench_tree(home / "3DIEBench")
    (home / "pde").mkdir()
    (home / "pde" / "notes.txt").write_text("Burgers runs for the paper\n")
    (home / "pde" / "burgers_train.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    (home / "notes" / "old.log").mkdir(parents=True)
    (home / "notes" / "train.log").write_text("notes\n")
    res = run(
        "pretrain",
        f"data.root={home / '3DIEBench'}",
        *SMALL,
        "trainer.max_steps=2",
        f"hydra.run.dir={home / 'run'}",
        cwd=home,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    shown = res.stdout + res.stderr
    assert not [n for n in NOISE if n in shown], shown
    (home / "text.ckpt").write_text("not a checkpoint\n")
    ckpt = (home / "run" / "checkpoints" / "last.ckpt").read_bytes()
    (home / "truncated.ckpt").write_bytes(ckpt[: len(ckpt) // 3])
    return home


def live_lock(home: Path) -> str:
    """A run folder held by a live process on this host (pid 1 never ends)."""
    run_dir = home / "locked_run"
    if not run_dir.exists():
        run_dir.mkdir()
        holder = {"host": socket.gethostname(), "pid": 1, "slurm_job_id": None, "started": 0}
        (run_dir / "run.lock").write_text(json.dumps(holder))
    return str(run_dir)


CK = "checkpoint={home}/run/checkpoints/last.ckpt"
DATA = "data.root={home}/3DIEBench"
RUN = "hydra.run.dir={home}/run"
#: (command, arguments ({home} is the user's home), words the message must hold)
CASES = {
    "data root missing": ("pretrain", ["data.root={home}/3DIEBenhc"], ["3DIEBenhc"]),
    "data root is a file": ("pretrain", ["data.root={home}/text.ckpt"], ["text.ckpt"]),
    "negative image size": ("pretrain", [DATA, "data.image_size=-8"], ["data.image_size"]),
    "zero batch": ("pretrain", [DATA, "data.batch_size=0"], ["data.batch_size"]),
    "negative lr": ("pretrain", [DATA, "method.optim.lr=-1"], ["method.optim.lr"]),
    "negative checkpoint interval": (
        "pretrain",
        [DATA, "checkpoint.every_n_steps=-3"],
        ["checkpoint.every_n_steps"],
    ),
    "method typo": ("pretrain", [DATA, "method=vicerg"], ["vicerg", "vicreg"]),
    "backbone typo": ("pretrain", [DATA, "backbone=resnet81"], ["resnet81", "resnet18"]),
    "unknown method key": ("pretrain", [DATA, "method.sim_cooef=1"], ["sim_cooef"]),
    "string batch size": ("pretrain", [DATA, "data.batch_size=many"], ["batch_size", "many"]),
    "gpu trainer without a gpu": ("pretrain", [DATA, "trainer=gpu"], ["trainer=cpu"]),
    "resume_from missing": (
        "pretrain",
        [DATA, "resume_from={home}/run/checkpoints/lats.ckpt"],
        ["lats.ckpt"],
    ),
    "quickstart renders into a PDE folder": (
        "pretrain",
        ["experiment=quickstart", "data.root={home}/pde"],
        ["notes.txt", "burgers_train.h5"],
    ),
    "quickstart on a published dataset with too few objects": (
        "pretrain",
        ["experiment=quickstart", "data.root={home}/3DIEBench"],
        ["already holds a dataset", "data.batch_size=64"],
    ),
    "resume with another lr": (
        "pretrain",
        [DATA, RUN, *SMALL, "method.optim.lr=0.5"],
        ["method.optim.lr", "0.5", "resume_allow"],
    ),
    "resume as another method": (
        "pretrain",
        [DATA, RUN, *[o.replace("=vicreg", "=simclr") for o in SMALL]],
        ["method.name", "'vicreg' -> 'simclr'"],
    ),
    "resume with another backbone width": (
        "pretrain",
        [DATA, RUN, *SMALL, "backbone.width=32"],
        ["backbone.width"],
    ),
    "run folder locked by a live run": (
        "pretrain",
        [DATA, "hydra.run.dir={locked}"],
        ["locked_run", "in use", "pid 1"],
    ),
    "evaluate a missing checkpoint": (
        "evaluate",
        ["checkpoint={home}/run/checkpoints/lst.ckpt"],
        ["lst.ckpt", "last.ckpt"],
    ),
    "evaluate a text file": ("evaluate", ["checkpoint={home}/text.ckpt"], ["text.ckpt"]),
    "evaluate a truncated checkpoint": (
        "evaluate",
        ["checkpoint={home}/truncated.ckpt"],
        ["truncated.ckpt"],
    ),
    "evaluate on a missing data root": (
        "evaluate",
        [CK, "data_root={home}/nowhere"],
        ["nowhere"],
    ),
    "evaluate on a PDE folder": ("evaluate", [CK, "data_root={home}/pde"], ["pde"]),
    "evaluate into the user's notes": (
        "evaluate",
        [CK, "data_root={home}/nowhere", "hydra.run.dir={home}/notes"],
        ["nowhere"],
    ),
    "probe typo": ("evaluate", [CK, "probe=[rotaton]"], ["rotaton", "rotation"]),
    "generate over a published dataset": (
        "generate",
        ["out={home}/3DIEBench", "num_classes=2", "objects_per_class=1", "views=2"],
        ["3DIEBench", "no render_config.json", "image_0.jpg"],
    ),
    "generate into a PDE folder": (
        "generate",
        ["out={home}/pde", "num_classes=2", "objects_per_class=1", "views=2"],
        ["notes.txt"],
    ),
    "generate with an unknown setting": (
        "generate",
        ["out={home}/new_data", "num_clases=2"],
        ["num_clases"],
    ),
    "pack a missing tree": ("pack", ["{home}/3DIEBenhc", "{home}/packed"], ["3DIEBenhc"]),
    "pack over a PDE folder": ("pack", ["{home}/3DIEBench", "{home}/pde"], ["notes.txt"]),
    "pack with an unknown encoding": (
        "pack",
        ["{home}/3DIEBench", "{home}/packed", "encoding=png"],
        ["encoding", "png"],
    ),
    "validate a missing path": ("validate", ["{home}/3DIEBenhc"], ["3DIEBenhc"]),
    "validate a damaged HDF5 file": ("validate", ["{home}/pde"], ["burgers_train.h5"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_mistake_is_named_and_changes_nothing(case, home):
    command, args, words = CASES[case]
    fill = {"home": home, "locked": live_lock(home)}
    before_files, before_paths = state(home)
    res = run(command, *(a.format(**fill) for a in args), cwd=home)
    after_files, after_paths = state(home)
    shown = res.stdout + res.stderr
    assert res.returncode != 0, shown[-2000:]
    assert "Traceback" not in shown, shown[-3000:]
    missing = [w.format(**fill) for w in words if w.format(**fill) not in shown]
    assert not missing, f"{missing} not in:\n{shown[-2000:]}"
    assert after_paths == before_paths, (after_paths ^ before_paths, shown[-1000:])
    for name, old in before_files.items():
        new = after_files[name]
        assert new == old or (name.endswith(".log") and new.startswith(old)), name


def test_a_refused_resume_keeps_the_runs_record(home):
    """Hydra rewrites ``<run>/.hydra`` before the job starts; the refused command puts the
    run's own record back, so ``config.yaml`` still describes the run in the folder."""
    config = home / "run" / ".hydra" / "config.yaml"
    before = config.read_text()
    args = [DATA.format(home=home), RUN.format(home=home), *SMALL, "seed=5"]
    res = run("pretrain", *args, cwd=home)
    assert res.returncode == 1 and "seed: 0 -> 5" in res.stderr, res.stderr[-2000:]
    assert config.read_text() == before and "seed: 0" in before


def test_cli_outputs_stay_out_of_the_users_folders(home, tmp_path):
    """A dataset generated by the command into a new folder leaves the home unchanged."""
    before = state(home)
    out = tmp_path / "mini"
    res = run(
        "generate", f"out={out}", "num_classes=2", "objects_per_class=1", "views=2",
        "resolution=16", "spp=1", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "data" / "render_config.json").is_file()
    assert state(home) == before
    shutil.rmtree(out)
