"""``slurm/generate.sbatch`` and ``slurm/pack.sbatch`` as array jobs, then ``equissl-validate``
on the result; ``slurm/evaluate.sbatch`` requeued by SIGUSR1 to its batch shell, the rerun
reading the features the first attempt cached. All submitted from outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm.conftest import TEMPLATES, pretrain_args

pytestmark = pytest.mark.slurm
ONE_CPU = ("--cpus-per-task=1", "--mem-per-cpu=1500")


def script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_array_render_pack_validate(cluster, tmp_path, job_env):
    out, packed = tmp_path / "mini", tmp_path / "mini-packed"
    render = cluster.sbatch(
        *ONE_CPU, "--array=0-1", str(TEMPLATES / "generate.sbatch"), f"out={out}",
        "num_classes=2", "objects_per_class=3", "views=2", "resolution=16", "spp=1",
        cwd=tmp_path, env=job_env,
    )  # fmt: skip
    pack = cluster.sbatch(
        *ONE_CPU, "--array=0-1", f"--dependency=afterok:{render}",
        str(TEMPLATES / "pack.sbatch"), str(out), str(packed),
        cwd=tmp_path, env=job_env,
    )  # fmt: skip
    for task in (f"{render}_0", f"{render}_1", f"{pack}_0", f"{pack}_1"):
        done = cluster.wait(task, timeout=600)
        logs = "\n".join(p.read_text()[-1500:] for p in tmp_path.glob("slurm-*.out"))
        assert (done.state, done.exit_code) == ("COMPLETED", "0:0"), f"{task}: {logs}"
    assert sorted(p.name for p in tmp_path.glob("slurm-equissl-render-*.out")) == [
        f"slurm-equissl-render-{render}_0.out",
        f"slurm-equissl-render-{render}_1.out",
    ]  # one log per array task, where the job was submitted
    for root in (out, packed):
        res = subprocess.run(
            [script("equissl-validate"), str(root)], capture_output=True, text=True, timeout=300
        )
        assert res.returncode == 0, res.stdout + res.stderr
    assert (packed / "packed.json").is_file()


@pytest.fixture(scope="module")
def checkpoint(
    tree,
    tmp_path_factory,
) -> Path:
    where = tmp_path_factory.mktemp("ckpt")
    res = subprocess.run(
        [script("equissl-pretrain"), *pretrain_args(tree, 4)],
        cwd=where, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return where / "run" / "checkpoints" / "last.ckpt"


def test_evaluation_requeues_on_usr1_and_reuses_its_cached_features(
    cluster, checkpoint, tmp_path, job_env
):
    features = checkpoint.parent.parent / "features"
    job = cluster.sbatch(
        *ONE_CPU, str(TEMPLATES / "evaluate.sbatch"), f"checkpoint={checkpoint}",
        "eval.num_workers=0", "probe=[rotation]", "eval.probes.rotation.epochs=3000",
        cwd=tmp_path, env=job_env,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (features.is_dir() and any(p.name.startswith("val_") for p in features.iterdir())):
        assert cluster.job(job).state in ("PENDING", "RUNNING"), cluster.job(job)
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.5)
    time.sleep(3)  # the rotation probe trains
    cached = {p.name: p.stat().st_mtime_ns for p in features.iterdir()}
    assert cluster.cmd("scancel", "--batch", "--signal=USR1", job).returncode == 0
    done = cluster.wait(job, timeout=900)
    log = (tmp_path / f"slurm-equissl-eval-{job}.out").read_text()
    assert (done.state, done.exit_code, done.restarts) == ("COMPLETED", "0:0", 1), log[-3000:]
    assert "time limit near: requeued SLURM job" in log
    assert {p.name: p.stat().st_mtime_ns for p in features.iterdir()} == cached  # reused
    results = list(checkpoint.parent.parent.glob("eval_*/results.json"))
    assert results, log[-3000:]
