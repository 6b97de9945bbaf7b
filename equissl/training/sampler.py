"""The resumable training loader: seeded per-epoch order, rank shards, exact mid-epoch resume.

Order: epoch ``e`` visits ``randperm(N)`` drawn from ``derive_seed(seed, e)``; rank ``r`` of
``W`` takes ``perm[: (N // W) * W][r::W]`` (DistributedSampler semantics with
``drop_last=True``), then full batches only (``drop_last=True``). Each yielded key is
``(index, derive_seed(seed, e, index))`` so the item's random choices depend on nothing else
(:mod:`equissl.datasets.keys`).

Position: the loader counts the batches it has *handed to the training loop* in the current
epoch. Lightning's fetcher does not prefetch from a loader with a length, so this is the
number of batches trained on, whatever the workers prefetched. Lightning saves
``state_dict()`` in the checkpoint because the loader is stateful (where:
:func:`equissl.lightning_compat.checkpoint_loader_states`), and restores it before creating
the iterator (:func:`equissl.lightning_compat.apply_restored_loader_state` where Lightning
would not), so a resumed run continues with the next batch of the same permutation.

Loader workers are restarted every epoch (``persistent_workers=False``) and seeded from
``(seed, epoch, rank, worker)`` for any residual use of the global RNGs; this costs one
worker start per epoch. ``speed.persistent_workers=true`` keeps them: the items are the same
(their randomness comes from the sample keys), only the global RNGs of a worker keep their
first epoch's seeds.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from equissl.datasets.keys import derive_seed
from equissl.speed import PLAIN, loader_options

log = logging.getLogger(__name__)

# Separates the seed streams of the permutation, the samples, the workers and torch's
# DataLoader base seed, which are all derived from the run's one seed.
_PERM, _WORKER, _LOADER = 1, 2, 3


def check_rank_share(num_items: int, world_size: int, batch_size: int) -> None:
    """Fail unless every rank's share of the training set holds one per-device batch.

    Raises:
        ValueError: naming the objects, the ranks and the per-device batch.
    """
    share = num_items // max(1, world_size)
    if share < batch_size:
        raise ValueError(
            f"the training set has {num_items} objects; split over {world_size} rank(s) each "
            f"rank gets {share}, fewer than the per-device batch data.batch_size={batch_size}, "
            f"so no rank would train on a single batch. Lower data.batch_size or "
            f"trainer.devices/trainer.num_nodes (needs {world_size * batch_size} objects)"
        )


class ResumableSampler(Sampler[tuple[int, int]]):
    """Seeded per-epoch permutation, this rank's stride of it, from a batch offset.

    Args:
        num_items: size ``N`` of the dataset.
        batch_size: per-device batch (the offset is counted in whole batches).
        seed: the run's seed.
        rank, world_size: this process's global rank and the number of ranks.

    Yields ``(index, sample_seed)`` keys. ``consumed`` (batches of ``epoch`` already trained
    on) is advanced by :class:`ResumableLoader`.
    """

    def __init__(
        self, num_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        check_rank_share(num_items, world_size, batch_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.per_rank = self.num_items // self.world_size
        self.epoch = 0
        self.consumed = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.per_rank // self.batch_size

    def __len__(self) -> int:
        return self.per_rank

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch; a new epoch starts at its first batch."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self.consumed = 0

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's ``[N // W]`` dataset indices of ``epoch``, in visiting order."""
        gen = torch.Generator().manual_seed(derive_seed(self.seed, _PERM, epoch))
        perm = torch.randperm(self.num_items, generator=gen)
        return perm[: self.per_rank * self.world_size][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start = self.epoch, self.consumed * self.batch_size
        for index in self.indices(epoch)[start:].tolist():
            yield index, derive_seed(self.seed, epoch, index)

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "consumed": self.consumed,
            "seed": self.seed,
            "num_items": self.num_items,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position (the next batch of the same epoch's order).

        A position saved after an epoch's last batch means the next epoch's start. With a
        different dataset size or seed the saved order no longer exists: that is an error. A
        different batch or world size keeps the epoch and the number of samples seen
        globally (rounded down to whole batches): the run continues, not bit-exactly.
        """
        for key in ("seed", "num_items"):
            if int(state[key]) != getattr(self, key):
                raise ValueError(
                    f"the checkpoint's data order was made with {key}={state[key]} but this run "
                    f"has {key}={getattr(self, key)}; resume with the same data and seed"
                )
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        if (state["batch_size"], state["world_size"]) != (self.batch_size, self.world_size):
            seen = consumed * int(state["batch_size"]) * int(state["world_size"])
            consumed = seen // (self.batch_size * self.world_size)
            log.warning(
                "resuming with batch %d x %d ranks instead of %d x %d: the epoch continues "
                "after ~%d samples, not bit-exactly",
                self.batch_size,
                self.world_size,
                state["batch_size"],
                state["world_size"],
                seen,
            )
        if consumed >= self.batches_per_epoch:
            epoch, consumed = epoch + 1, 0
        self.epoch, self.consumed = epoch, consumed


class SeededWorkerInit:
    """``worker_init_fn``: one intra-op thread; global RNGs from (seed, epoch, rank, worker)."""

    def __init__(self, seed: int, epoch: int, rank: int) -> None:
        self.seed, self.epoch, self.rank = seed, epoch, rank

    def __call__(self, worker_id: int) -> None:
        # Workers decode and resize; intra-op threads there only fight the training step.
        torch.set_num_threads(1)
        s = derive_seed(self.seed, _WORKER, self.epoch, self.rank, worker_id)
        random.seed(s)
        np.random.seed(s % 2**32)
        torch.manual_seed(s)


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` that Lightning sees as stateful.

    ``state_dict()``/``load_state_dict()`` carry the sampler's epoch and the number of
    batches of that epoch handed out so far. ``len()`` is the full epoch (Lightning adds the
    batches already trained on when it resumes mid-epoch).
    """

    sampler: ResumableSampler

    def __init__(
        self,
        dataset: Dataset,
        sampler: ResumableSampler,
        num_workers: int,
        pin_memory: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=sampler.batch_size,
            sampler=sampler,
            drop_last=True,  # batch statistics (variance, covariance) need full batches
            num_workers=num_workers,
            pin_memory=pin_memory,
            worker_init_fn=SeededWorkerInit(sampler.seed, sampler.epoch, sampler.rank),
            generator=torch.Generator(),
            **{"persistent_workers": False, **options},  # default: restarted every epoch
        )

    def __iter__(self) -> Iterator[Any]:
        s = self.sampler
        # Without these, torch draws the workers' base seed from the global RNG.
        self.generator = torch.Generator().manual_seed(
            derive_seed(s.seed, _LOADER, s.epoch, s.rank)
        )
        self.worker_init_fn = SeededWorkerInit(s.seed, s.epoch, s.rank)
        for batch in super().__iter__():
            s.consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)


def build_train_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    speed: dict[str, Any] | None = None,
) -> ResumableLoader:
    """The training loader of the SSL stage (what ``PretrainDataModule`` returns).

    Args:
        dataset: map-style dataset accepting ``(index, sample_seed)`` keys.
        batch_size: per-device batch.
        num_workers: loader worker processes (0: load in the training process).
        seed: the run's seed; with the epoch it fixes order and per-sample randomness.
        rank, world_size: global rank and number of ranks; each takes its stride of the
            epoch's permutation (the Trainer must run with ``use_distributed_sampler=False``).
        speed: the run's ``speed`` section (pin_memory, prefetch_factor,
            persistent_workers; :func:`equissl.speed.loader_options`).
    """
    sampler = ResumableSampler(len(dataset), batch_size, seed, rank, world_size)
    options = loader_options({**PLAIN, **(speed or {})}, num_workers)
    return ResumableLoader(dataset, sampler, num_workers, **options)
