"""``equissl-validate``, ``equissl-pack`` and ``equissl-generate`` import what they use.

* validate and pack need numpy (split files, latents, shard indexes) and, once they decode an
  image, torch and torchvision's decoder: the decoder of every reader, so that what
  validates is what training reads. A broken or empty tree, and ``pack verify=false``, never
  import torch.
* generate composes the ``data`` config group alone with Hydra, and imports the dataset
  modules (torch, h5py for PDE data) but no method, model, probe or training code.
* validate and pack never import Hydra (only the commands that compose a config do).
* None of them imports Lightning, timm, faiss, matplotlib, trimesh or the ``models``,
  ``ssl``, ``training`` or ``eval`` packages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: fresh interpreters running the console commands (~10 s): with the end-to-end tier
pytestmark = pytest.mark.e2e

NEVER = (
    "lightning",
    "timm",
    "faiss",
    "matplotlib",
    "trimesh",
    "equissl.models",
    "equissl.ssl",
    "equissl.training",
    "equissl.eval",
)

RUN = """
import json, sys
from equissl.apps import cli

WATCHED = json.loads(sys.argv[2])

def run(command, *argv):
    try:
        getattr(cli, command)(list(argv))
    except SystemExit as stop:
        return stop.code
    return 0

def loaded():
    return [w for w in WATCHED if any(m == w or m.startswith(w + ".") for m in sys.modules)]

steps = []
for command, *argv in json.loads(sys.argv[1]):
    code = run(command, *argv)
    steps.append({"argv": [command, *argv], "exit": code, "loaded": loaded()})
print("STEPS" + json.dumps(steps))
"""


def run_steps(steps: list[list[str]], cwd: Path) -> list[dict]:
    """Run the console commands ``steps`` one after another in one fresh interpreter; the
    exit status of each and the watched modules imported after it."""
    res = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(steps), json.dumps([*NEVER, "torch", "hydra"])],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("STEPS"))
    return json.loads(line[len("STEPS") :])


def test_validate_and_pack_import_what_they_use(iebench_tree, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    packed, packed_raw = tmp_path / "packed", tmp_path / "packed_raw"
    steps = run_steps(
        [
            ["validate", str(empty)],  # no split files: nothing to decode
            ["pack", str(iebench_tree), str(packed), "verify=false"],  # bytes copied as they are
            ["validate", str(iebench_tree)],  # every image decoded
            ["validate", str(packed)],
            ["pack", str(iebench_tree), str(packed_raw), "encoding=raw"],
        ],
        tmp_path,
    )
    assert [s["exit"] for s in steps] == [1, 0, 0, 0, 0]
    assert steps[0]["loaded"] == [] and steps[1]["loaded"] == []  # not even torch
    assert steps[-1]["loaded"] == ["torch"]  # the decoder; nothing of the training stack


def test_generate_imports_the_datasets_only(tmp_path):
    out = tmp_path / "kdv"
    small = ["num_trajectories=2", "params.nx=32", "params.nt=12", "params.substeps=4"]
    (step,) = run_steps([["generate", "data=pde_kdv", f"out={out}", *small]], tmp_path)
    assert step["exit"] == 0 and list(out.glob("*.h5"))
    assert step["loaded"] == ["torch", "hydra"]  # the PDE solver; the data config composed
