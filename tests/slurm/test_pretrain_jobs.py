"""``slurm/pretrain.sbatch`` on a real SLURM, submitted from outside the checkout on a CPU
partition: a plain job; requeues on SIGUSR1 (to the tasks, to the batch shell, at the time
limit), at the time limit without a warning and on ``scontrol requeue``, each ending in a
checkpoint bitwise equal to an uninterrupted run's (model, optimizer, step, loader
position); SIGTERM (``scancel``), two tasks under ``srun``, and SIGUSR1 or the time limit
during ``evaluate_after``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from equissl.checkpointing import load_checkpoint
from tests.reliability.ft_helpers import assert_same_state
from tests.slurm.cluster import Cluster
from tests.slurm.conftest import TEMPLATES, job_environment, pretrain_args

pytestmark = pytest.mark.slurm
ONE_CPU = ("--cpus-per-task=1", "--mem-per-cpu=1500")


def steps_logged(run: Path) -> list[int]:
    losses = run / "step_losses.jsonl"
    if not losses.is_file():
        return []
    return [json.loads(line)["step"] for line in losses.read_text().splitlines() if line]


def template_without_warning(where: Path) -> Path:
    """``pretrain.sbatch`` without its ``--signal`` line: as when SLURM's warning is lost."""
    template = where / "pretrain-no-warning.sbatch"
    lines = (TEMPLATES / "pretrain.sbatch").read_text().splitlines(keepends=True)
    template.write_text("".join(ln for ln in lines if not ln.startswith("#SBATCH --signal")))
    return template


def wait_for_step(run: Path, step: int, cluster: Cluster, job: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not steps_logged(run) or steps_logged(run)[-1] < step:
        state = cluster.job(job).state
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job {job} is {state}"
        assert time.monotonic() < deadline, f"step {step} not reached: {cluster.logs()}"
        time.sleep(0.3)


def submit(
    cluster: Cluster,
    where: Path,
    env,
    *options: str,
    args: list[str],
    template: Path = TEMPLATES / "pretrain.sbatch",
) -> str:
    where.mkdir(parents=True, exist_ok=True)
    return cluster.sbatch(*ONE_CPU, *options, str(template), *args, cwd=where, env=env)


@pytest.fixture(scope="module")
def reference(cluster, tree, tmp_path_factory) -> Path:
    """An uninterrupted 24-step job: the checkpoint every interrupted job must equal."""
    where = tmp_path_factory.mktemp("reference")
    env = job_environment()
    job = submit(cluster, where, env, args=pretrain_args(tree, 24))
    done = cluster.wait(job)
    assert (done.state, done.exit_code) == ("COMPLETED", "0:0"), (
        where / f"slurm-equissl-pretrain-{job}.out"
    ).read_text()[-3000:]
    return where / "run" / "checkpoints" / "last.ckpt"


def test_plain_job_from_outside_the_checkout(cluster, tree, tmp_path, job_env, reference):
    job = submit(cluster, tmp_path, job_env, args=pretrain_args(tree, 24))
    done = cluster.wait(job)
    log = tmp_path / f"slurm-equissl-pretrain-{job}.out"
    assert (done.state, done.exit_code, done.restarts) == ("COMPLETED", "0:0", 0), log.read_text()[
        -3000:
    ]
    assert "new run at" in log.read_text()  # the log lands where the job was submitted
    assert steps_logged(tmp_path / "run") == list(range(1, 25))
    assert_same_state(tmp_path / "run" / "checkpoints" / "last.ckpt", reference)


@pytest.mark.parametrize("target", ["steps", "batch shell"])
def test_usr1_requeues_and_the_run_ends_as_if_uninterrupted(
    cluster, tree, tmp_path, job_env, reference, target
):
    job = submit(cluster, tmp_path, job_env, args=pretrain_args(tree, 24))
    wait_for_step(tmp_path / "run", 4, cluster, job)
    batch = ["--batch"] if target == "batch shell" else []
    assert cluster.cmd("scancel", *batch, "--signal=USR1", job).returncode == 0
    done = cluster.wait(job)
    log = (tmp_path / f"slurm-equissl-pretrain-{job}.out").read_text()
    assert (done.state, done.exit_code) == ("COMPLETED", "0:0"), log[-3000:]
    assert done.restarts == 1, log[-3000:]
    assert "requeued SLURM job" in log
    assert steps_logged(tmp_path / "run")[-1] == 24
    assert_same_state(tmp_path / "run" / "checkpoints" / "last.ckpt", reference)


def test_scontrol_requeue_resumes_exactly(cluster, tree, tmp_path, job_env, reference):
    job = submit(cluster, tmp_path, job_env, args=pretrain_args(tree, 24))
    wait_for_step(tmp_path / "run", 4, cluster, job)
    assert cluster.cmd("scontrol", "requeue", job).returncode == 0
    done = cluster.wait(job)
    log = (tmp_path / f"slurm-equissl-pretrain-{job}.out").read_text()
    assert (done.state, done.exit_code, done.restarts) == ("COMPLETED", "0:0", 1), log[-3000:]
    assert "SIGTERM: stopped after step" in log  # SLURM's requeue stops the tasks with SIGTERM
    assert_same_state(tmp_path / "run" / "checkpoints" / "last.ckpt", reference)


def test_scancel_checkpoints_and_stays_cancelled(cluster, tree, tmp_path, job_env):
    job = submit(cluster, tmp_path, job_env, args=pretrain_args(tree, 1000))
    wait_for_step(tmp_path / "run", 3, cluster, job)
    assert cluster.cmd("scancel", job).returncode == 0
    done = cluster.wait(job)
    assert done.state == "CANCELLED" and done.restarts == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 60  # the tasks finish their step after the job is marked
    while not ckpt.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    step = load_checkpoint(ckpt)["global_step"]
    assert step >= 3 and steps_logged(tmp_path / "run")[-1] == step


def test_time_limit_requeues_until_done(cluster, tree, tmp_path, job_env):
    """``--time=2 --signal=USR1@40`` on a run of ~2 minutes: each attempt is warned 50-80 s
    in, checkpoints, requeues; the last one finishes. Its final checkpoint equals that of the
    same run without a time limit, submitted at the same time.

    Not ``--time=1``: SLURM sends the warning when at most ``warn + 30`` s are left, at its
    next 30 s check, so a requeued one-minute attempt was warned 1 s in (measured), before
    ``srun`` had started the task; a step signal with no step is lost and that attempt ended
    TIMEOUT (slurm/README.md, "The time-limit warning")."""
    args = pretrain_args(tree, 2500)
    free = submit(cluster, tmp_path / "free", job_env, args=args)
    job = submit(cluster, tmp_path / "limited", job_env, "--time=2", "--signal=USR1@40", args=args)
    done = cluster.wait(job, timeout=900)
    log = (tmp_path / "limited" / f"slurm-equissl-pretrain-{job}.out").read_text()
    assert (done.state, done.exit_code) == ("COMPLETED", "0:0"), log[-3000:]
    assert done.restarts >= 1 and "requeued SLURM job" in log
    assert cluster.wait(free, timeout=600).state == "COMPLETED"
    assert steps_logged(tmp_path / "limited" / "run") == list(range(1, 2501))
    assert_same_state(
        tmp_path / "limited" / "run" / "checkpoints" / "last.ckpt",
        tmp_path / "free" / "run" / "checkpoints" / "last.ckpt",
    )


def test_a_lost_warning_requeues_at_the_time_limit(cluster, tree, tmp_path, job_env):
    """The template without its ``--signal`` line — as when SLURM's warning came before the
    tasks existed and reached nobody: each attempt runs into ``--time=1``, whose SIGTERM
    requeues (``Reason=TimeLimit``) before the checkpoint; the run ends as the same run
    without a limit."""
    template = template_without_warning(tmp_path)
    args = pretrain_args(tree, 3000)  # > 90 s unloaded: SLURM enforces at 60-90 s
    free = submit(cluster, tmp_path / "free", job_env, args=args)
    job = submit(cluster, tmp_path / "limited", job_env, "--time=1", args=args, template=template)
    done = cluster.wait(job, timeout=900)
    log = (tmp_path / "limited" / f"slurm-equissl-pretrain-{job}.out").read_text()
    assert (done.state, done.exit_code) == ("COMPLETED", "0:0"), log[-3000:]
    assert done.restarts >= 1 and "SIGTERM: stopped after step" in log, log[-3000:]
    assert "SIGUSR1" not in log and "requeued SLURM job" in log
    assert cluster.wait(free, timeout=600).state == "COMPLETED"
    assert steps_logged(tmp_path / "limited" / "run") == list(range(1, 3001))
    assert_same_state(
        tmp_path / "limited" / "run" / "checkpoints" / "last.ckpt",
        tmp_path / "free" / "run" / "checkpoints" / "last.ckpt",
    )


def test_two_tasks_train_with_gloo(cluster, tree, tmp_path, job_env):
    job = submit(cluster, tmp_path, job_env, "--ntasks-per-node=2", args=pretrain_args(tree, 4))
    done = cluster.wait(job)
    log = (tmp_path / f"slurm-equissl-pretrain-{job}.out").read_text()
    assert (done.state, done.exit_code) == ("COMPLETED", "0:0"), log[-3000:]
    assert "over trainer.devices=2 x trainer.num_nodes=1 = 2 rank(s)" in log
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 4


def test_usr1_during_evaluate_after_requeues_and_the_rerun_finishes(
    cluster, tree, tmp_path, job_env
):
    args = pretrain_args(
        tree, 4, "evaluate_after=true", "eval.num_workers=0", "eval.probes.rotation.epochs=2000"
    )
    job = submit(cluster, tmp_path, job_env, args=args)
    deadline = time.monotonic() + 300
    while not (tmp_path / "run" / "features").is_dir() or not any(
        (tmp_path / "run" / "features").iterdir()
    ):
        assert cluster.job(job).state in ("PENDING", "RUNNING"), cluster.job(job)
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(3)  # inside the probes
    assert cluster.cmd("scancel", "--signal=USR1", job).returncode == 0
    done = cluster.wait(job, timeout=900)
    log = (tmp_path / f"slurm-equissl-pretrain-{job}.out").read_text()
    assert (done.state, done.exit_code) == ("COMPLETED", "0:0"), log[-3000:]
    assert done.restarts == 1 and "SIGUSR1 after training: requeueing" in log
    assert (tmp_path / "run" / "eval" / "results.json").is_file()


def test_time_limit_during_evaluate_after_requeues_and_the_rerun_finishes(
    cluster, tree, tmp_path, job_env
):
    """The time limit's SIGTERM in the probes after training (no warning: the template
    without ``--signal``): the job requeues and dies of it; the rerun, given more time while
    it waits, finds training done and evaluates."""
    template = template_without_warning(tmp_path)
    # ~15 s of start-up and training, then ~170 s of probes (unloaded; 100 s at 4000 epochs):
    # the limit, enforced 60-90 s in, falls inside them also on a machine twice as fast
    args = pretrain_args(
        tree, 4, "evaluate_after=true", "eval.num_workers=0", "eval.probes.rotation.epochs=6000"
    )
    job = submit(cluster, tmp_path, job_env, "--time=1", args=args, template=template)
    deadline = time.monotonic() + 300
    while cluster.job(job).restarts == 0:
        assert cluster.job(job).state in ("PENDING", "RUNNING", "COMPLETING"), cluster.job(job)
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert cluster.cmd("scontrol", "update", f"JobId={job}", "TimeLimit=UNLIMITED").returncode == 0
    done = cluster.wait(job, timeout=600)
    log = (tmp_path / f"slurm-equissl-pretrain-{job}.out").read_text()
    assert (done.state, done.exit_code, done.restarts) == ("COMPLETED", "0:0", 1), log[-3000:]
    assert "time limit reached after training: requeueing" in log, log[-3000:]
    assert (tmp_path / "run" / "eval" / "results.json").is_file()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 4
