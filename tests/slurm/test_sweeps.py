"""``equissl-pretrain -m hydra/launcher=slurm`` on a real SLURM: a failing job ends FAILED with
its traceback in its own log, the other completes, jobs carry their run folders' names and
the submitter prints a table of every job before it exits 1."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slurm.conftest import pretrain_args

pytestmark = pytest.mark.slurm


def test_a_failed_sweep_job_fails_and_the_table_names_every_job(cluster, tree, tmp_path, job_env):
    args = [
        a for a in pretrain_args(tree, 6) if not a.startswith(("hydra.run.dir", "data.batch_size"))
    ]
    # 9 training objects: batch 100 leaves no batch, an error of the job, not of the submitter
    res = subprocess.run(
        [
            str(Path(sys.executable).parent / "equissl-pretrain"),
            "-m",
            "hydra/launcher=slurm",
            "hydra.launcher.cpus_per_task=1",
            "hydra.sweep.dir=sweep",
            "data.batch_size=2,100",
            *args,
        ],
        cwd=tmp_path,
        env={**cluster.env, **job_env, "SLURM_CONF": str(cluster.conf)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    rows = re.findall(r"^\| (\d+_\d+) \| (\w+) \| (\S+) \| (.+) \|$", res.stdout, re.M)
    assert len(rows) == 2, out[-4000:]
    by_state = {state: (job, Path(folder), head) for job, state, folder, head in rows}
    assert set(by_state) == {"COMPLETED", "FAILED"}, out[-4000:]
    ok_job, ok_folder, ok_head = by_state["COMPLETED"]
    overrides = (tmp_path / ok_folder / ".hydra" / "overrides.yaml").read_text()
    assert "data.batch_size=2" in overrides and ok_head == "last.ckpt at step 6"
    bad_job, bad_folder, _ = by_state["FAILED"]
    bad_overrides = (tmp_path / bad_folder / ".hydra" / "overrides.yaml").read_text()
    assert "data.batch_size=100" in bad_overrides
    # SLURM agrees, and the jobs are named after their run folders
    for job, folder, state in ((ok_job, ok_folder, "COMPLETED"), (bad_job, bad_folder, "FAILED")):
        info = cluster.job(job)
        assert info.state == state and info.fields["JobName"] == folder.name
    logs = list((tmp_path / "sweep" / ".submitit").rglob(f"{bad_job}*_log.err"))
    assert logs and "fewer than the per-device batch data.batch_size=100" in logs[0].read_text()
