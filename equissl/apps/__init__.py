"""The command-line layer: the console scripts (``equissl-pretrain``, ``-evaluate``,
``-generate``, ``-validate``, ``-pack``, ``-list``), their Hydra callbacks and run-folder
naming. Nothing in the package imports this layer (``docs/architecture.md``)."""
