"""Procedural shape families: one class each, mostly without rotational symmetry.

Every family is a function ``rng -> trimesh.Trimesh`` built from trimesh primitives whose
proportions and optional parts vary per object (intra-class variation). Parts may overlap;
the renderer only needs surfaces. :func:`normalise` centres the bounding box at the origin
and scales the mesh into a sphere of radius :data:`RADIUS`, so that every rotation keeps
it above the floor (z = −1) and inside the camera's view.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh
from trimesh.creation import box, capsule, cone, cylinder, icosphere, torus

from equissl.registry import Registry

RADIUS = 0.85  # scene units; the floor is 1 below the object's centre

ShapeFn = Callable[[np.random.Generator], trimesh.Trimesh]
SHAPES: Registry[ShapeFn] = Registry("shape family")


def _box(extents, at) -> trimesh.Trimesh:
    return box(extents=extents).apply_translation(at)


def _rod(a, b, r: float) -> trimesh.Trimesh:
    return cylinder(radius=r, segment=np.array([a, b], dtype=float), sections=16)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


@SHAPES.register("chair")
def chair(rng: np.random.Generator) -> trimesh.Trimesh:
    w, d, h = _u(rng, 0.8, 1.1), _u(rng, 0.8, 1.0), _u(rng, 0.7, 1.0)
    back = _u(rng, 0.7, 1.1)
    leg = _u(rng, 0.04, 0.07)
    parts = [_box((w, d, 0.1), (0, 0, 0)), _box((w, 0.08, back), (0, d / 2, back / 2))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (w / 2 - leg), sy * (d / 2 - leg)
            parts.append(_rod((x, y, 0), (x, y, -h), leg))
    if rng.random() < 0.5:  # one armrest only: breaks the mirror symmetry
        parts.append(_box((0.08, d, 0.08), (w / 2, 0, 0.35)))
    return trimesh.util.concatenate(parts)


@SHAPES.register("mug")
def mug(rng: np.random.Generator) -> trimesh.Trimesh:
    r, h = _u(rng, 0.35, 0.5), _u(rng, 0.8, 1.3)
    handle = torus(major_radius=_u(rng, 0.22, 0.3), minor_radius=0.06)
    handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    handle.apply_translation((r + 0.1, 0, _u(rng, -0.1, 0.15)))
    body = cylinder(radius=r, height=h, sections=32)
    logo = _box((0.05, 0.3, 0.2), (0, -r, 0.2))  # a badge on the side away from the handle
    return trimesh.util.concatenate([body, handle, logo])


@SHAPES.register("bracket")
def bracket(rng: np.random.Generator) -> trimesh.Trimesh:
    a, b, t = _u(rng, 1.0, 1.6), _u(rng, 0.6, 1.1), _u(rng, 0.15, 0.25)
    w = _u(rng, 0.4, 0.7)
    parts = [_box((a, w, t), (a / 2, 0, 0)), _box((t, w, b), (0, 0, b / 2))]
    parts.append(_box((t * 0.8, w * 0.3, b * 0.5), (a * 0.75, w * 0.35, t + b * 0.25)))
    return trimesh.util.concatenate(parts)


@SHAPES.register("lamp")
def lamp(rng: np.random.Generator) -> trimesh.Trimesh:
    base = cylinder(radius=_u(rng, 0.3, 0.45), height=0.08, sections=32)
    h1, reach = _u(rng, 0.7, 1.1), _u(rng, 0.4, 0.8)
    elbow = np.array([0.0, 0.0, h1])
    tip = elbow + np.array([reach, 0.0, _u(rng, 0.1, 0.4)])
    shade = cone(radius=_u(rng, 0.18, 0.3), height=0.35, sections=24)
    shade.apply_transform(trimesh.transformations.rotation_matrix(np.pi, (1, 0, 0)))
    shade.apply_translation(tip + np.array([0, 0, 0.05]))
    return trimesh.util.concatenate([base, _rod((0, 0, 0), elbow, 0.04),
                                     _rod(elbow, tip, 0.04), shade])


@SHAPES.register("airplane")
def airplane(rng: np.random.Generator) -> trimesh.Trimesh:
    length, span = _u(rng, 1.6, 2.2), _u(rng, 1.4, 2.0)
    body = capsule(height=length, radius=_u(rng, 0.1, 0.15), count=[16, 16])
    body.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (0, 1, 0)))
    wing_x = _u(rng, -0.1, 0.2)
    parts = [body, _box((0.35, span, 0.04), (wing_x, 0, 0)),
             _box((0.2, span * 0.4, 0.03), (-length / 2 + 0.1, 0, 0.02)),
             _box((0.25, 0.03, _u(rng, 0.3, 0.45)), (-length / 2 + 0.1, 0, 0.2))]
    return trimesh.util.concatenate(parts)


@SHAPES.register("boot")
def boot(rng: np.random.Generator) -> trimesh.Trimesh:
    foot, shaft = _u(rng, 1.0, 1.4), _u(rng, 0.7, 1.2)
    parts = [_box((foot, 0.45, 0.3), (foot / 2 - 0.2, 0, 0)),
             _box((0.45, 0.45, shaft), (0, 0, shaft / 2 + 0.1)),
             _box((foot + 0.05, 0.5, 0.08), (foot / 2 - 0.2, 0, -0.18))]
    if rng.random() < 0.5:
        parts.append(_box((0.15, 0.5, 0.25), (-0.15, 0, -0.1)))  # a heel
    return trimesh.util.concatenate(parts)


@SHAPES.register("key")
def key(rng: np.random.Generator) -> trimesh.Trimesh:
    ring = torus(major_radius=_u(rng, 0.28, 0.38), minor_radius=0.1)
    ring.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    length = _u(rng, 1.0, 1.5)
    x0 = 0.35
    parts = [ring, _box((length, 0.18, 0.18), (x0 + length / 2, 0, 0)),
             _box((length * 0.7, 0.08, 0.1), (x0 + length * 0.45, 0.12, 0.06))]  # a ridge
    for k in range(int(rng.integers(2, 5))):
        parts.append(_box((0.12, 0.16, _u(rng, 0.25, 0.4)),
                          (x0 + length - 0.1 - 0.18 * k, 0, -0.12)))
    return trimesh.util.concatenate(parts)


@SHAPES.register("hammer")
def hammer(rng: np.random.Generator) -> trimesh.Trimesh:
    handle = _u(rng, 1.3, 1.8)
    head = _u(rng, 0.7, 1.0)
    parts = [_rod((0, 0, 0), (0, 0, handle), 0.09),
             _box((head * 0.55, 0.25, 0.28), (head * 0.275, 0, handle)),
             cone(radius=0.15, height=head * 0.45, sections=4).apply_transform(
                 trimesh.transformations.rotation_matrix(-np.pi / 2, (0, 1, 0))
             ).apply_translation((0, 0, handle))]
    return trimesh.util.concatenate(parts)


@SHAPES.register("car")
def car(rng: np.random.Generator) -> trimesh.Trimesh:
    length, width = _u(rng, 1.6, 2.1), _u(rng, 0.8, 1.0)
    cabin = _u(rng, 0.5, 0.9)
    parts = [_box((length, width, 0.35), (0, 0, 0)),
             _box((cabin, width * 0.85, 0.3), (-length * _u(rng, 0.05, 0.25), 0, 0.32))]
    for x in (-length * 0.32, length * 0.32):
        for y in (-width / 2, width / 2):
            wheel = cylinder(radius=0.18, height=0.12, sections=20)
            wheel.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
            parts.append(wheel.apply_translation((x, y, -0.18)))
    if rng.random() < 0.5:
        parts.append(_box((0.08, width, 0.08), (-length / 2, 0, 0.3)))  # spoiler
    return trimesh.util.concatenate(parts)


@SHAPES.register("signpost")
def signpost(rng: np.random.Generator) -> trimesh.Trimesh:
    h = _u(rng, 1.4, 1.9)
    board = _u(rng, 0.6, 1.0)
    arrow = cone(radius=0.3, height=0.35, sections=3)
    arrow.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (0, 1, 0)))
    arrow.apply_translation((board + 0.05, 0, h - 0.2))
    parts = [_rod((0, 0, 0), (0, 0, h), 0.08),
             _box((board, 0.1, 0.35), (board / 2 + 0.05, 0, h - 0.2)),
             arrow, cylinder(radius=0.25, height=0.06, sections=20)]
    return trimesh.util.concatenate(parts)


@SHAPES.register("teapot")
def teapot(rng: np.random.Generator) -> trimesh.Trimesh:
    r = _u(rng, 0.45, 0.6)
    body = icosphere(subdivisions=3, radius=r)
    body.apply_scale((1.0, 1.0, _u(rng, 0.7, 0.9)))
    spout = _rod((r * 0.8, 0, 0), (r + _u(rng, 0.3, 0.5), 0, r * 0.6), 0.07)
    handle = torus(major_radius=0.25, minor_radius=0.05)
    handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    handle.apply_translation((-r - 0.1, 0, 0.05))
    lid = cone(radius=0.15, height=0.2, sections=16).apply_translation((0, 0, r * 0.75))
    return trimesh.util.concatenate([body, spout, handle, lid])


@SHAPES.register("sofa")
def sofa(rng: np.random.Generator) -> trimesh.Trimesh:
    w, d = _u(rng, 1.6, 2.2), _u(rng, 0.7, 0.9)
    parts = [_box((w, d, 0.35), (0, 0, 0)), _box((w, 0.2, _u(rng, 0.5, 0.8)), (0, d / 2, 0.4)),
             _box((0.2, d, 0.35), (-w / 2, 0, 0.3))]
    if rng.random() < 0.6:
        parts.append(_box((0.5, d * 1.5, 0.3), (w / 2 - 0.25, -d * 0.25, 0)))  # chaise end
    return trimesh.util.concatenate(parts)


def normalise(mesh: trimesh.Trimesh, radius: float = RADIUS) -> trimesh.Trimesh:
    """Centre the bounding box at the origin and scale into a sphere of ``radius``."""
    mesh = mesh.copy()
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(radius / np.linalg.norm(mesh.vertices, axis=1).max())
    return mesh


def make_shape(family: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """A normalised object of ``family`` drawn with ``rng``."""
    return normalise(SHAPES.get(family)(rng))
