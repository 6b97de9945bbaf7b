"""The sbatch templates of slurm/, quickly: each is run by bash with ``srun``/``scontrol`` stubs
and a SLURM environment; the command it starts, its pre-timeout signal, its requeue setting
and (for the templates that requeue from the batch shell) the requeue on SIGUSR1 are
checked. tests/slurm/ runs them on a real SLURM (``-m slurm``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "slurm"

# The args go down by rename, so a test that sees the log sees it whole (it once read an
# empty scontrol.args: the shell had created the file and printf had not yet written it).
STUB = """#!/bin/bash
printf '%s\\n' "$@" > "{log}.partial" && mv "{log}.partial" "{log}"
for _ in $(seq 100); do [[ -e "{release}" ]] && exit 0; sleep 0.1; done
"""


def sbatch_options(template: Path) -> dict[str, str]:
    """``#SBATCH --key=value`` lines of a template (``--flag`` maps to ``""``)."""
    options = {}
    for line in template.read_text().splitlines():
        if line.startswith("#SBATCH "):
            key, _, value = line.split(None, 1)[1].partition("=")
            options[key] = value
    return options


# `scontrol show job` as SLURM answers while it stops a job (JobState, Reason): the rest
# of the calls are recorded as STUB does
SHOW_JOB = """if [[ $1 == show ]]; then
    echo "JobId=1234 JobState={state} Reason={reason}"; exit 0
fi
"""


def start(
    template: str, args: list[str], tmp_path: Path, show_job: str = "", **env: str
) -> subprocess.Popen:
    """Run ``template`` as SLURM would (cwd = submit dir = the repository), stubs on PATH;
    ``show_job``: what ``scontrol show job`` answers (:data:`SHOW_JOB`; nothing by default)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("srun", "scontrol"):  # srun runs until the test releases it
        stub = bin_dir / name
        release = tmp_path / ("release" if name == "srun" else "scontrol.args")
        text = STUB.format(log=tmp_path / f"{name}.args", release=release)
        if name == "scontrol" and show_job:
            text = text.replace("\n", f"\n{show_job}", 1)  # after the #! line
        stub.write_text(text)
        stub.chmod(0o755)
    environ = {
        **os.environ,
        # the stubs, then this environment's console scripts (equissl-requeueable)
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SLURM_SUBMIT_DIR": str(REPO),
        "SLURM_JOB_ID": "1234",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS_PER_NODE": "8",
        "SLURM_CPUS_PER_TASK": "16",
        **env,
    }
    return subprocess.Popen(["bash", str(SLURM / template), *args], cwd=REPO, env=environ)


def stub_args(tmp_path: Path, name: str, timeout: float = 20) -> list[str]:
    """The arguments the ``name`` stub was called with, once it has been called."""
    log = tmp_path / f"{name}.args"
    deadline = time.monotonic() + timeout
    while not log.is_file():
        assert time.monotonic() < deadline, f"{name} was never called"
        time.sleep(0.05)
    return log.read_text().splitlines()


def srun_args(tmp_path: Path, timeout: float = 20) -> list[str]:
    return stub_args(tmp_path, "srun", timeout)


ARRAY = {"SLURM_ARRAY_JOB_ID": "1234", "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}
CASES = {
    "pretrain.sbatch": (  # GPUs in the allocation: trainer=ddp over the tasks
        ["method=sie", "data.root=/d"],
        {"SLURM_GPUS_ON_NODE": "8"},
        ["equissl-pretrain", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2",
         "method=sie", "data.root=/d"],
    ),
    "pretrain.sbatch cpu": (  # no GPU: the default trainer (the CPU), the allocation's tasks
        ["method=sie", "data.root=/d"],
        {},
        ["equissl-pretrain", "trainer.devices=8", "trainer.num_nodes=2", "method=sie",
         "data.root=/d"],
    ),
    "pretrain.sbatch own trainer": (  # the user's trainer= wins
        ["trainer=gpu", "data.root=/d"],
        {"SLURM_GPUS_ON_NODE": "8"},
        ["equissl-pretrain", "trainer.devices=8", "trainer.num_nodes=2", "trainer=gpu",
         "data.root=/d"],
    ),
    "evaluate.sbatch": (
        ["checkpoint=/runs/r/checkpoints/last.ckpt"],
        {},
        ["equissl-evaluate", "checkpoint=/runs/r/checkpoints/last.ckpt"],
    ),
    "generate.sbatch": (
        ["out=/data/mini", "views=50"],
        ARRAY,
        ["equissl-generate", "out=/data/mini", "views=50", "chunk=3", "num_chunks=8",
         "workers=16"],
    ),
    "pack.sbatch": (
        ["/data/3DIEBench", "/scratch/packed"],
        ARRAY,
        ["equissl-pack", "/data/3DIEBench", "/scratch/packed", "chunk=3", "num_chunks=8"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("template", sorted(CASES))
def test_template_runs_srun_with_signal_and_requeue(template, tmp_path):
    args, env, expected = CASES[template]
    template = template.split()[0]
    options = sbatch_options(SLURM / template)
    assert "--requeue" in options
    assert options["--signal"] in ("USR1@90", "B:USR1@90")
    (tmp_path / "release").touch()
    proc = start(template, args, tmp_path, **env)
    assert proc.wait(timeout=30) == 0
    assert srun_args(tmp_path) == expected
    if "--array" in options:
        assert "%A_%a" in options["--output"]  # one log per array task


@pytest.mark.parametrize("template", ["evaluate.sbatch", "generate.sbatch", "pack.sbatch"])
def test_batch_shell_requeues_on_usr1(template, tmp_path):
    args, env, _ = CASES[template]
    proc = start(template, args, tmp_path, **env)
    srun_args(tmp_path)  # srun is running: the handler is installed
    proc.send_signal(signal.SIGUSR1)
    job = "1234_3" if env else "1234"
    assert stub_args(tmp_path, "scontrol") == ["requeue", job]
    (tmp_path / "release").touch()  # the command finishes; the script returns its status
    assert proc.wait(timeout=30) == 0


def test_array_templates_pass_valid_options(tmp_path):
    """The chunk options the array templates append are the commands' own."""
    from equissl.apps.pack import parse_args

    _, _, expected = CASES["pack.sbatch"]
    _, _, options = parse_args(expected[1:])
    assert (options["chunk"], options["num_chunks"]) == (3, 8)
    from omegaconf import OmegaConf

    from equissl.datasets.iebench import RenderSettings  # equissl-generate's schema

    _, _, expected = CASES["generate.sbatch"]
    keys = [a for a in expected[1:] if not a.startswith("out=")]
    settings = OmegaConf.merge(OmegaConf.structured(RenderSettings), OmegaConf.from_dotlist(keys))
    assert (settings.chunk, settings.num_chunks, settings.workers) == (3, 8, 16)


@pytest.mark.parametrize("template", ["evaluate.sbatch", "generate.sbatch", "pack.sbatch"])
def test_batch_shell_requeues_on_the_time_limits_sigterm(template, tmp_path):
    """A warning SLURM sent before the batch shell existed is lost; the time limit's SIGTERM
    then requeues instead, and the shell waits for its command (which SLURM stops)."""
    args, env, _ = CASES[template]
    show = SHOW_JOB.format(state="COMPLETING", reason="TimeLimit")
    proc = start(template, args, tmp_path, show_job=show, **env)
    srun_args(tmp_path)
    proc.send_signal(signal.SIGTERM)
    job = "1234_3" if env else "1234"
    assert stub_args(tmp_path, "scontrol") == ["requeue", job]
    assert proc.poll() is None  # still waiting for the command
    (tmp_path / "release").touch()
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("template", ["evaluate.sbatch", "pretrain.sbatch"])
def test_batch_shell_does_not_requeue_on_scancels_sigterm(template, tmp_path):
    """``scancel``: the batch shell dies of SIGTERM as before, nothing requeued. pretrain's
    shell never requeues on SIGTERM (its training tasks decide, once, from rank 0)."""
    args, env, _ = CASES[template]
    reason = "TimeLimit" if template == "pretrain.sbatch" else "None"
    proc = start(
        template, args, tmp_path, show_job=SHOW_JOB.format(state="COMPLETING", reason=reason), **env
    )
    srun_args(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    assert not (tmp_path / "scontrol.args").exists()
    (tmp_path / "release").touch()
