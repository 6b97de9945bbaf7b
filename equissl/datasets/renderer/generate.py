"""``equissl-generate``: render a dataset in exactly the 3DIEBench on-disk format.

Deterministic from the seed: every object's shape and view latents come from generators
seeded by ``(seed, class, object)``, so chunking (chunk k of n renders objects k, k+n, …)
and resuming never change what is written. Files are written atomically (temporary name,
then ``os.replace``); an object whose ``2 × views`` files all exist is skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image
from tqdm.auto import tqdm

from equissl.atomic import atomic_write_bytes
from equissl.datasets.renderer.shapes import SHAPES, make_shape, normalise

GENERATOR_VERSION = "1"


@dataclass(frozen=True)
class ObjectSpec:
    """One object to render: where it goes and what it is."""

    synset: str
    obj_id: str
    label: int
    class_index: int
    index: int  # within its class
    family: str | None  # procedural family, or None for a mesh file
    mesh_file: str | None

    @property
    def entry(self) -> str:
        return f"/{self.synset}/{self.obj_id}/"


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def plan_objects(num_classes: int, objects_per_class: int, seed: int,
                 mesh_root: str | Path | None = None) -> list[ObjectSpec]:
    """The deterministic list of objects (class-major)."""
    specs: list[ObjectSpec] = []
    if mesh_root is None:
        families = SHAPES.names()
        if not 1 <= num_classes <= len(families):
            raise ValueError(f"num_classes={num_classes}: the procedural generator has "
                             f"{len(families)} shape families ({', '.join(families)}); "
                             "use mesh_root=<ShapeNet-layout tree> for more classes")
        for c, family in enumerate(families[:num_classes]):
            synset = f"9{c:07d}"
            for k in range(objects_per_class):
                digest = hashlib.sha1(f"{seed}/{family}/{k}".encode()).hexdigest()[:32]
                specs.append(ObjectSpec(synset, digest, c, c, k, family, None))
        return specs
    root = Path(mesh_root)
    if not root.is_dir():
        raise FileNotFoundError(f"mesh_root {root} is not a directory")
    synsets = sorted(p.name for p in root.iterdir() if p.is_dir())[:num_classes]
    for c, synset in enumerate(synsets):
        objs = sorted(p for p in (root / synset).iterdir() if p.is_dir())[:objects_per_class]
        for k, obj in enumerate(objs):
            meshes = sorted((obj / "models").glob("*.obj")) + sorted((obj / "models").glob("*.glb"))
            if not meshes:
                raise FileNotFoundError(f"no models/*.obj or *.glb in {obj}")
            specs.append(ObjectSpec(synset, obj.name, c, c, k, None, str(meshes[0])))
    if not specs:
        raise FileNotFoundError(f"mesh_root {root} holds no <synset>/<id>/models/*.obj")
    return specs


def split_objects(specs: list[ObjectSpec], val_fraction: float,
                  seed: int) -> dict[str, list[ObjectSpec]]:
    """Per-class deterministic train/val split (≥ 1 val object when a class has ≥ 2)."""
    out: dict[str, list[ObjectSpec]] = {"train": [], "val": []}
    for c in sorted({s.class_index for s in specs}):
        members = [s for s in specs if s.class_index == c]
        order = np.random.default_rng([seed, c, 99]).permutation(len(members))
        n_val = int(round(val_fraction * len(members)))
        if len(members) >= 2 and val_fraction > 0:
            n_val = min(max(n_val, 1), len(members) - 1)
        for rank, i in enumerate(order):
            out["val" if rank < n_val else "train"].append(members[i])
    return out


def sample_latents(rng: np.random.Generator, views: int, translation: bool,
                   ood: bool) -> np.ndarray:
    """``[views, 7 or 10]`` float64 latents with the 3DIEBench(-T, -OOD) distributions."""
    if ood:  # |angle| in [π/2, π], either sign
        angles = rng.uniform(np.pi / 2, np.pi, (views, 3)) * rng.choice([-1.0, 1.0], (views, 3))
    else:
        angles = rng.uniform(-np.pi / 2, np.pi / 2, (views, 3))
    cols = [angles, rng.uniform(0, 1, (views, 1)), rng.uniform(0, np.pi / 4, (views, 1)),
            rng.uniform(0, 2 * np.pi, (views, 1)), rng.uniform(0, 1, (views, 1))]
    if translation:
        cols.append(rng.uniform(-0.5, 0.5, (views, 3)))
    return np.concatenate(cols, axis=1).astype(np.float64)


def _is_complete(obj_dir: Path, views: int) -> bool:
    return all((obj_dir / f"image_{v}.jpg").is_file() and (obj_dir / f"latent_{v}.npy").is_file()
               for v in range(views))


def load_mesh(spec: ObjectSpec, seed: int) -> trimesh.Trimesh:
    if spec.family is not None:
        rng = np.random.default_rng([seed, spec.class_index, spec.index, 0])
        return make_shape(spec.family, rng)
    try:
        mesh = trimesh.load(spec.mesh_file, force="mesh")
    except Exception as err:
        raise RuntimeError(f"cannot load mesh {spec.mesh_file}: {err}") from err
    return normalise(mesh)


def render_object(spec: ObjectSpec, out: str, views: int, resolution: int, spp: int, seed: int,
                  translation: bool, ood: bool) -> int:
    """Render every view of one object; returns the number of views written (0 if skipped)."""
    from equissl.datasets.renderer.scene import render_view

    obj_dir = Path(out) / spec.synset / spec.obj_id
    if _is_complete(obj_dir, views):
        return 0
    obj_dir.mkdir(parents=True, exist_ok=True)
    latents = sample_latents(np.random.default_rng([seed, spec.class_index, spec.index, 1]),
                             views, translation, ood)
    with tempfile.TemporaryDirectory() as tmp:
        mesh_file = Path(tmp) / "object.ply"
        load_mesh(spec, seed).export(mesh_file)
        for v in range(views):
            img = render_view(mesh_file, latents[v], resolution, spp,
                              seed=(seed * 1_000_003 + spec.class_index * 10_007 + spec.index
                                    * 101 + v) % 2**31)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=95)
            atomic_write_bytes(obj_dir / f"image_{v}.jpg", buf.getvalue())
            atomic_write_bytes(obj_dir / f"latent_{v}.npy", _npy_bytes(latents[v]))
    return views


def _worker_init() -> None:
    import drjit as dr

    dr.set_thread_count(1)  # one process per core instead of threads inside one process


def write_splits(out: Path, splits: dict[str, list[ObjectSpec]], specs: list[ObjectSpec],
                 meta: dict) -> None:
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, members in splits.items():
        atomic_write_bytes(data / f"{name}_images.npy",
                      _npy_bytes(np.array([m.entry for m in members], dtype=str)))
        atomic_write_bytes(data / f"{name}_labels.npy",
                      _npy_bytes(np.array([m.label for m in members], dtype=np.int64)))
    classes = {s.synset: s.family or Path(s.mesh_file).parts[-4] for s in specs}
    atomic_write_bytes(data / "generator.json", json.dumps({**meta, "classes": classes},
                                                      indent=2).encode())


def generate_iebench(
    out: str | Path,
    *,
    num_classes: int = 10,
    objects_per_class: int = 20,
    views: int = 50,
    resolution: int = 256,
    spp: int = 16,
    seed: int = 0,
    translation: bool = False,
    ood: bool = False,
    val_fraction: float = 0.2,
    mesh_root: str | Path | None = None,
    chunk: int = 0,
    num_chunks: int = 1,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Render a 3DIEBench-style dataset into ``out`` (see the module docstring).

    Returns:
        Summary: objects planned for this chunk, rendered, skipped, views written, seconds.
    """
    if not 0 <= chunk < num_chunks:
        raise ValueError(f"chunk={chunk} must lie in [0, num_chunks={num_chunks})")
    if views < 2:
        raise ValueError("views must be at least 2 (methods compare views of one object)")
    out = Path(out)
    specs = plan_objects(num_classes, objects_per_class, seed, mesh_root)
    splits = split_objects(specs, val_fraction, seed)
    meta = {"generator_version": GENERATOR_VERSION, "seed": seed, "views": views,
            "resolution": resolution, "spp": spp, "translation": translation, "ood": ood}
    write_splits(out, splits, specs, meta)
    mine = specs[chunk::num_chunks]
    workers = workers or min(len(mine), os.cpu_count() or 1, 8)
    args = (str(out), views, resolution, spp, seed, translation, ood)
    start = time.perf_counter()
    written = []
    bar = tqdm(total=len(mine), desc=f"render chunk {chunk}/{num_chunks}", unit="obj",
               disable=not progress)
    if workers <= 1:
        for spec in mine:
            written.append(render_object(spec, *args))
            bar.update()
    else:
        with ProcessPoolExecutor(workers, initializer=_worker_init) as pool:
            for n in pool.map(render_object, mine, *([a] * len(mine) for a in args)):
                written.append(n)
                bar.update()
    bar.close()
    seconds = time.perf_counter() - start
    views_written = sum(written)
    return {"objects": len(mine), "rendered": sum(1 for n in written if n),
            "skipped": sum(1 for n in written if not n), "views": views_written,
            "seconds": round(seconds, 1),
            "views_per_s": round(views_written / seconds, 1) if seconds > 0 else 0.0}
