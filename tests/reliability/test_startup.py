"""Start-up sanity: every rank's share of the training set holds one per-device batch."""

import pytest
from ft_helpers import fast_args, run

from equissl.training.sampler import ResumableSampler, check_rank_share


def test_rank_share_check_names_the_numbers():
    check_rank_share(9, 2, 4)  # 4 objects per rank: one batch each
    with pytest.raises(ValueError, match=r"9 objects.*3 rank\(s\).*gets 3.*batch_size=4"):
        check_rank_share(9, 3, 4)
    with pytest.raises(ValueError, match="batch_size=10"):
        ResumableSampler(9, batch_size=10, seed=0)


@pytest.mark.e2e
def test_three_devices_on_a_small_set_fail_before_training(iebench_tree, tmp_path):
    res = run(
        [
            *fast_args(iebench_tree, 2),
            "data.batch_size=4",
            "trainer.devices=3",
            "trainer.strategy=ddp",
        ],
        tmp_path,
    )
    assert res.returncode != 0
    assert "9 objects" in res.stderr and "3 rank(s)" in res.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


def test_ranks_take_disjoint_strides_of_one_permutation():
    shards = [ResumableSampler(11, 2, seed=5, rank=r, world_size=3) for r in range(3)]
    for s in shards:
        s.set_epoch(1)
    idx = [[i for i, _ in s] for s in shards]
    assert all(len(x) == 3 for x in idx)  # 11 // 3, like DistributedSampler(drop_last=True)
    flat = sum(idx, [])
    assert len(set(flat)) == 9
    perm = shards[0].indices(1)  # rank 0's stride
    assert perm.tolist() == idx[0]
    # a different epoch reorders, the same epoch repeats
    assert [i for i, _ in shards[0]] == idx[0]
    shards[0].set_epoch(2)
    assert [i for i, _ in shards[0]] != idx[0]


def test_sampler_resumes_after_consumed_batches():
    s = ResumableSampler(10, batch_size=2, seed=0)
    s.set_epoch(3)
    full = list(s)
    s.consumed = 2
    state = s.state_dict()
    t = ResumableSampler(10, batch_size=2, seed=0)
    t.load_state_dict(state)
    assert (t.epoch, t.consumed) == (3, 2) and list(t) == full[4:]
    t.set_epoch(3)  # Lightning re-announcing the epoch keeps the position
    assert list(t) == full[4:]
    state["consumed"] = 5  # after the epoch's last batch: the next epoch starts
    t.load_state_dict(state)
    assert (t.epoch, t.consumed) == (4, 0)
    with pytest.raises(ValueError, match="seed=0"):
        ResumableSampler(10, batch_size=2, seed=1).load_state_dict(state)
