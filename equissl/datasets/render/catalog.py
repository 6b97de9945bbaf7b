"""Which objects a generated dataset holds, their class labels and their train/val split.

Everything here is a pure function of the generation settings, so every chunk of a sharded
job computes the same catalogue and writes identical split files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from equissl.datasets.render.latents import object_hex_id
from equissl.datasets.render.layout import entry_path
from equissl.datasets.render.meshes import scan_mesh_tree
from equissl.datasets.render.shapes import FAMILIES

_SPLIT_TAG = 0x5B1  # extra entropy word: split streams never equal an object's stream


@dataclass(frozen=True)
class ObjectSpec:
    """One object to render.

    ``family`` names a procedural shape family; otherwise ``mesh_file`` is a mesh to load.
    """

    class_index: int  # label: index of ``synset`` in the sorted synsets of the dataset
    object_index: int  # position within its class
    synset: str
    obj_id: str
    family: str | None = None
    mesh_file: str | None = None

    @property
    def entry(self) -> str:
        """Split-file path ``/synset/obj_id/``."""
        return entry_path(self.synset, self.obj_id)

    def directory(self, out: str | Path) -> Path:
        return Path(out) / self.synset / self.obj_id


def procedural_catalog(num_classes: int, objects_per_class: int, seed: int) -> list[ObjectSpec]:
    """Objects of the first ``num_classes`` procedural families (all of them if ≤ 0).

    Raises:
        ValueError: more classes than families, or ``objects_per_class`` < 1.
    """
    if num_classes > len(FAMILIES):
        raise ValueError(
            f"num_classes={num_classes} exceeds the {len(FAMILIES)} procedural shape families "
            f"(at most {len(FAMILIES)}: {', '.join(f.name for f in FAMILIES)}); "
            "pass mesh_root=<ShapeNet-layout tree> for more classes"
        )
    if objects_per_class < 1:
        raise ValueError(f"objects_per_class must be ≥ 1, got {objects_per_class}")
    families = FAMILIES[:num_classes] if num_classes > 0 else FAMILIES
    return [
        ObjectSpec(c, i, fam.synset, object_hex_id(seed, fam.synset, i), family=fam.name)
        for c, fam in enumerate(families)
        for i in range(objects_per_class)
    ]


def mesh_tree_catalog(
    mesh_root: str | Path, num_classes: int, objects_per_class: int
) -> list[ObjectSpec]:
    """Objects of a ShapeNet-layout tree: its first ``num_classes`` synsets (sorted; all if
    ≤ 0), each with its first ``objects_per_class`` object ids (sorted; all if ≤ 0 or fewer).

    Raises:
        FileNotFoundError: missing or empty tree (names the path).
        ValueError: more classes requested than the tree holds.
    """
    tree = scan_mesh_tree(mesh_root)
    synsets = sorted(tree)
    if num_classes > len(synsets):
        raise ValueError(
            f"num_classes={num_classes} but mesh_root {mesh_root} holds only "
            f"{len(synsets)} synsets with meshes: {synsets}"
        )
    if num_classes > 0:
        synsets = synsets[:num_classes]
    specs = []
    for c, syn in enumerate(synsets):
        objects = tree[syn] if objects_per_class <= 0 else tree[syn][:objects_per_class]
        specs += [
            ObjectSpec(c, i, syn, obj_id, mesh_file=str(path))
            for i, (obj_id, path) in enumerate(objects)
        ]
    return specs


def split_catalog(
    specs: list[ObjectSpec], seed: int, val_fraction: float
) -> dict[str, list[ObjectSpec]]:
    """Deterministic per-class train/val split.

    Each class with n objects puts ``round(val_fraction · n)`` of them in val, at least one
    when n ≥ 2 and ``val_fraction`` > 0, and always keeps one in train. Objects within a split
    keep catalogue order (class, then object index).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_class: dict[int, list[ObjectSpec]] = {}
    for s in specs:
        by_class.setdefault(s.class_index, []).append(s)
    val_ids: set[tuple[int, int]] = set()
    for c, members in by_class.items():
        n = len(members)
        n_val = int(round(val_fraction * n))
        if val_fraction > 0 and n >= 2:
            n_val = max(n_val, 1)
        n_val = min(n_val, n - 1) if n >= 1 else 0
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), c, 0, _SPLIT_TAG]))
        for k in rng.permutation(n)[:n_val]:
            val_ids.add((c, members[int(k)].object_index))
    return {
        "train": [s for s in specs if (s.class_index, s.object_index) not in val_ids],
        "val": [s for s in specs if (s.class_index, s.object_index) in val_ids],
    }


def chunk_of(specs: list[ObjectSpec], chunk: int, num_chunks: int) -> list[ObjectSpec]:
    """Chunk ``chunk`` of ``num_chunks``: every ``num_chunks``-th object from ``chunk`` on.

    Interleaving spreads classes (and so mesh sizes) evenly over chunks; the chunks are
    disjoint and together hold every object.
    """
    if num_chunks < 1 or not 0 <= chunk < num_chunks:
        raise ValueError(f"need 0 ≤ chunk < num_chunks, got chunk={chunk}, num_chunks={num_chunks}")
    return specs[chunk::num_chunks]
