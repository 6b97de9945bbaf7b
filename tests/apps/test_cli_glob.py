"""``equissl-evaluate -m 'checkpoint=runs/*/last.ckpt'``: the pattern is expanded into a
Hydra sweep before Hydra parses the overrides."""

from __future__ import annotations

import sys

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from equissl.apps import cli
from equissl.apps.cli import expand_checkpoint_glob, hydra_quoted


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """``runs/{b,a,odd,2}/last.ckpt`` (unsorted, one name with a comma), a directory that
    matches too, and a non-checkpoint file; cwd at tmp_path."""
    for name in ("b", "a", "odd, name", "2"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "last.ckpt").write_bytes(b"x")
    (tmp_path / "runs" / "a" / "notes.txt").write_text("-")
    (tmp_path / "runs" / "dir.ckpt").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def sweep_values(argv: list[str]) -> list[str]:
    """The checkpoint value of each job, as Hydra's basic sweeper makes them: one override
    string per swept value, each parsed again by the job."""
    parser = OverridesParser.create()
    (override,) = parser.parse_overrides([a for a in argv if a.startswith("checkpoint=")])
    jobs = [f"checkpoint={v}" for v in override.sweep_string_iterator()]
    return [parser.parse_override(job).value() for job in jobs]


def test_pattern_becomes_a_sorted_sweep_hydra_parses(runs):
    argv = ["-m", "checkpoint=runs/*/last.ckpt", "probe=[rotation]"]
    out = expand_checkpoint_glob(argv)
    assert out[0] == "-m" and out[2] == "probe=[rotation]"
    assert sweep_values(out) == [f"runs/{n}/last.ckpt" for n in ("2", "a", "b", "odd, name")]


def test_hydra_style_glob_recursive_patterns_and_files_only(runs):
    out = expand_checkpoint_glob(["--multirun", "checkpoint=glob(runs/**/*.ckpt)"])
    assert len(sweep_values(out)) == 4  # runs/dir.ckpt is a directory: left out
    one = expand_checkpoint_glob(["checkpoint=runs/[a]/last.ckpt"])
    assert one == ["checkpoint=runs/a/last.ckpt"]  # one match needs no -m


def test_plain_values_and_other_overrides_pass_through(runs):
    argv = ["checkpoint=runs/a/last.ckpt", "data_root=data/*", "eval.probes.x.k=1"]
    assert expand_checkpoint_glob(argv) == argv
    (runs / "runs" / "[x]").mkdir()
    (runs / "runs" / "[x]" / "last.ckpt").write_bytes(b"x")  # glob characters in a real name
    assert expand_checkpoint_glob(["checkpoint=runs/[x]/last.ckpt"]) == [
        "checkpoint=runs/[x]/last.ckpt"
    ]


def test_no_match_and_several_without_multirun_fail_clearly(runs):
    with pytest.raises(ValueError, match="matches no file"):
        expand_checkpoint_glob(["-m", "checkpoint=nowhere/*/last.ckpt"])
    with pytest.raises(ValueError, match="matches 4 checkpoints; add -m"):
        expand_checkpoint_glob(["checkpoint=runs/*/last.ckpt"])


@pytest.mark.parametrize(
    "value", ["a/b.ckpt", "run,2/l.ckpt", " lead", "it's/x", "b\\s/x", "end\\", "1.5", "true"]
)
def test_hydra_quoted_reads_back_as_the_same_string(value):
    override = OverridesParser.create().parse_override(f"checkpoint={hydra_quoted(value)}")
    assert override.value() == value


def test_evaluate_entry_point_reports_an_empty_pattern(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["equissl-evaluate", "-m", "checkpoint=none/*/last.ckpt"])
    with pytest.raises(SystemExit) as exit_:
        cli.evaluate()  # stops before Hydra starts
    assert str(exit_.value.code) == (
        "equissl-evaluate: checkpoint=none/*/last.ckpt: the pattern matches no file"
    )
