"""Training-side fault tolerance: a killed or requeued run resumes exactly with the same command.

* :mod:`equissl.datasets.keys` — per-sample random generators from sampler keys.
* :mod:`equissl.training.sampler` — the resumable, seeded, rank-sharded training loader.
* :mod:`equissl.training.checkpoints` — when ``last.ckpt`` is written, RNG states, step losses.
* :mod:`equissl.training.signals` — SIGTERM / SIGUSR1 handling, requeue and exit codes.

This package's ``__init__`` imports nothing, so the datasets can import
:mod:`equissl.datasets.keys` without pulling in Lightning.
"""
