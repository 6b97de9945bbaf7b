"""Object meshes: normalisation, and a user's mesh tree in ShapeNet layout.

A mesh tree looks like ``<mesh_root>/<synset>/<obj_id>/models/<file>`` where ``<file>`` is
any mesh trimesh reads (``.obj``, ``.glb``, ``.gltf``, ``.ply``, ``.off``, ``.stl``);
ShapeNetCore v2 ships ``models/model_normalized.obj``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

#: Distance of the farthest vertex from the bounding-box centre after normalisation. With the
#: camera at 2.5 and a 40° field of view the object then fills ~80 % of the frame width at any
#: rotation (max extent between 0.87 for a cube and 1.5 for a rod).
OBJECT_RADIUS = 0.75

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".off", ".stl")
_PREFERRED = "model_normalized.obj"

# y-up (ShapeNet OBJ, glTF) to z-up: +90° about x, so (x, y, z) -> (x, -z, y).
_Y_UP_TO_Z_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])


def normalize_mesh(mesh: trimesh.Trimesh, radius: float = OBJECT_RADIUS) -> trimesh.Trimesh:
    """Centre the bounding box at the origin and scale the farthest vertex to ``radius``.

    Returns a new mesh; ``mesh`` is not modified.
    """
    out = mesh.copy()
    lo, hi = out.bounds
    out.apply_translation(-(lo + hi) / 2)
    far = float(np.max(np.linalg.norm(out.vertices, axis=1)))
    if not np.isfinite(far) or far <= 0:
        raise ValueError("mesh is empty or degenerate (all vertices at one point)")
    out.apply_scale(radius / far)
    return out


def mesh_arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices [N, 3] float32, faces [F, 3] uint32)`` for the renderer."""
    return (
        np.ascontiguousarray(mesh.vertices, dtype=np.float32),
        np.ascontiguousarray(mesh.faces, dtype=np.uint32),
    )


def load_mesh_file(path: str | Path, up: str = "y") -> trimesh.Trimesh:
    """Load one mesh file as a single triangle mesh (materials and textures are dropped).

    Args:
        path: mesh file.
        up: the file's up axis, ``"y"`` (ShapeNet OBJ, glTF) or ``"z"``; the result is z-up.

    Raises:
        ValueError: the file cannot be read or holds no triangles (the message names it).
    """
    path = Path(path)
    if up not in ("y", "z"):
        raise ValueError(f"up axis must be 'y' or 'z', got {up!r}")
    try:
        loaded = trimesh.load(path, force="mesh", skip_materials=True, process=False)
    except Exception as err:  # trimesh raises many types for unreadable files
        raise ValueError(f"cannot load mesh {path}: {err}") from err
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"mesh {path} holds no triangles")
    mesh = trimesh.Trimesh(loaded.vertices, loaded.faces, process=False)
    if up == "y":
        m = np.eye(4)
        m[:3, :3] = _Y_UP_TO_Z_UP
        mesh.apply_transform(m)
    return mesh


def find_model_file(object_dir: Path) -> Path | None:
    """The mesh file of one object directory (``models/`` first, then the directory itself)."""
    for folder in (object_dir / "models", object_dir):
        if not folder.is_dir():
            continue
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES
        )
        if files:
            preferred = [p for p in files if p.name == _PREFERRED]
            return (preferred or files)[0]
    return None


def scan_mesh_tree(mesh_root: str | Path) -> dict[str, list[tuple[str, Path]]]:
    """Map each synset of a ShapeNet-layout tree to its sorted ``(obj_id, mesh_file)`` list.

    Synsets without any readable object directory are left out.

    Raises:
        FileNotFoundError: ``mesh_root`` is missing or holds no meshes (the message names it).
    """
    root = Path(mesh_root)
    if not root.is_dir():
        raise FileNotFoundError(f"mesh_root {root} is not a directory")
    tree: dict[str, list[tuple[str, Path]]] = {}
    for syn_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        objects = []
        for obj_dir in sorted(p for p in syn_dir.iterdir() if p.is_dir()):
            f = find_model_file(obj_dir)
            if f is not None:
                objects.append((obj_dir.name, f))
        if objects:
            tree[syn_dir.name] = objects
    if not tree:
        raise FileNotFoundError(
            f"mesh_root {root} holds no meshes; expected <synset>/<obj_id>/models/*.obj "
            f"(or {', '.join(MESH_SUFFIXES[1:])})"
        )
    return tree
