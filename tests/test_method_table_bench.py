"""``bench/method_table.py``'s budget continuation: which runs a longer budget may continue, and
the record that keeps the shorter run's seconds in the longer run's time (no training here)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import method_table  # noqa: E402


def finished_run(work: Path, method: str, steps: int, seconds: float, ckpt: bytes) -> Path:
    run_dir = work / method_table.run_name(method, 0, steps, [])
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(ckpt)
    (run_dir / "pretrain_done.json").write_text(json.dumps({"steps": steps, "seconds": seconds}))
    return run_dir


def test_budget_free_is_constant_lr_without_ema():
    assert method_table.budget_free(method_table.config_for("sie", 0, 20, []))
    # seq-JEPA's EMA τ follows a cosine over the whole run: its first s steps are not the
    # run of s steps
    assert not method_table.budget_free(method_table.config_for("seq_jepa", 0, 20, []))


def test_longer_budget_continues_the_longest_shorter_run_and_keeps_its_record(tmp_path):
    config = method_table.config_for("sie", 0, 30, [])
    finished_run(tmp_path, "sie", 10, 5.0, b"ten")
    longest = finished_run(tmp_path, "sie", 20, 9.0, b"twenty")
    finished_run(tmp_path, "sie", 40, 20.0, b"forty")  # longer than the new run: not used
    run_dir = tmp_path / method_table.run_name("sie", 0, 30, [])

    earlier = method_table.continue_shorter_run(tmp_path, "sie", 0, 30, [], config, run_dir)

    assert earlier == {"steps": 20, "seconds": 9.0, "run_dir": str(longest)}
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == b"twenty"
    # an interrupted continuation resumes from its own checkpoint; the record still says
    # what it continued, so its time keeps the shorter run's seconds
    assert method_table.continue_shorter_run(tmp_path, "sie", 0, 30, [], config, run_dir) is None
    assert method_table.continued_from(run_dir) == earlier


def test_no_continuation_without_a_finished_shorter_run_or_when_not_budget_free(tmp_path):
    unfinished = tmp_path / method_table.run_name("sie", 0, 10, []) / "checkpoints"
    unfinished.mkdir(parents=True)
    (unfinished / "last.ckpt").write_bytes(b"interrupted")  # no pretrain_done.json
    run_dir = tmp_path / method_table.run_name("sie", 0, 30, [])
    sie = method_table.config_for("sie", 0, 30, [])
    assert method_table.continue_shorter_run(tmp_path, "sie", 0, 30, [], sie, run_dir) is None

    finished_run(tmp_path, "seq_jepa", 10, 5.0, b"ten")
    seq_dir = tmp_path / method_table.run_name("seq_jepa", 0, 30, [])
    seq = method_table.config_for("seq_jepa", 0, 30, [])
    assert method_table.continue_shorter_run(tmp_path, "seq_jepa", 0, 30, [], seq, seq_dir) is None
    for d in (run_dir, seq_dir):
        assert not d.exists() and method_table.continued_from(d) is None
