"""3DIEBench-style renders with Mitsuba 3 and trimesh, written in the real on-disk format.

Modules, one job each: ``primitives`` (closed mesh parts), ``shapes`` (procedural shape
families), ``meshes`` (normalisation, ShapeNet-layout mesh trees), ``latents`` (per-view
parameters and per-object random streams), ``scene`` (the Mitsuba scene and view renderer),
``layout`` (file names, atomic writes, split files), ``catalog`` (objects, labels, splits,
chunks), ``worker`` (render one object), ``generate`` (the whole job), ``contact_sheet``.
"""

from equissl.datasets.render.contact_sheet import class_name, make_contact_sheet
from equissl.datasets.render.generate import catalog_for, generate_iebench
from equissl.datasets.render.latents import sample_latents
from equissl.datasets.render.scene import ViewRenderer, object_pose, select_variant
from equissl.datasets.render.shapes import FAMILIES, build_shape

__all__ = [
    "FAMILIES",
    "ViewRenderer",
    "build_shape",
    "catalog_for",
    "class_name",
    "generate_iebench",
    "make_contact_sheet",
    "object_pose",
    "sample_latents",
    "select_variant",
]
