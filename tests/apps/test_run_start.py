"""A refused command takes back what its Hydra start wrote, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from equissl.apps import run_start


@pytest.fixture(autouse=True)
def _fresh_notes(monkeypatch):
    monkeypatch.setattr(run_start, "_BEFORE", {})


def hydra_start(folder: Path, log: str = "pretrain.log") -> None:
    """What Hydra writes before the job runs."""
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / ".hydra" / "config.yaml").write_text("seed: 5\n")
    with open(folder / log, "a") as f:
        f.write("refused\n")


def test_a_new_folder_and_its_new_parents_are_removed(tmp_path):
    folder = tmp_path / "outputs" / "pretrain" / "run"
    run_start.note(folder, None)
    hydra_start(folder)
    run_start.take_back(folder, None)
    assert list(tmp_path.iterdir()) == []


def test_a_new_folder_with_other_files_is_kept(tmp_path):
    folder = tmp_path / "run"
    run_start.note(folder, None)
    hydra_start(folder)
    (folder / "checkpoints").mkdir()
    run_start.take_back(folder, None)
    assert (folder / "checkpoints").is_dir() and (folder / ".hydra").is_dir()


def test_an_existing_run_gets_its_record_back_and_its_log_only_grows(tmp_path):
    folder = tmp_path / "run"
    hydra_start(folder)
    (folder / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (folder / "pretrain.log").write_text("trained\n")
    (folder / "notes.txt").write_text("mine\n")
    run_start.note(folder, None)
    hydra_start(folder)
    run_start.take_back(folder, None)
    assert (folder / ".hydra" / "config.yaml").read_text() == "seed: 0\n"
    assert (folder / "pretrain.log").read_text() == "trained\nrefused\n"
    assert (folder / "notes.txt").read_text() == "mine\n"


def test_a_users_folder_loses_only_what_the_command_added(tmp_path):
    folder = tmp_path / "notes"
    (folder / "old.log").mkdir(parents=True)
    (folder / "train.log").write_text("notes\n")
    run_start.note(folder, None)
    hydra_start(folder, log="evaluate.log")
    run_start.take_back(folder, None)
    assert sorted(p.name for p in folder.iterdir()) == ["old.log", "train.log"]
    assert (folder / "train.log").read_text() == "notes\n"


def test_a_job_folder_inside_a_new_sweep_folder_is_new(tmp_path):
    sweep = tmp_path / "multirun"
    run_start.note_sweep(sweep, None)
    job = sweep / "vicreg_3diebench_1234abcd"
    hydra_start(job)
    assert run_start.made_by_this_command(job)
    run_start.take_back(job, None)
    assert not job.exists() and sweep.is_dir()  # the sweep folder serves other jobs


def test_an_unnoted_folder_is_left_alone(tmp_path):
    folder = tmp_path / "run"
    hydra_start(folder)
    run_start.take_back(folder, None)
    assert (folder / ".hydra" / "config.yaml").is_file()


@pytest.mark.parametrize(
    ("error", "taken_back"),
    [(SystemExit(1), True), (SystemExit(75), False), (ValueError("x"), True)],
)
def test_only_refusals_are_taken_back(tmp_path, error, taken_back):
    folder = tmp_path / "run"
    run_start.note(folder, None)
    hydra_start(folder)
    refused = lambda err: not isinstance(err, SystemExit) or err.code == 1  # noqa: E731
    with pytest.raises(type(error)):
        with run_start.taken_back_if_refused(lambda: (str(folder), None), refused):
            raise error
    assert folder.exists() is not taken_back
