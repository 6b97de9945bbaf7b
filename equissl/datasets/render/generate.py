"""``generate_iebench``: render a dataset in the exact 3DIEBench(-T) format (DESIGN §2.3)."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm import tqdm

from equissl.datasets.render.catalog import (
    ObjectSpec,
    chunk_of,
    mesh_tree_catalog,
    procedural_catalog,
    split_catalog,
)
from equissl.datasets.render.layout import check_config, complete_views, write_split
from equissl.datasets.render.scene import select_variant
from equissl.datasets.render.worker import RenderResult, RenderTask, init_worker, render_object

GENERATOR_VERSION = 1


def available_cores() -> int:
    """CPU cores this process may use (respects SLURM/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
        chunk, num_chunks: render only every ``num_chunks``-th object starting at ``chunk``.
        workers: render processes (default: one per available core on CPU, 1 on a GPU).
        progress: show a tqdm bar over objects.
        mesh_up: up axis of the files under ``mesh_root`` (``"y"`` for ShapeNet/glTF, ``"z"``).
        variant: Mitsuba variant (default: ``cuda_ad_rgb`` if usable, else ``scalar_rgb``).

    Returns:
        Summary: ``objects`` (in the dataset), ``chunk_objects``, ``rendered`` and ``skipped``
        objects (complete ones are skipped, so a killed job can simply be rerun),
        ``views_rendered``, ``seconds``, ``views_per_s``, ``workers``, ``variant``, ``out``.

    Raises:
        ValueError: bad settings (e.g. more classes than procedural families) or an ``out``
            rendered with other settings.
        FileNotFoundError: ``mesh_root`` missing or without meshes.
    """
    start = time.perf_counter()
    out = Path(out)
    for name, value, low in (("views", views, 1), ("resolution", resolution, 8), ("spp", spp, 1)):
        if value < low:
            raise ValueError(f"{name} must be ≥ {low}, got {value}")
    if mesh_root is not None:
        specs = mesh_tree_catalog(mesh_root, num_classes, objects_per_class)
    else:
        specs = procedural_catalog(num_classes, objects_per_class, seed)
    splits = split_catalog(specs, seed, val_fraction)
    mine = chunk_of(specs, chunk, num_chunks)

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
    check_config(out, config)
    for split, members in splits.items():
        write_split(out, split, [s.entry for s in members], [s.class_index for s in members])

    pending = [s for s in mine if len(complete_views(s.directory(out), views)) < views]
    chosen = select_variant(variant)
    if workers is None:
        workers = 1 if chosen.startswith("cuda") else available_cores()
    workers = max(1, min(int(workers), len(pending) or 1))
    tasks = [
        RenderTask(s, str(out), views, resolution, spp, seed, translation, ood, chosen, mesh_up)
        for s in pending
    ]
    results = _run(tasks, workers, chosen, progress)

    seconds = time.perf_counter() - start
    rendered_views = sum(r.views_rendered for r in results)
    return {
        "out": str(out),
        "objects": len(specs),
        "chunk_objects": len(mine),
        "rendered": len(pending),
        "skipped": len(mine) - len(pending),
        "views_rendered": rendered_views,
        "seconds": round(seconds, 3),
        "views_per_s": round(rendered_views / seconds, 2) if seconds > 0 else 0.0,
        "workers": workers,
        "variant": chosen,
    }


def _run(tasks: list[RenderTask], workers: int, variant: str, progress: bool) -> list[RenderResult]:
    bar = tqdm(total=len(tasks), unit="obj", desc="render", disable=not progress or not tasks)
    results: list[RenderResult] = []

    def done(res: RenderResult) -> None:
        results.append(res)
        bar.update(1)
        views = sum(r.views_rendered for r in results)
        bar.set_postfix(views=views, refresh=False)

    try:
        if workers == 1 or not tasks:
            for task in tasks:
                done(render_object(task))
        else:
            threads = max(1, available_cores() // workers)
            ctx = multiprocessing.get_context("spawn")  # never fork a process holding Dr.Jit
            with ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=init_worker, initargs=(variant, threads)
            ) as pool:
                futures = [pool.submit(render_object, t) for t in tasks]
                try:
                    for fut in as_completed(futures):
                        done(fut.result())
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
    return results


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
