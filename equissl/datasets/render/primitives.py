"""Closed mesh building blocks for the procedural shape families (z up, scene units).

Every function returns a watertight ``trimesh.Trimesh`` with outward-facing triangles.
Parts are combined by concatenation (no boolean unions: they would need an extra
dependency, and overlapping closed parts render the same).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import trimesh
from numpy.typing import ArrayLike

_Z = np.array([0.0, 0.0, 1.0])


def combine(parts: Sequence[trimesh.Trimesh]) -> trimesh.Trimesh:
    """Concatenate closed parts into one mesh (vertices are not merged across parts)."""
    return trimesh.util.concatenate(list(parts))


def _placed(mesh: trimesh.Trimesh, center: ArrayLike, rotation: np.ndarray | None = None):
    """Rotate ``mesh`` (3×3 ``rotation`` about the origin) then move it to ``center``."""
    m = np.eye(4)
    if rotation is not None:
        m[:3, :3] = rotation
    m[:3, 3] = np.asarray(center, dtype=float)
    mesh.apply_transform(m)
    return mesh


def rotation_z_to(direction: ArrayLike) -> np.ndarray:
    """3×3 rotation taking +z onto the unit vector along ``direction``."""
    return trimesh.geometry.align_vectors(_Z, np.asarray(direction, dtype=float))[:3, :3]


def box(
    extents: ArrayLike, center: ArrayLike = (0, 0, 0), rotation: np.ndarray | None = None
) -> trimesh.Trimesh:
    """Axis-aligned box of size ``extents`` (x, y, z), optionally rotated, centred at ``center``."""
    return _placed(trimesh.creation.box(extents=np.asarray(extents, dtype=float)), center, rotation)


def cylinder(p0: ArrayLike, p1: ArrayLike, radius: float, sections: int = 24) -> trimesh.Trimesh:
    """Solid cylinder of ``radius`` whose axis runs from point ``p0`` to point ``p1``."""
    seg = np.array([p0, p1], dtype=float)
    return trimesh.creation.cylinder(radius=radius, segment=seg, sections=sections)


def capsule(p0: ArrayLike, p1: ArrayLike, radius: float, count: int = 12) -> trimesh.Trimesh:
    """Capsule (cylinder with hemispherical ends) whose sphere centres are ``p0`` and ``p1``."""
    p0, p1 = np.asarray(p0, dtype=float), np.asarray(p1, dtype=float)
    axis = p1 - p0
    mesh = trimesh.creation.capsule(
        height=float(np.linalg.norm(axis)), radius=radius, count=[count, count]
    )
    return _placed(mesh, (p0 + p1) / 2, rotation_z_to(axis))


def sphere(center: ArrayLike, radius: float, subdivisions: int = 2) -> trimesh.Trimesh:
    """Icosphere of ``radius`` at ``center``."""
    return _placed(trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius), center)


def ellipsoid(center: ArrayLike, radii: ArrayLike, subdivisions: int = 2) -> trimesh.Trimesh:
    """Axis-aligned ellipsoid with semi-axes ``radii`` (x, y, z) at ``center``."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    mesh.vertices = mesh.vertices * np.asarray(radii, dtype=float)
    return _placed(mesh, center)


def cone(base: ArrayLike, apex: ArrayLike, radius: float, sections: int = 24) -> trimesh.Trimesh:
    """Solid cone with a disc of ``radius`` at point ``base`` and its tip at point ``apex``."""
    base, apex = np.asarray(base, dtype=float), np.asarray(apex, dtype=float)
    axis = apex - base
    mesh = trimesh.creation.cone(
        radius=radius, height=float(np.linalg.norm(axis)), sections=sections
    )
    return _placed(mesh, base, rotation_z_to(axis))


def lathe(
    profile: ArrayLike,
    center: ArrayLike = (0, 0, 0),
    sections: int = 32,
    direction: ArrayLike = (0, 0, 1),
) -> trimesh.Trimesh:
    """Surface of revolution of a ``[N, 2]`` (radius, height) profile about ``direction``.

    The profile must start and end on the axis (radius 0) so the solid is closed.
    """
    prof = np.asarray(profile, dtype=float)
    mesh = trimesh.creation.revolve(prof, sections=sections)
    return _placed(mesh, center, rotation_z_to(direction))


def prism(polygon: ArrayLike, z0: float, z1: float) -> trimesh.Trimesh:
    """Extrude a ``[N, 2]`` polygon (x, y) from height ``z0`` to ``z1`` (z0 < z1).

    The polygon must be star-shaped about its vertex mean (a fan from that point covers it);
    every convex polygon is. Either winding order is accepted.
    """
    poly = np.asarray(polygon, dtype=float)
    if _signed_area(poly) < 0:
        poly = poly[::-1]
    n = len(poly)
    c = poly.mean(axis=0)
    verts = np.vstack(
        [
            np.column_stack([poly, np.full(n, z0)]),
            np.column_stack([poly, np.full(n, z1)]),
            [[c[0], c[1], z0], [c[0], c[1], z1]],
        ]
    )
    bottom_c, top_c = 2 * n, 2 * n + 1
    faces = []
    for i in range(n):
        j = (i + 1) % n
        faces += [[i, j, n + j], [i, n + j, n + i]]  # side quad, outward for a CCW polygon
        faces += [[bottom_c, j, i], [top_c, n + i, n + j]]  # caps: down and up
    return trimesh.Trimesh(verts, np.asarray(faces), process=True)


def _signed_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def slab(
    polygon: ArrayLike,
    thickness: float,
    rotation: np.ndarray | None = None,
    center: ArrayLike = (0, 0, 0),
) -> trimesh.Trimesh:
    """A flat plate: ``polygon`` in its local x-y plane, ``thickness`` along local z (centred)."""
    mesh = prism(polygon, -thickness / 2, thickness / 2)
    return _placed(mesh, center, rotation)


def tube(path: ArrayLike, radius: float, sections: int = 12) -> trimesh.Trimesh:
    """A round bar of ``radius`` swept along the ``[N, 3]`` polyline ``path`` (N ≥ 2), capped.

    Cross-sections are oriented by parallel transport, so bends do not twist the tube.
    """
    pts = np.asarray(path, dtype=float)
    n = len(pts)
    tangents = np.gradient(pts, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    helper = np.eye(3)[int(np.argmin(np.abs(tangents[0])))]
    normal = np.cross(tangents[0], helper)
    normal /= np.linalg.norm(normal)
    ang = np.linspace(0, 2 * np.pi, sections, endpoint=False)
    rings = []
    for i in range(n):
        if i > 0:  # parallel transport: remove the component along the new tangent
            normal = normal - np.dot(normal, tangents[i]) * tangents[i]
            normal /= np.linalg.norm(normal)
        binormal = np.cross(tangents[i], normal)
        rings.append(
            pts[i] + radius * (np.outer(np.cos(ang), normal) + np.outer(np.sin(ang), binormal))
        )
    verts = np.vstack(rings + [pts[:1], pts[-1:]])
    start_c, end_c = n * sections, n * sections + 1
    faces = []
    for i in range(n - 1):
        a, b = i * sections, (i + 1) * sections
        for k in range(sections):
            k1 = (k + 1) % sections
            faces += [[a + k, a + k1, b + k1], [a + k, b + k1, b + k]]
    last = (n - 1) * sections
    for k in range(sections):
        k1 = (k + 1) % sections
        faces += [[start_c, k1, k], [end_c, last + k, last + k1]]
    mesh = trimesh.Trimesh(verts, np.asarray(faces), process=True)
    if mesh.volume < 0:  # the ring orientation decides the winding; make it outward
        mesh.invert()
    return mesh


def arc(
    center: ArrayLike,
    radius: float,
    start: float,
    stop: float,
    u: ArrayLike,
    v: ArrayLike,
    n: int = 16,
) -> np.ndarray:
    """``[n, 3]`` points on a circular arc ``center + r(cos a·u + sin a·v)``, a ∈ [start, stop]."""
    a = np.linspace(start, stop, n)
    u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    return np.asarray(center, dtype=float) + radius * (
        np.outer(np.cos(a), u) + np.outer(np.sin(a), v)
    )


def torus(
    center: ArrayLike, major: float, minor: float, axis: ArrayLike = (0, 0, 1), sections: int = 24
) -> trimesh.Trimesh:
    """Ring of tube radius ``minor`` around a circle of radius ``major`` normal to ``axis``."""
    mesh = trimesh.creation.torus(
        major_radius=major, minor_radius=minor, major_sections=sections, minor_sections=10
    )
    return _placed(mesh, center, rotation_z_to(axis))
