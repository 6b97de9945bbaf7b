"""What the commands do before Hydra: help without the heavy stack, options and paths named
with a fix, equissl's own errors in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from equissl.apps.command_line import (
    check_checkpoint_paths,
    check_choices,
    command_help,
    short_errors,
)


@pytest.mark.parametrize("command", ["pretrain", "evaluate"])
def test_help_imports_neither_torch_nor_lightning(command):
    code = (
        "import sys\n"
        f"from equissl.apps.cli import {command}\n"
        f"sys.argv = ['equissl-{command}', '--help']\n"
        f"{command}()\n"
        "heavy = [m for m in ('torch', 'lightning') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"equissl-{command}:" in res.stdout and "Examples:" in res.stdout
    examples = [line for line in res.stdout.splitlines() if line.startswith("  equissl-")]
    assert len(examples) == 5
    assert "_schema" not in res.stdout  # internal schemas are not options


def test_help_lists_the_shipped_options():
    text = command_help("pretrain")
    assert "sie" in text and "quickstart" in text and "cpu/sie_3diebench" in text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["method=sei"], "did you mean sie"),
        (["data=3diebnch"], "did you mean 3diebench"),
        (["-m", "method=sie,vicrge"], "'vicrge'"),
        (["probe=[rotation,clasification]"], "did you mean classification"),
        (["experiment=cpu/sie_3diebnch"], "cpu/sie_3diebench"),
        (["trainer=gpus"], "did you mean gpu"),
    ],
)
def test_unknown_options_are_named_with_a_suggestion(argv, expected):
    message = check_choices(argv)
    assert message is not None and expected in message


@pytest.mark.parametrize(
    "argv",
    [
        ["method=sie", "data=pde_kdv", "trainer=cpu", "probe=[rotation,knn]"],
        ["method.optim.lr=0.1", "experiment=cpu/sie_3diebench", "method=toy_schema"],
        ["method=mine", "hydra.searchpath=[file:///tmp/conf]"],  # Hydra checks those
    ],
)
def test_known_options_pass(argv):
    assert check_choices(argv) is None


def test_missing_checkpoint_is_named_with_the_nearest_file(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert check_checkpoint_paths([f"checkpoint={tmp_path}/checkpoints/last.ckpt"]) is None
    message = check_checkpoint_paths([f"checkpoint={tmp_path}/checkpoints/lats.ckpt"])
    assert "no such file" in message and "last.ckpt" in message
    message = check_checkpoint_paths([f"checkpoint={tmp_path}"])
    assert "folder" in message and str(tmp_path / "checkpoints" / "last.ckpt") in message


def test_equissl_errors_print_one_line_and_others_keep_the_traceback(capsys, monkeypatch, tmp_path):
    from equissl.output_folder import claim_output

    afile = tmp_path / "a_file"
    afile.write_text("x")

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as stop, short_errors("equissl-x"):
        claim_output(afile, afile / "rec.json", {}, "a dataset")
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("equissl-x: error: ") and "Traceback" not in err
    with pytest.raises(ZeroDivisionError), short_errors("equissl-x"):
        1 / 0  # noqa: B018 (not equissl's own error: propagates)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ValueError), short_errors("equissl-x"):
        claim_output(afile, afile / "rec.json", {}, "a dataset")


@pytest.mark.e2e
def test_cfg_job_ends_with_the_run_folder_it_would_use(tmp_path):
    """``--cfg job`` prints the config and stops; its last line names the run folder, the
    same folder the run then uses (a YAML comment, so the output still parses)."""
    import yaml

    argv = ["--cfg", "job", "method=vicreg", "method.optim.lr=0.1", "trainer.max_steps=3"]
    code = "from equissl.apps.cli import pretrain\npretrain()"
    res = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    last = res.stdout.strip().splitlines()[-1]
    assert last == "# run folder: outputs/pretrain/vicreg_3diebench_lr-0.1_1947e84d (new)"
    assert yaml.safe_load(res.stdout)["method"]["optim"]["lr"] == 0.1
    (tmp_path / "outputs/pretrain/vicreg_3diebench_lr-0.1_1947e84d").mkdir(parents=True)
    res = subprocess.run(
        [sys.executable, "-c", code, "-c", "job", *argv[2:]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.stdout.strip().endswith("lr-0.1_1947e84d (exists)"), res.stderr
