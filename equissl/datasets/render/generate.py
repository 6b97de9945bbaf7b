"""``generate_iebench``: render a dataset in the exact 3DIEBench(-T) format (docs/renders.md)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from equissl.datasets.iebench_format import DatasetFormatError, load_split
from equissl.datasets.packed import (
    check_encoding,
    chunk_range,
    shard_is_done,
    shard_name,
    write_index,
    write_shard,
)
from equissl.datasets.render.catalog import (
    ObjectSpec,
    chunk_of,
    mesh_tree_catalog,
    procedural_catalog,
    split_catalog,
)
from equissl.datasets.render.layout import CONFIG_FILE, SPLITS_DIR, complete_views, write_split
from equissl.datasets.render.scene import select_variant
from equissl.datasets.render.worker import (
    RenderTask,
    init_worker,
    render_encoded,
    render_object,
)
from equissl.output_folder import claim_output
from equissl.progress import usable_cpus

GENERATOR_VERSION = 1


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
    mesh_up: str = "y",
    variant: str | None = None,
    format: str = "loose",
    encoding: str = "jpeg",
) -> dict:
    """Render a 3DIEBench-style dataset (or chunk ``chunk`` of ``num_chunks`` of it) to ``out``.

    Writes ``<out>/<synset>/<obj_id>/image_{v}.jpg`` (``resolution``² RGB JPEG) and
    ``latent_{v}.npy`` (float64, 7 values, or 10 with ``translation``) for ``v < views``, and
    the split files ``<out>/data/{train,val}_{images,labels}.npy`` plus
    ``<out>/data/render_config.json`` (the settings; a rerun with other settings is refused).

    Args:
        out: dataset root.
        num_classes: procedural families to use (≤ 12), or synsets of ``mesh_root`` (sorted);
            0 = all.
        objects_per_class: objects per class (with ``mesh_root``: at most this many, sorted
            ids; 0 = all).
        views: views per object.
        resolution: image side in pixels.
        spp: path-tracer samples per pixel.
        seed: everything (shapes, ids, latents, split, sampler noise) derives from it.
        translation: 3DIEBench-T (latents gain a translation, each axis U(−0.5, 0.5)).
        ood: rotation angles from [−π, −π/2] ∪ [π/2, π] instead of [−π/2, π/2].
        val_fraction: fraction of each class in the val split.
        mesh_root: ShapeNet-layout tree ``<synset>/<id>/models/*.obj`` to render instead of
            the procedural shapes.
        chunk, num_chunks: render only chunk ``chunk`` of ``num_chunks``: ``loose``, every
            ``num_chunks``-th object of the catalogue from ``chunk`` on; ``packed``, the
            contiguous range ``[k·N/n, (k+1)·N/n)`` of each split file (one shard per split,
            as ``equissl-pack chunk=k num_chunks=n`` writes). The objects' content does not
            depend on the chunking.
        workers: render processes (default: one per available core on CPU, 1 on a GPU).
        progress: show a tqdm bar over objects.
        mesh_up: up axis of the files under ``mesh_root`` (``"y"`` for ShapeNet/glTF, ``"z"``).
        variant: Mitsuba variant (default: ``cuda_ad_rgb`` if usable, else ``scalar_rgb``).
        format: ``loose`` (the published tree, above) or ``packed``: the views go straight
            into the shards ``equissl-pack`` writes (:mod:`equissl.datasets.packed`; read
            with ``data.format=auto|packed``), no per-view file. The JPEG bytes are those a
            loose render would write, so the items are the same as rendering loose and
            packing.
        encoding: payload of ``packed`` shards, ``jpeg`` or ``raw`` (``equissl-pack``'s).

    Returns:
        Summary: ``objects`` (in the dataset), ``chunk_objects``, ``rendered`` and ``skipped``
        objects (complete ones are skipped, so a killed job can simply be rerun; ``packed``:
        a chunk's shard is the unit, a killed chunk is rendered again),
        ``views_rendered``, ``seconds``, ``views_per_s``, ``workers``, ``variant``, ``out``,
        ``format`` and (``packed``) ``index``: ``packed.json`` once every chunk is done.

    Raises:
        ValueError: bad settings (e.g. more classes than procedural families).
        FolderNotOurs: ``out`` holds files of something else, or a dataset rendered with
            other settings (nothing is written).
        FileNotFoundError: ``mesh_root`` missing or without meshes.
    """
    start = time.perf_counter()
    out = Path(out)
    for name, value, low in (("views", views, 1), ("resolution", resolution, 8), ("spp", spp, 1)):
        if value < low:
            raise ValueError(f"{name} must be ≥ {low}, got {value}")
    if format not in WRITERS:
        raise ValueError(f"format={format!r} is not one of {' | '.join(WRITERS)}")
    check_encoding(encoding)
    if mesh_root is not None:
        specs = mesh_tree_catalog(mesh_root, num_classes, objects_per_class)
    else:
        specs = procedural_catalog(num_classes, objects_per_class, seed)
    splits = split_catalog(specs, seed, val_fraction)
    mine = chunk_of(specs, chunk, num_chunks)  # checks chunk / num_chunks

    config = {
        "generator": "equissl.datasets.render",
        "version": GENERATOR_VERSION,
        "num_classes": num_classes,
        "objects_per_class": objects_per_class,
        "views": views,
        "resolution": resolution,
        "spp": spp,
        "seed": seed,
        "translation": translation,
        "ood": ood,
        "val_fraction": val_fraction,
        "mesh_up": mesh_up,
        "mesh_root": str(Path(mesh_root).resolve()) if mesh_root is not None else None,
    }
    claim_output(out, out / SPLITS_DIR / CONFIG_FILE, config, "a rendered dataset")
    for split, members in splits.items():
        write_split(out, split, [s.entry for s in members], [s.class_index for s in members])

    chosen = select_variant(variant)

    def task(spec: ObjectSpec) -> RenderTask:
        return RenderTask(
            spec, str(out), views, resolution, spp, seed, translation, ood, chosen, mesh_up
        )

    job = RenderJob(out, task, views, chosen, workers, progress, num_chunks, encoding)
    summary = WRITERS[format](job, splits, mine, chunk)
    seconds = time.perf_counter() - start
    rendered_views = summary["views_rendered"]
    return {
        "out": str(out),
        "objects": len(specs),
        **summary,
        "seconds": round(seconds, 3),
        "views_per_s": round(rendered_views / seconds, 2) if seconds > 0 else 0.0,
        "variant": chosen,
        "format": format,
    }


@dataclass(frozen=True)
class RenderJob:
    """What both writers share: the output, how to make a task, the pool settings."""

    out: Path
    task: Callable[[ObjectSpec], RenderTask]
    views: int
    variant: str
    requested_workers: int | None
    progress: bool
    num_chunks: int
    encoding: str

    def workers(self, pending: int) -> int:
        """Render processes for ``pending`` objects (default: one per core on CPU, 1 on GPU)."""
        workers = self.requested_workers
        if workers is None:
            workers = 1 if self.variant.startswith("cuda") else usable_cpus()
        return max(1, min(int(workers), pending or 1))

    def run(self, fn: Callable[[RenderTask], Any], specs: list[ObjectSpec]) -> Iterator[Any]:
        """``fn`` of every object's task, in ``specs`` order (rendered in parallel)."""
        tasks = [self.task(s) for s in specs]
        return _run(tasks, fn, self.workers(len(specs)), self.variant, self.progress)


def _write_loose(
    job: RenderJob, splits: dict[str, list[ObjectSpec]], mine: list[ObjectSpec], chunk: int
) -> dict[str, Any]:
    """Chunk ``chunk`` as per-view files; complete objects are skipped."""
    pending = [s for s in mine if len(complete_views(s.directory(job.out), job.views)) < job.views]
    views = sum(result.views_rendered for result in job.run(render_object, pending))
    return {
        "chunk_objects": len(mine),
        "rendered": len(pending),
        "views_rendered": views,
        "skipped": len(mine) - len(pending),
        "workers": job.workers(len(pending)),
    }


def _write_packed(
    job: RenderJob, splits: dict[str, list[ObjectSpec]], mine: list[ObjectSpec], chunk: int
) -> dict[str, Any]:
    """Chunk ``chunk`` of each split as one shard; a finished shard is skipped."""
    counts = {"chunk_objects": 0, "rendered": 0, "skipped": 0, "workers": 1, "views_rendered": 0}
    for name, members in splits.items():
        split = load_split(job.out, name)
        shard = shard_name(name, chunk, job.num_chunks)
        start, stop = chunk_range(len(members), chunk, job.num_chunks)
        counts["chunk_objects"] += stop - start
        if shard_is_done(job.out, split, shard, job.encoding):
            counts["skipped"] += stop - start
            continue
        todo = members[start:stop]
        objects = job.run(render_encoded, todo)
        write_shard(job.out, split, shard, start, stop, objects, job.encoding)
        counts["rendered"] += len(todo)
        counts["views_rendered"] += len(todo) * job.views
        counts["workers"] = max(counts["workers"], job.workers(len(todo)))
    try:
        index = write_index(job.out, tuple(splits), job.num_chunks)
    except DatasetFormatError:
        index = None  # other chunks still to come
    return {**counts, "index": str(index) if index else None}


#: ``format`` -> writer of one chunk ``(job, splits, the loose chunk's objects, chunk)``
WRITERS = {"loose": _write_loose, "packed": _write_packed}


def _run(
    tasks: list[RenderTask],
    fn: Callable[[RenderTask], Any],
    workers: int,
    variant: str,
    progress: bool,
) -> Iterator[Any]:
    """``fn(task)`` for every task, yielded in task order (a process pool when ``workers``
    > 1; results finished out of order wait in memory for their turn)."""
    bar = tqdm(total=len(tasks), unit="obj", desc="render", disable=not progress or not tasks)
    try:
        if workers == 1 or not tasks:
            for task in tasks:
                yield fn(task)
                bar.update(1)
        else:
            threads = max(1, usable_cpus() // workers)
            ctx = multiprocessing.get_context("spawn")  # never fork a process holding Dr.Jit
            with ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=init_worker, initargs=(variant, threads)
            ) as pool:
                futures = [pool.submit(fn, t) for t in tasks]
                try:
                    for fut in futures:
                        yield fut.result()
                        bar.update(1)
                except BrokenProcessPool as err:
                    raise RuntimeError(
                        "a render worker process died. Workers are started with 'spawn' and "
                        "re-import the main module: a script calling generate_iebench must "
                        "guard it with `if __name__ == '__main__':` (or pass workers=1)"
                    ) from err
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        bar.close()


def catalog_for(
    num_classes: int = 10,
    objects_per_class: int = 20,
    seed: int = 0,
    mesh_root: str | Path | None = None,
) -> list[ObjectSpec]:
    """The objects ``generate_iebench`` would render with these settings (class-major)."""
    if mesh_root is not None:
        return mesh_tree_catalog(mesh_root, num_classes, objects_per_class)
    return procedural_catalog(num_classes, objects_per_class, seed)
