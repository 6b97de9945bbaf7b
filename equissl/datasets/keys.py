"""Sample keys: the randomness of one item as a function of (seed, epoch, index) only.

The training sampler yields keys ``(index, sample_seed)`` instead of plain indices. A
dataset that draws its per-item random choices (views, window starts, strengths) from
:func:`sample_generator` of the key gives the same item for the same key whatever the
number of loader workers, the order in which workers ran, or what the process did before
(a resumed run). Plain ``int`` indices keep drawing from the global RNG, for other callers.
"""

from __future__ import annotations

import numpy as np
import torch

SampleKey = int | tuple[int, int]


def derive_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (``numpy.random.SeedSequence``)."""
    words = np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def split_key(key: SampleKey) -> tuple[int, torch.Generator | None]:
    """``(index, generator)`` of a key; the generator is ``None`` (global RNG) for an ``int``.

    Args:
        key: an ``int`` index, or ``(index, sample_seed)`` from the training sampler.
    """
    if isinstance(key, tuple | list):
        index, seed = key
        return int(index), torch.Generator().manual_seed(int(seed))
    return int(key), None
