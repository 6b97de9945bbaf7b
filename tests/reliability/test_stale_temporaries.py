"""What a kill -9 leaves behind is cleaned by the command that owns it, and only what a
dead process left: live writers (other array tasks, other evaluations) keep theirs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from equissl.atomic import atomic_open, remove_stale_tmp
from equissl.eval.features import remove_dead_partials


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


HOST = socket.gethostname()


def test_temporary_names_carry_their_writer(tmp_path):
    with atomic_open(tmp_path / "x.bin") as f:
        (tmp,) = list(tmp_path.glob(".x.bin.*.tmp"))
        assert f".{HOST}-{os.getpid()}." in tmp.name
        f.write(b"1")
    assert (tmp_path / "x.bin").read_bytes() == b"1" and not list(tmp_path.glob(".*.tmp"))


def test_only_dead_writers_temporaries_are_removed(tmp_path):
    dead = tmp_path / f".a.npy.{HOST}-{dead_pid()}.k3j.tmp"
    live = tmp_path / f".b.npy.{HOST}-{os.getpid()}.k3j.tmp"
    other_host = tmp_path / ".c.npy.elsewhere-1.k3j.tmp"
    for p in (dead, live, other_host):
        p.write_bytes(b"partial")
    assert remove_stale_tmp(tmp_path, only_dead_writers=True) == [dead]
    assert live.exists() and other_host.exists()
    assert sorted(remove_stale_tmp(tmp_path)) == sorted([live, other_host])  # the one owner


def test_dead_partial_feature_folders_are_removed(tmp_path):
    dead = tmp_path / f".val_0123abcd.{HOST}-{dead_pid()}.x1y2"
    live = tmp_path / f".val_0123abcd.{HOST}-{os.getpid()}.x1y2"
    done = tmp_path / "val_0123abcd"
    for d in (dead, live, done):
        d.mkdir()
        (d / "part.npy").write_bytes(b"1" * 10)
    assert remove_dead_partials(tmp_path) == [dead]
    assert live.is_dir() and done.is_dir() and not dead.exists()


def test_packing_removes_shards_of_a_killed_task(iebench_tree, tmp_path):
    from equissl.datasets.packed import PackSettings, pack_chunk

    out = tmp_path / "packed"
    pack_chunk(iebench_tree, out, PackSettings(verify=False, num_chunks=2, chunk=0))
    killed = out / "packed" / f".train-00001-of-00002.bin.{HOST}-{dead_pid()}.zz.tmp"
    killed.write_bytes(b"x" * 100)
    running = out / "packed" / f".val-00001-of-00002.bin.{HOST}-{os.getpid()}.zz.tmp"
    running.write_bytes(b"x" * 100)
    pack_chunk(iebench_tree, out, PackSettings(verify=False, num_chunks=2, chunk=1))
    assert not killed.exists() and running.exists()
    assert (out / "packed.json").is_file()
