"""A resume that changes a result-changing setting is refused (naming old -> new) unless the
key is allowed; an allowed change reaches the optimizer and the run's history."""

from __future__ import annotations

import hashlib
import json

import pytest

from equissl.checkpointing import CheckpointError, load_checkpoint
from equissl.config import is_result_key
from equissl.training.pretrain import pretrain
from equissl.training.resume import HISTORY_FILE, ResumeMismatch, check_resume, result_changes
from tests.conftest import TOY, compose_pretrain

STORED = {
    "method": {"optim": {"lr": 1e-3, "weight_decay": 1e-6}, "name": "toy"},
    "trainer": {"max_steps": 10, "enable_progress_bar": True},
    "logger": {"name": "csv"},
    "seed": 0,
}


def changed(**edits):
    new = json.loads(json.dumps(STORED))
    for key, value in edits.items():
        section, *rest = key.split("__")
        node = new[section]
        for k in rest[:-1]:
            node = node[k]
        node[rest[-1]] = value
    return new


def test_budget_progress_and_logging_are_not_result_keys():
    assert not is_result_key("trainer.max_steps") and not is_result_key("logger.name")
    assert not is_result_key("eval.probes.rotation.epochs") and is_result_key("method.optim.lr")
    new = changed(trainer__max_steps=20, trainer__enable_progress_bar=False, logger__name="none")
    assert result_changes(STORED, new) == {}


def test_a_changed_lr_is_refused_naming_old_and_new():
    with pytest.raises(ResumeMismatch) as err:
        check_resume("run/last.ckpt", STORED, changed(method__optim__lr=0.5) | {"seed": 3})
    message = str(err.value)
    assert "method.optim.lr: 0.001 -> 0.5" in message and "seed: 0 -> 3" in message
    assert "resume_allow=[method.optim.lr,seed]" in message and "run/last.ckpt" in message


def test_allowed_keys_pass_and_are_returned():
    new = changed(method__optim__lr=0.5) | {"resume_allow": ["method.optim"]}
    assert check_resume("x", STORED, new) == {"method.optim.lr": (1e-3, 0.5)}


def sha(path):
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_pretrain_refuses_then_applies_an_allowed_lr_change(iebench_tree, tmp_path):
    base = [f"data.root={iebench_tree}", *TOY]
    run = tmp_path / "run"
    last = pretrain(compose_pretrain([*base, "trainer.max_steps=2"]), run)
    before = sha(last)
    edited = compose_pretrain([*base, "trainer.max_steps=4", "method.optim.lr=0.5"])
    with pytest.raises(ResumeMismatch, match=r"method.optim.lr: 0.001 -> 0.5"):
        pretrain(edited, run)
    assert sha(last) == before  # the checkpoint was not touched
    allowed = compose_pretrain(
        [*base, "trainer.max_steps=4", "method.optim.lr=0.5", "resume_allow=[method.optim.lr]"]
    )
    ckpt = load_checkpoint(pretrain(allowed, run))
    assert ckpt["global_step"] == 4
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.5)
    assert ckpt["equissl"]["config"]["method"]["optim"]["lr"] == 0.5
    history = [json.loads(line) for line in (run / HISTORY_FILE).read_text().splitlines()]
    assert history[-1]["changes"] == {"method.optim.lr": [0.001, 0.5]}
    assert history[-1]["step"] == 2


def test_the_first_line_says_new_run_or_resuming_with_the_step(iebench_tree, tmp_path, caplog):
    import logging

    base = [f"data.root={iebench_tree}", *TOY]
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="equissl.training.pretrain"):
        pretrain(compose_pretrain([*base, "trainer.max_steps=1"]), run)
    first = [r.getMessage() for r in caplog.records if r.name == "equissl.training.pretrain"]
    assert first[0] == f"new run at {run}"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="equissl.training.pretrain"):
        pretrain(compose_pretrain([*base, "trainer.max_steps=2"]), run)
    first = [r.getMessage() for r in caplog.records if r.name == "equissl.training.pretrain"]
    assert first[0] == f"resuming from {run / 'checkpoints' / 'last.ckpt'} (step 1) in {run}"


def test_an_allowed_lr_change_reaches_the_schedule(iebench_tree, tmp_path):
    """With a schedule, the new lr becomes its base rate and the rate now in force is the
    new lr times the schedule's factor at the restored step."""
    base = [
        f"data.root={iebench_tree}",
        *TOY,
        "method.optim.scheduler=warmup_constant",
        "method.optim.warmup_steps=10",
    ]
    run = tmp_path / "run"
    pretrain(compose_pretrain([*base, "trainer.max_steps=2"]), run)
    ckpt = load_checkpoint(
        pretrain(
            compose_pretrain(
                [*base, "trainer.max_steps=4", "method.optim.lr=0.5", "resume_allow=[method.optim]"]
            ),
            run,
        )
    )
    schedule = ckpt["lr_schedulers"][0]
    assert schedule["base_lrs"] == [0.5]
    lr = ckpt["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.5 * (schedule["last_epoch"] + 1) / 10)  # warm-up factor


def test_resuming_with_another_method_names_it_before_loading_weights(iebench_tree, tmp_path):
    """SIE's checkpoint resumed as VICReg: the method change is named (not a raw
    load_state_dict error); allowed anyway, the weights that do not fit are named."""
    toy = [o for o in TOY if not o.startswith("method")]
    base = [f"data.root={iebench_tree}", *toy, "method.projector=[16,16]"]
    run = tmp_path / "run"
    last = pretrain(
        compose_pretrain([*base, "method=sie", "method.inv_dim=8", "trainer.max_steps=1"]), run
    )
    before = sha(last)
    vicreg = [*base, "method=vicreg", "trainer.max_steps=2"]
    with pytest.raises(ResumeMismatch, match=r"method.name: 'sie' -> 'vicreg'"):
        pretrain(compose_pretrain(vicreg), run)
    with pytest.raises(CheckpointError, match=r"holds a method=sie .*builds method=vicreg"):
        pretrain(compose_pretrain([*vicreg, "resume_allow=[method]"]), run)
    assert sha(last) == before
