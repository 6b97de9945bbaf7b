"""A private single-node SLURM for the ``slurm`` tests: Debian's slurm-wlm 22.05 and munge,
with state, spool and logs in a temporary folder and its own ports; a requeued job waits
15 s (the credential lifetime) instead of SLURM's default two minutes.

What makes SLURM run in a container without systemd or cgroups: process tracking by
``/proc`` (``proctrack/linuxproc``), no task binding (``task/none``), consumable CPUs and
memory (``select/cons_tres`` with ``CR_CPU_Memory`` and a ``DefMemPerCPU``), requeueing
allowed (``JobRequeue=1``), the daemons in the foreground (``-D``) as root, ``munged`` as
the ``munge`` user, and each job's final state in a text file (``jobcomp/filetxt``) so that
no ``slurmdbd`` is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


class Unavailable(RuntimeError):
    """SLURM cannot be installed or started here (the reason is the message)."""


def ensure_installed() -> None:
    """Install Debian's slurm-wlm and munge when ``slurmctld`` is missing (needs root and
    apt-get); :class:`Unavailable` says why not."""
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable("slurm-wlm is not installed and this is not a root Debian machine")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise Unavailable(f"{' '.join(cmd)} failed: {res.stderr[-2000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_munge() -> None:
    """A running munged (started as the munge user when none answers)."""
    if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
        return
    run_dir = Path("/run/munge")
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(run_dir, "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.is_file():
        subprocess.run(["mungekey", "--create"], check=True, capture_output=True)
        shutil.chown(key, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, capture_output=True)
    for _ in range(50):
        if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise Unavailable("munged does not answer")


@dataclass
class Job:
    """One job's state as ``scontrol show job`` gives it (``state`` e.g. ``COMPLETED``,
    ``exit_code`` the ``ExitCode`` field ``"status:signal"``)."""

    id: str
    state: str
    exit_code: str
    restarts: int
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class Cluster:
    """The private cluster rooted at ``root``; :meth:`start` it, :meth:`stop` it."""

    root: Path
    cpus: int = 8  # more than the machine's cores: tasks share them (no binding)
    memory_mb: int = 8000
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment in which SLURM's client commands talk to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @property
    def completions(self) -> Path:
        return self.root / "jobcomp.txt"

    def write_conf(self) -> None:
        host = socket.gethostname()
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        ctl, slurmd = free_port(), free_port()
        self.conf.write_text(
            f"""ClusterName=equissltest
SlurmctldHost={host}
SlurmctldPort={ctl}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=15
CredType=cred/munge
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.root / "slurmctld.pid"}
SlurmdPidFile={self.root / "slurmd.pid"}
SlurmctldLogFile={self.root / "log" / "slurmctld.log"}
SlurmdLogFile={self.root / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
JobRequeue=1
ReturnToService=2
MpiDefault=none
SlurmdParameters=config_overrides
JobCompType=jobcomp/filetxt
JobCompLoc={self.completions}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=3600
KillWait=30
NodeName={host} CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""
        )

    def start(self, timeout: float = 60) -> None:
        ensure_installed()
        ensure_munge()
        self.write_conf()
        for daemon in ("slurmctld", "slurmd"):
            log = open(self.root / "log" / f"{daemon}.out", "ab")
            self.procs.append(
                subprocess.Popen(
                    [f"/usr/sbin/{daemon}", "-D", "-f", str(self.conf)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                )
            )
            if daemon == "slurmctld":
                self._wait(
                    lambda: self.cmd("scontrol", "ping").returncode == 0, timeout, "slurmctld"
                )
        self._wait(self._node_idle, timeout, "the node to become idle")

    def _node_idle(self) -> bool:
        res = self.cmd("sinfo", "-h", "-o", "%T")
        return res.returncode == 0 and res.stdout.strip() in ("idle", "mixed", "allocated")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for p in self.procs:
                if p.poll() is not None:
                    raise Unavailable(f"{p.args[0]} exited {p.returncode}: {self.logs()}")
            if time.monotonic() > deadline:
                raise Unavailable(f"timed out waiting for {what}: {self.logs()}")
            time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((self.root / "log").glob("*"))
        )

    def stop(self) -> None:
        if self.procs:
            self.cmd("scancel", "--full", "-u", "root")
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()

    def cmd(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env, **kw)

    def sbatch(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
        """Submit; returns the job id (``<array id>`` for arrays)."""
        res = subprocess.run(
            ["sbatch", "--parsable", *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**self.env, **(env or {})},
        )
        assert res.returncode == 0, res.stderr
        return res.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> Job:
        res = self.cmd("scontrol", "show", "job", "-o", job_id)
        assert res.returncode == 0, res.stderr
        line = res.stdout.strip().splitlines()[0]
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        return Job(
            job_id, fields["JobState"], fields["ExitCode"], int(fields.get("Restarts", 0)), fields
        )

    def wait(self, job_id: str, states=FINAL, timeout: float = 600) -> Job:
        """Poll until the job is in one of ``states``. A requeued job waits the credential
        lifetime (``AuthInfo=cred_expire``, 15 s here, SLURM's default 120 s) before it
        starts again; released earlier, it fails with "Job credential revoked"."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.state in states:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job.state}: {self.logs()}"
            time.sleep(0.5)

    def cancel_all(self, timeout: float = 120) -> None:
        """Cancel every job and wait until the queue is empty."""
        self.cmd("scancel", "--full", "-u", "root")
        deadline = time.monotonic() + timeout
        while self.cmd("squeue", "-h").stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.5)

    def completion_records(self, job_id: str) -> list[dict[str, str]]:
        """The ``jobcomp/filetxt`` records of ``job_id`` (one per time the job ended)."""
        if not self.completions.is_file():
            return []
        out = []
        for line in self.completions.read_text().splitlines():
            rec = dict(re.findall(r"(\w+)=(\S*)", line))
            if rec.get("JobId") == job_id:
                out.append(rec)
        return out
