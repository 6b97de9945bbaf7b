"""Extending a run: the budget is not part of the run directory, and a finished run continued
to a larger budget (same command, or ``resume_from=``) equals one trained that long at once."""

# ft_tree and reference are fixtures imported from ft_helpers, then requested by name.
# ruff: noqa: F811

from ft_helpers import (  # noqa: F401
    REFERENCE_STEPS,
    assert_same_state,
    compose_pretrain,
    fast_args,
    ft_tree,
    reference,
)

from equissl.apps.run_folder import run_hash, run_hash_all
from equissl.checkpointing import load_checkpoint
from equissl.training.pretrain import pretrain


def test_budget_and_checkpoint_cadence_are_not_hashed():
    base = ["method=sie", "data.root=/d"]
    h = run_hash([*base, "trainer.max_steps=100"])
    assert h == run_hash([*base, "trainer.max_steps=5000", "trainer.max_epochs=3"])
    assert h == run_hash([*base, "+checkpoint.every_n_steps=10"]) == run_hash(base)
    assert h != run_hash([*base, "seed=1"])
    # sweep jobs may differ only in budget: they keep separate directories
    assert run_hash_all([*base, "trainer.max_steps=1"]) != run_hash_all(base)


def test_finished_run_extended_equals_longer_run(ft_tree, reference, tmp_path):
    def cfg(steps, *extra):
        return compose_pretrain(fast_args(ft_tree, steps, *extra))

    longer = reference / "checkpoints" / "last.ckpt"
    short = pretrain(cfg(6), tmp_path / "run")  # finishes mid-epoch
    assert load_checkpoint(short)["global_step"] == 6
    extended = pretrain(cfg(REFERENCE_STEPS), tmp_path / "run")  # what the same command does
    assert_same_state(longer, extended)

    # a fresh run directory starting from another run's final state
    branched = pretrain(cfg(REFERENCE_STEPS, f"resume_from={short}"), tmp_path / "branch")
    assert_same_state(longer, branched)
