"""Atomic writes: umask permissions (not mkstemp's 0600); stale temporaries removed at start-up."""

import os
import stat

import pytest
from ft_helpers import compose_pretrain, fast_args

from equissl.atomic import atomic_write_text, remove_stale_tmp
from equissl.training.pretrain import pretrain


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    out = tmp_path / "results.json"
    atomic_write_text(out, "{}")
    assert mode(out) == expected
    atomic_write_text(out, "{} ")  # replacing keeps the umask's mode too
    assert mode(out) == expected


def test_remove_stale_tmp_only_removes_atomic_temporaries(tmp_path):
    stale = tmp_path / ".last.ckpt.k3j2_x9a.tmp"
    keep = [tmp_path / "last.ckpt", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for p in [stale, *keep]:
        p.write_text("x")
    assert remove_stale_tmp(tmp_path) == [stale]
    assert not stale.exists() and all(p.exists() for p in keep)
    assert remove_stale_tmp(tmp_path / "missing") == []


def test_startup_removes_stale_tmp_and_checkpoint_is_world_readable(iebench_tree, tmp_path, umask):
    run = tmp_path / "run"
    stale = run / "checkpoints" / ".last.ckpt.abcd1234.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a checkpoint")
    last = pretrain(compose_pretrain(fast_args(iebench_tree, 1)), run)
    assert not stale.exists()
    assert not list(run.rglob(".*.tmp"))
    assert mode(last) == 0o644


def test_exclusive_creation_never_replaces_and_leaves_no_temporary(tmp_path):
    from equissl.atomic import atomic_create_text

    target = tmp_path / "record.json"
    assert atomic_create_text(target, "first")
    assert not atomic_create_text(target, "second")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]
