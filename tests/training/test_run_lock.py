"""One process per run directory: the lock names its holder; stale and requeued holders are
taken over; a live one stops the second command before it touches the run."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from equissl.training import run_lock
from equissl.training.pretrain import pretrain
from equissl.training.run_lock import LOCK_FILE, RunDirLocked, acquire, release


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def write_lock(run_dir, **holder):
    run_dir.mkdir(parents=True, exist_ok=True)
    base = {"host": socket.gethostname(), "pid": 1, "slurm_job_id": None, "started": "earlier"}
    (run_dir / LOCK_FILE).write_text(json.dumps({**base, **holder}))


def test_acquire_names_this_process_and_release_removes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    path = acquire(tmp_path / "run")
    holder = json.loads(path.read_text())
    assert holder["pid"] == os.getpid() and holder["slurm_job_id"] == "4242"
    assert holder["host"] == socket.gethostname()
    release(path)
    assert not path.exists()


def test_a_live_holder_on_this_host_stops_the_second(tmp_path, live_pid):
    write_lock(tmp_path, pid=live_pid)
    before = (tmp_path / LOCK_FILE).read_text()
    with pytest.raises(RunDirLocked, match=f"pid {live_pid}") as err:
        acquire(tmp_path)
    assert str(tmp_path / LOCK_FILE) in str(err.value)
    assert (tmp_path / LOCK_FILE).read_text() == before


def test_a_dead_holder_on_this_host_is_taken_over(tmp_path, caplog):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    write_lock(tmp_path, pid=proc.pid)
    with caplog.at_level(logging.WARNING, logger=run_lock.__name__):
        path = acquire(tmp_path)
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert "no longer running" in caplog.text


def test_a_requeued_attempt_of_the_same_slurm_job_takes_over(tmp_path, monkeypatch, live_pid):
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    write_lock(tmp_path, host="node-a", pid=live_pid, slurm_job_id="777")
    assert json.loads(acquire(tmp_path).read_text())["pid"] == os.getpid()


def test_another_slurm_job_or_host_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "778")
    write_lock(tmp_path, host="node-a", pid=123, slurm_job_id="777")
    with pytest.raises(RunDirLocked, match="SLURM job 777"):
        acquire(tmp_path)
    monkeypatch.delenv("SLURM_JOB_ID")
    write_lock(tmp_path, host="node-b", pid=123)
    with pytest.raises(RunDirLocked, match="node-b"):
        acquire(tmp_path)


def test_an_unreadable_old_lock_is_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text("{half")
    os.utime(tmp_path / LOCK_FILE, (0, 0))  # written long ago
    assert json.loads(acquire(tmp_path).read_text())["pid"] == os.getpid()


def test_release_leaves_someone_elses_lock(tmp_path, live_pid):
    write_lock(tmp_path, pid=live_pid)
    release(tmp_path / LOCK_FILE)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == live_pid


def test_pretrain_refuses_a_locked_run_before_touching_it(tmp_path, live_pid):
    run = tmp_path / "run"
    write_lock(run, pid=live_pid)
    (run / "checkpoints").mkdir()
    tmp = run / "checkpoints" / ".last.ckpt.abc.tmp"  # the holder's checkpoint being written
    tmp.write_bytes(b"partial")
    with pytest.raises(RunDirLocked):
        pretrain({}, run)  # refused before the config is even read
    assert tmp.read_bytes() == b"partial"
