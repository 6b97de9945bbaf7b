"""Resume is exact: killed (SIGKILL) or stopped mid-epoch, the same command ends bitwise equal
to an uninterrupted run (parameters, Adam moments, per-step losses), on CPU."""

# ft_tree and reference are fixtures imported from ft_helpers, then requested by name.
# ruff: noqa: F811

import os
import random
import signal

import pytest
import torch
from ft_helpers import (  # noqa: F401
    REFERENCE_STEPS,
    assert_same_state,
    compose_pretrain,
    fast_args,
    ft_tree,
    reference,
    run,
    run_dir,
    start,
    wait_for_steps,
)

from equissl.checkpointing import load_checkpoint
from equissl.lightning_compat import checkpoint_loader_states
from equissl.training.pretrain import pretrain


def assert_matches_reference(reference, run):
    assert_same_state(reference / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    losses = (reference / "step_losses.jsonl").read_text()
    assert losses == (run / "step_losses.jsonl").read_text()
    assert len(losses.splitlines()) == REFERENCE_STEPS


@pytest.mark.e2e
def test_kill9_at_a_random_step_then_same_command_is_bitwise_equal(ft_tree, reference, tmp_path):
    # The reference ran in-process, this one as the console script: same numbers expected.
    args = fast_args(ft_tree, REFERENCE_STEPS, "checkpoint.every_n_steps=1")
    kill_at = random.Random().randint(2, REFERENCE_STEPS - 2)
    proc = start(args, tmp_path)
    wait_for_steps(proc, tmp_path, kill_at)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = load_checkpoint(run_dir(tmp_path) / "checkpoints" / "last.ckpt")["global_step"]
    assert 1 <= killed < REFERENCE_STEPS, f"killed at step {kill_at}, checkpoint at {killed}"

    again = run(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Restored all states" in again.stdout + again.stderr
    assert_matches_reference(reference, run_dir(tmp_path))
    assert not list(run_dir(tmp_path).rglob(".*.tmp"))


@pytest.mark.parametrize(
    "stop, workers, position",
    [(3, 2, (0, 3)), (4, 0, (0, 4))],  # 4 batches per epoch: mid-epoch, and after the last
    ids=["mid-epoch-2-workers", "epoch-end-0-workers"],
)
def test_stop_and_resume_matches_uninterrupted(
    ft_tree, reference, tmp_path, stop, workers, position
):
    # The reference loads in-process (0 workers): the data order and each item's views must
    # not depend on the worker count either.
    def cfg(steps):
        return compose_pretrain(
            fast_args(ft_tree, steps, f"data.num_workers={workers}", "checkpoint.every_n_steps=0")
        )

    state = load_checkpoint(pretrain(cfg(stop), tmp_path))
    assert state["global_step"] == stop
    loader = checkpoint_loader_states(state)[0]
    assert (loader["epoch"], loader["consumed"]) == position
    pretrain(cfg(REFERENCE_STEPS), tmp_path)
    assert_matches_reference(reference, tmp_path)


def test_items_depend_on_the_key_only(ft_tree):
    from equissl.datasets.iebench import IEBenchDataset
    from equissl.datasets.keys import derive_seed

    ds = IEBenchDataset(ft_tree, num_views=2, image_size=32)
    key = (3, derive_seed(0, 1, 3))
    first = ds[key]["views"]
    torch.manual_seed(123)  # process history must not matter
    assert torch.equal(ds[key]["views"], first)
    assert not all(torch.equal(ds[(3, derive_seed(0, e, 3))]["views"], first) for e in range(2, 6))


def test_global_rng_states_survive_a_weights_only_checkpoint(reference, tmp_path):
    # Our datasets and loader never touch the global RNGs, so the resume tests above cannot
    # see this; any other user of them (a transform, a loss) relies on it.
    import numpy as np

    from equissl.training.checkpoints import RNG_KEY, collect_rng_states, set_rng_states

    assert RNG_KEY in load_checkpoint(reference / "checkpoints" / "last.ckpt")
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(collect_rng_states(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])
