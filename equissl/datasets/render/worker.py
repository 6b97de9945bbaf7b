"""Render every missing view of one object (runs in the generator or in a pool worker)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import trimesh

from equissl.datasets.packed import ShardObject
from equissl.datasets.render.catalog import ObjectSpec
from equissl.datasets.render.latents import object_streams, sample_latents
from equissl.datasets.render.layout import (
    complete_views,
    encode_jpeg,
    remove_stale_temps,
    write_view,
)
from equissl.datasets.render.meshes import load_mesh_file, mesh_arrays, normalize_mesh
from equissl.datasets.render.scene import ViewRenderer, select_variant
from equissl.datasets.render.shapes import build_shape


@dataclass(frozen=True)
class RenderTask:
    """Everything a worker needs to render one object (picklable)."""

    spec: ObjectSpec
    out: str
    views: int
    resolution: int
    spp: int
    seed: int
    translation: bool
    ood: bool
    variant: str
    mesh_up: str = "y"


@dataclass(frozen=True)
class RenderResult:
    entry: str
    views_rendered: int
    seconds: float


def object_mesh(spec: ObjectSpec, seed: int, mesh_up: str = "y") -> trimesh.Trimesh:
    """The normalised mesh of one catalogue object (procedural or loaded)."""
    if spec.family is not None:
        raw = build_shape(
            spec.family, object_streams(seed, spec.class_index, spec.object_index).shape
        )
    elif spec.mesh_file is not None:
        raw = load_mesh_file(spec.mesh_file, up=mesh_up)
    else:
        raise ValueError(f"object {spec.entry} has neither a family nor a mesh file")
    return normalize_mesh(raw)


def object_latents(
    spec: ObjectSpec, seed: int, views: int, *, translation: bool, ood: bool
) -> np.ndarray:
    """``[views, 7 or 10]`` float64 latents of one catalogue object."""
    streams = object_streams(seed, spec.class_index, spec.object_index)
    return sample_latents(streams.views, views, translation=translation, ood=ood)


def init_worker(variant: str, threads: int) -> None:
    """Pool initializer: set the Mitsuba variant and its thread count in this process."""
    import drjit as dr

    select_variant(variant)
    dr.set_thread_count(max(1, int(threads)))


def _renderer(task: RenderTask) -> tuple[ViewRenderer, np.ndarray, int]:
    """The object's view renderer, its ``[views, P]`` latents and its first render seed."""
    spec = task.spec
    latents = object_latents(
        spec, task.seed, task.views, translation=task.translation, ood=task.ood
    )
    vertices, faces = mesh_arrays(object_mesh(spec, task.seed, task.mesh_up))
    renderer = ViewRenderer(
        vertices,
        faces,
        resolution=task.resolution,
        spp=task.spp,
        translation=task.translation,
        variant=task.variant,
    )
    base = object_streams(task.seed, spec.class_index, spec.object_index).render_seed
    return renderer, latents, base


def render_object(task: RenderTask) -> RenderResult:
    """Render the views of ``task.spec`` that are not complete on disk yet (loose tree)."""
    start = time.perf_counter()
    spec = task.spec
    obj_dir = spec.directory(task.out)
    obj_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(obj_dir)
    done = complete_views(obj_dir, task.views)
    todo = [v for v in range(task.views) if v not in done]
    if not todo:
        return RenderResult(spec.entry, 0, time.perf_counter() - start)
    renderer, latents, base = _renderer(task)
    for v in todo:
        image = renderer.render(latents[v], seed=base + v)
        write_view(obj_dir, v, image, latents[v])
    return RenderResult(spec.entry, len(todo), time.perf_counter() - start)


def render_encoded(task: RenderTask) -> ShardObject:
    """Every view of ``task.spec`` as the JPEG bytes :func:`render_object` would write (the
    same encoder and quality) and its latents, for a packed shard; writes no file."""
    renderer, latents, base = _renderer(task)
    images = [encode_jpeg(renderer.render(latents[v], seed=base + v)) for v in range(task.views)]
    return ShardObject(f"rendered object {task.spec.entry}", images, latents)
