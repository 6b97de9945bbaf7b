"""What a damaged view met *during training* does: the ``data.on_error`` policy, never silent.

Start-up checks (:func:`~equissl.datasets.validate.check_split`) and ``equissl-validate``
catch what can be seen up front; a file can still stop decoding or vanish mid-run (a
JPEG overwritten, a latent deleted, a flaky network file system). Readers raise
:class:`~equissl.datasets.iebench_format.DatasetFormatError` naming the file; this wrapper
decides what happens next:

* ``fail`` (default): the error propagates and training stops, naming the file.
* ``skip``: the item is replaced by the next index (``(i + 1) % N``, then ``i + 2``, …), so
  the replacement is deterministic; every skip is counted and logged as a warning naming
  the file. Each returned item carries ``skipped`` (``[]`` int64): how many damaged items
  were passed over to produce it, so a collated batch has ``skipped [B]`` and a training
  loop can log ``batch["skipped"].sum()`` (this works with loader workers, whose counters
  the main process cannot see). :attr:`OnErrorDataset.skipped` counts the skips of the
  process that reads (the main process when ``num_workers=0``).

Only :class:`DatasetFormatError` is handled; any other exception is a bug and propagates.
Evaluation reads through the unwrapped dataset (``evaluation_views``) and always fails, since
metrics computed on substituted objects would be wrong.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import Dataset

from equissl.datasets.iebench_format import DatasetFormatError

log = logging.getLogger(__name__)

POLICIES = ("fail", "skip")


def check_policy(policy: str) -> str:
    """Return ``policy`` if known, else raise ``ValueError`` naming ``data.on_error``."""
    if policy not in POLICIES:
        raise ValueError(f"data.on_error={policy!r} is not one of {' | '.join(POLICIES)}")
    return policy


class OnErrorDataset(Dataset):
    """Wrap a dataset whose items may fail with :class:`DatasetFormatError`.

    Args:
        base: the dataset (its attributes, e.g. ``action_space`` and ``labels``, are
            forwarded).
        policy: ``fail`` or ``skip`` (see module docstring).

    Items are ``base``'s items plus ``skipped`` (``[]`` int64) under ``skip``.
    """

    def __init__(self, base: Dataset, policy: str = "fail") -> None:
        self.base = base
        self.policy = check_policy(policy)
        self.skipped = 0  # skips in this process since construction

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found on the wrapper itself.
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if self.policy == "fail":
            return self.base[key]
        # A sampler key (index, sample_seed) keeps its seed for the replacement item.
        index, seed = key if isinstance(key, tuple) else (key, None)
        n = len(self)
        for offset in range(n):
            j = (int(index) + offset) % n
            try:
                item = self.base[j if seed is None else (j, seed)]
            except DatasetFormatError as err:
                self.skipped += 1
                log.warning("data.on_error=skip: item %d skipped (%s); %d skipped so far "
                            "in this process", j, err, self.skipped)  # fmt: skip
                continue
            item = dict(item)
            item["skipped"] = torch.tensor(offset, dtype=torch.int64)
            return item
        raise DatasetFormatError(
            f"data.on_error=skip: all {n} items are damaged (see the warnings above)"
        )


def wrap_on_error(dataset: Dataset, policy: str = "fail") -> Dataset:
    """Apply ``data.on_error``: ``fail`` returns ``dataset`` itself, ``skip`` wraps it."""
    return dataset if check_policy(policy) == "fail" else OnErrorDataset(dataset, policy)
