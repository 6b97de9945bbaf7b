"""Procedural shape families: one class each, built from closed trimesh parts.

Canonical frame of every family: z up, the object's "front" along +x, sizes in arbitrary
units (``normalize_mesh`` rescales). Almost every family has at most a mirror plane and no
proper rotational symmetry, so the object's pose can be recovered from an image.
Intra-class variation (proportions, optional parts) comes from the ``rng`` passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh

from equissl.datasets.render import primitives as P

_ROT_X90 = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # local y -> z, local z -> -y
_ROT_CYCLE = np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])  # local x -> y, y -> z, z -> x


def _rot4(rotation: np.ndarray, translation) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = translation
    return m


def _chair(rng: np.random.Generator) -> trimesh.Trimesh:
    d, w = rng.uniform(0.45, 0.6), rng.uniform(0.45, 0.6)  # seat depth (x), width (y)
    t, h = rng.uniform(0.05, 0.08), rng.uniform(0.4, 0.5)  # seat thickness, leg height
    lt, back_h = rng.uniform(0.04, 0.06), rng.uniform(0.45, 0.65)
    parts = [P.box((d, w, t), (0, 0, h + t / 2))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (d / 2 - lt), sy * (w / 2 - lt)
            if rng.random() < 0.5:
                parts.append(P.box((lt, lt, h), (x, y, h / 2)))
            else:
                parts.append(P.cylinder((x, y, 0), (x, y, h), lt / 2, sections=12))
    z0, bt = h + t, 0.05
    x_back = -d / 2 + bt / 2
    if rng.random() < 0.5:  # solid back
        parts.append(P.box((bt, w, back_h), (x_back, 0, z0 + back_h / 2)))
    else:  # two posts, a top rail and vertical slats
        for sy in (-1, 1):
            parts.append(P.box((bt, lt, back_h), (x_back, sy * (w / 2 - lt / 2), z0 + back_h / 2)))
        parts.append(P.box((bt, w, 0.09), (x_back, 0, z0 + back_h - 0.045)))
        n = int(rng.integers(2, 5))
        for y in np.linspace(-w / 2 + lt, w / 2 - lt, n + 2)[1:-1]:
            parts.append(P.box((bt * 0.6, 0.035, back_h), (x_back, y, z0 + back_h / 2)))
    if rng.random() < 0.4:  # armrests on front supports
        arm_z = z0 + rng.uniform(0.18, 0.25)
        for sy in (-1, 1):
            y = sy * (w / 2 - 0.02)
            parts.append(P.box((d, 0.05, 0.04), (0, y, arm_z)))
            parts.append(P.box((0.04, 0.04, arm_z - z0), (d / 2 - 0.05, y, (arm_z + z0) / 2)))
    return P.combine(parts)


def _table(rng: np.random.Generator) -> trimesh.Trimesh:
    length, width = rng.uniform(0.9, 1.2), rng.uniform(0.5, 0.7)
    height, t, lt = rng.uniform(0.55, 0.75), 0.05, rng.uniform(0.05, 0.08)
    parts = [P.box((length, width, t), (0, 0, height - t / 2))]
    short = rng.uniform(0.35, 0.55) * height  # the +x,+y leg stops short of the floor
    for sx in (-1, 1):
        for sy in (-1, 1):
            bottom = short if sx > 0 and sy > 0 else 0.0
            top = height - t
            parts.append(
                P.box(
                    (lt, lt, top - bottom),
                    (sx * (length / 2 - lt), sy * (width / 2 - lt), (top + bottom) / 2),
                )
            )
    dw = rng.uniform(0.25, 0.35) * length  # drawer block under the +x half
    parts.append(P.box((dw, 0.6 * width, 0.1), (length * 0.2, 0, height - t - 0.05)))
    parts.append(P.box((0.03, 0.12, 0.03), (length * 0.2 + dw / 2 + 0.015, 0, height - t - 0.05)))
    if rng.random() < 0.5:  # stretcher between the two -x legs
        parts.append(P.box((lt * 0.6, width - 2 * lt, 0.04), (-(length / 2 - lt), 0, 0.2 * height)))
    return P.combine(parts)


def _mug(rng: np.random.Generator) -> trimesh.Trimesh:
    r, h, wall = rng.uniform(0.22, 0.3), rng.uniform(0.45, 0.7), 0.04
    body = trimesh.creation.annulus(r_min=r - wall, r_max=r, height=h, sections=32)
    body.apply_translation((0, 0, h / 2))
    bottom = P.cylinder((0, 0, 0), (0, 0, 0.05), r - wall / 2, sections=32)
    hr = rng.uniform(0.32, 0.42) * h  # handle arc radius
    hz = rng.uniform(0.45, 0.55) * h
    cx = r - 0.3 * hr
    half = np.arccos(np.clip((0.3 * hr - wall / 2) / hr, -1, 1))
    path = P.arc((cx, 0, hz), hr, -half, half, (1, 0, 0), (0, 0, 1), n=20)
    handle = P.tube(path, rng.uniform(0.035, 0.05), sections=10)
    return P.combine([body, bottom, handle])


def _airplane(rng: np.random.Generator) -> trimesh.Trimesh:
    rf = rng.uniform(0.05, 0.08)
    parts = [P.capsule((-0.45, 0, 0), (0.45, 0, 0), rf, count=12)]
    xw, cr = rng.uniform(-0.05, 0.1), rng.uniform(0.2, 0.3)
    span, sweep, taper = rng.uniform(0.45, 0.6), rng.uniform(0.05, 0.2), rng.uniform(0.3, 0.6)
    ct = cr * taper
    for s in (-1, 1):
        quad = [
            (xw + cr / 2, 0),
            (xw + cr / 2 - sweep, s * span),
            (xw + cr / 2 - sweep - ct, s * span),
            (xw - cr / 2, 0),
        ]
        parts.append(P.slab(quad, 0.025, center=(0, 0, -0.3 * rf)))
        tail = [(-0.33, 0), (-0.4, s * 0.2), (-0.46, s * 0.2), (-0.47, 0)]
        parts.append(P.slab(tail, 0.02, center=(0, 0, 0.2 * rf)))
    fin_h = rng.uniform(0.18, 0.26)
    fin = [(-0.3, 0), (-0.45, fin_h), (-0.5, fin_h), (-0.49, 0)]
    parts.append(P.slab(fin, 0.02, rotation=_ROT_X90, center=(0, 0, 0.5 * rf)))
    if rng.random() < 0.6:  # one engine under each wing
        for s in (-1, 1):
            y = s * span * 0.45
            x = xw + cr / 2 - sweep * 0.45
            parts.append(
                P.cylinder((x + 0.05, y, -rf - 0.03), (x - 0.12, y, -rf - 0.03), 0.035, sections=16)
            )
    return P.combine(parts)


def _desk_lamp(rng: np.random.Generator) -> trimesh.Trimesh:
    base_r = rng.uniform(0.15, 0.2)
    parts = [P.cylinder((0, 0, 0), (0, 0, 0.05), base_r, sections=32)]
    a1, l1 = rng.uniform(0.2, 0.55), rng.uniform(0.4, 0.55)  # lower arm leans back (-x)
    j1 = np.array([0.0, 0, 0.05])
    j2 = j1 + l1 * np.array([-np.sin(a1), 0, np.cos(a1)])
    a2, l2 = rng.uniform(-0.1, 0.4), rng.uniform(0.4, 0.55)  # upper arm reaches forward
    j3 = j2 + l2 * np.array([np.cos(a2), 0, np.sin(a2)])
    parts += [
        P.cylinder(j1, j2, 0.025, sections=12),
        P.cylinder(j2, j3, 0.025, sections=12),
        P.sphere(j2, 0.045, 1),
        P.sphere(j3, 0.04, 1),
    ]
    b = rng.uniform(0.3, 0.8)  # shade axis, tilted forward from straight down
    axis = np.array([np.sin(b), 0, -np.cos(b)])
    ln, r0, r1 = rng.uniform(0.16, 0.22), 0.04, rng.uniform(0.11, 0.15)
    shade = P.lathe([(0, 0), (r0, 0), (r1, ln), (0, ln)], center=j3, direction=axis)
    parts.append(shade)
    return P.combine(parts)


def _boot(rng: np.random.Generator) -> trimesh.Trimesh:
    length, width = rng.uniform(0.65, 0.8), rng.uniform(0.22, 0.28)
    heel = rng.uniform(0.03, 0.08)
    parts = [
        P.box((length, width, 0.05), (0, 0, heel + 0.025)),
        P.box((0.15, width, heel), (-length / 2 + 0.075, 0, heel / 2)),
    ]
    foot_h = rng.uniform(0.12, 0.18)
    z = heel + 0.05
    parts.append(P.box((length * 0.7, width * 0.95, foot_h), (-length * 0.1, 0, z + foot_h / 2)))
    parts.append(
        P.ellipsoid(
            (length * 0.3, 0, z + foot_h * 0.4), (length * 0.22, width * 0.47, foot_h * 0.85)
        )
    )
    shaft_h, shaft_d = rng.uniform(0.35, 0.6), rng.uniform(0.2, 0.26)
    xs = -length / 2 + shaft_d / 2
    parts.append(P.box((shaft_d, width * 0.95, shaft_h), (xs, 0, z + shaft_h / 2)))
    parts.append(P.box((shaft_d + 0.03, width + 0.03, 0.05), (xs, 0, z + shaft_h - 0.025)))
    if rng.random() < 0.5:  # pull tab at the back
        parts.append(P.box((0.03, 0.06, 0.1), (xs - shaft_d / 2 - 0.01, 0, z + shaft_h)))
    return P.combine(parts)


def _key(rng: np.random.Generator) -> trimesh.Trimesh:
    th = rng.uniform(0.05, 0.07)
    ro = rng.uniform(0.14, 0.18)
    ring = trimesh.creation.annulus(
        r_min=ro * rng.uniform(0.4, 0.6), r_max=ro, height=th, sections=32
    )
    ring.apply_translation((-0.5 + ro, 0, 0))
    x0, x1, bw = -0.5 + 1.9 * ro, 0.5, rng.uniform(0.08, 0.11)
    parts = [
        ring,
        P.box((x1 - x0, bw, th), ((x0 + x1) / 2, 0, 0)),
        P.box((0.04, bw + 0.08, th), (x0 + 0.03, 0.04, 0)),
    ]  # shoulder on the +y side
    n = int(rng.integers(3, 6))
    xs = np.sort(rng.uniform(x0 + 0.12, x1 - 0.05, n))
    for x in xs:  # teeth hang below the blade on the -y side
        depth = rng.uniform(0.04, 0.1)
        parts.append(P.box((0.045, depth, th), (x, -bw / 2 - depth / 2 + 0.005, 0)))
    return P.combine(parts)


def _hammer(rng: np.random.Generator) -> trimesh.Trimesh:
    lh = rng.uniform(0.7, 0.9)
    parts = [
        P.cylinder((0, 0, 0), (0, 0, lh), 0.03, sections=16),
        P.capsule((0, 0, 0.04), (0, 0, rng.uniform(0.25, 0.35)), 0.042, count=10),
    ]
    hl, hs = rng.uniform(0.3, 0.4), rng.uniform(0.06, 0.08)
    xf = rng.uniform(0.35, 0.5) * hl  # the head is not centred on the handle
    parts.append(P.box((hl, hs, hs), (xf - hl / 2, 0, lh)))
    parts.append(P.cylinder((xf, 0, lh), (xf + 0.06, 0, lh), hs * 0.65, sections=20))
    xb = xf - hl
    for y in (-0.02, 0.02):  # curved claw prongs at the back end
        path = P.arc((xb, y, lh - 0.12), 0.12, np.pi / 2, np.pi * 0.95, (1, 0, 0), (0, 0, 1), 10)
        parts.append(P.tube(path, 0.018, sections=8))
    return P.combine(parts)


def _teapot(rng: np.random.Generator) -> trimesh.Trimesh:
    rb, hb = rng.uniform(0.26, 0.32), rng.uniform(0.35, 0.45)
    profile = [
        (0, 0),
        (rb * 0.75, 0),
        (rb, hb * 0.35),
        (rb * 0.9, hb * 0.75),
        (rb * 0.5, hb),
        (0, hb),
    ]
    parts = [P.lathe(profile, sections=32), P.sphere((0, 0, hb + 0.03), 0.045, 1)]
    sx = rng.uniform(0.45, 0.55)
    spout = np.array(
        [
            (rb * 0.8, 0, hb * 0.3),
            (rb + 0.06, 0, hb * 0.4),
            (sx - 0.05, 0, hb * 0.65),
            (sx, 0, hb * 0.85),
        ]
    )
    parts.append(P.tube(spout, rng.uniform(0.03, 0.045), sections=12))
    hr = rng.uniform(0.12, 0.16)
    path = P.arc((-rb * 0.75, 0, hb * 0.5), hr, np.pi * 0.4, np.pi * 1.6, (1, 0, 0), (0, 0, 1), 20)
    parts.append(P.tube(path, 0.03, sections=10))
    return P.combine(parts)


def _car(rng: np.random.Generator) -> trimesh.Trimesh:
    length, width, wr = rng.uniform(0.9, 1.1), rng.uniform(0.4, 0.5), rng.uniform(0.09, 0.12)
    bh = rng.uniform(0.15, 0.2)
    z_body = wr * 0.9
    parts = [P.box((length, width, bh), (0, 0, z_body + bh / 2))]
    cl = rng.uniform(0.4, 0.55) * length  # cabin length, set toward the rear
    cx, ch = -rng.uniform(0.08, 0.15) * length, rng.uniform(0.14, 0.2)
    zc = z_body + bh
    cabin = [
        (cx - cl / 2, zc),
        (cx + cl / 2, zc),
        (cx + cl / 2 - 0.12, zc + ch),
        (cx - cl / 2 + 0.05, zc + ch),
    ]
    parts.append(P.slab(cabin, width * 0.85, rotation=_ROT_X90))
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * length * 0.32, sy * width / 2
            parts.append(P.cylinder((x, y - 0.04, wr), (x, y + 0.04, wr), wr, sections=20))
    if rng.random() < 0.5:  # rear spoiler
        xs = -length / 2 + 0.05
        parts.append(P.box((0.08, width, 0.02), (xs, 0, zc + 0.08)))
        for sy in (-1, 1):
            parts.append(P.box((0.02, 0.02, 0.08), (xs, sy * width * 0.3, zc + 0.04)))
    return P.combine(parts)


def _l_bracket(rng: np.random.Generator) -> trimesh.Trimesh:
    la, lb = rng.uniform(0.8, 1.0), rng.uniform(0.4, 0.55)  # unequal arms
    w, t = rng.uniform(0.3, 0.45), rng.uniform(0.06, 0.09)
    parts = [P.box((la, w, t), (la / 2, 0, t / 2)), P.box((t, w, lb), (t / 2, 0, lb / 2))]
    g = rng.uniform(0.2, 0.3)
    gusset = P.slab([(t, t), (t + g, t), (t, t + g)], 0.05, rotation=_ROT_X90)
    parts.append(gusset)
    n = int(rng.integers(1, 4))
    for x in np.linspace(0.35 * la, 0.9 * la, n):  # bolt heads on the long arm, one side
        parts.append(P.cylinder((x, w * 0.25, t), (x, w * 0.25, t + 0.03), 0.04, sections=6))
    parts.append(
        P.cylinder((t, -w * 0.2, lb * 0.7), (t + 0.03, -w * 0.2, lb * 0.7), 0.04, sections=6)
    )
    return P.combine(parts)


def _house(rng: np.random.Generator) -> trimesh.Trimesh:
    lx, ly, h = rng.uniform(0.6, 0.8), rng.uniform(0.45, 0.6), rng.uniform(0.4, 0.5)
    rh, ov = rng.uniform(0.2, 0.3), 0.05
    parts = [P.box((lx, ly, h), (0, 0, h / 2))]
    gable = [(-ly / 2 - ov, 0), (ly / 2 + ov, 0), (0, rh)]
    parts.append(
        P.prism(gable, -lx / 2 - ov, lx / 2 + ov).apply_transform(_rot4(_ROT_CYCLE, (0, 0, h)))
    )
    cx, cy = rng.uniform(0.1, 0.3) * lx, rng.uniform(0.15, 0.25) * ly
    parts.append(P.box((0.08, 0.08, rh + 0.1), (cx, cy, h + rh * 0.5 + 0.05)))
    ax, ah = rng.uniform(0.35, 0.5) * lx, rng.uniform(0.5, 0.7) * h  # annex on the +y side
    aw = rng.uniform(0.3, 0.45) * ly
    parts.append(P.box((ax, aw, ah), (-lx / 2 + ax / 2, ly / 2 + aw / 2 - 0.01, ah / 2)))
    dy = rng.uniform(-0.25, 0.25) * ly  # door on the +x face
    parts.append(P.box((0.03, 0.12, 0.22), (lx / 2 + 0.01, dy, 0.11)))
    parts.append(P.box((0.12, 0.03, 0.1), (-lx * 0.2, -ly / 2 - 0.01, h * 0.6)))  # one window
    return P.combine(parts)


@dataclass(frozen=True)
class ShapeFamily:
    """One procedural class: its name, synset-style id and mesh builder."""

    name: str
    synset: str
    build: Callable[[np.random.Generator], trimesh.Trimesh]


_BUILDERS: list[tuple[str, Callable[[np.random.Generator], trimesh.Trimesh]]] = [
    ("chair", _chair),
    ("table", _table),
    ("mug", _mug),
    ("airplane", _airplane),
    ("desk_lamp", _desk_lamp),
    ("boot", _boot),
    ("key", _key),
    ("hammer", _hammer),
    ("teapot", _teapot),
    ("car", _car),
    ("l_bracket", _l_bracket),
    ("house", _house),
]

#: The procedural families in class order. Synsets are 8-digit strings outside ShapeNet's
#: range ("90000000", "90000001", ...) so they sort in this order and never collide.
FAMILIES: tuple[ShapeFamily, ...] = tuple(
    ShapeFamily(name, f"{90_000_000 + k:08d}", fn) for k, (name, fn) in enumerate(_BUILDERS)
)
FAMILY_BY_SYNSET: dict[str, ShapeFamily] = {f.synset: f for f in FAMILIES}


def build_shape(family: str | ShapeFamily, rng: np.random.Generator) -> trimesh.Trimesh:
    """Raw (un-normalised) mesh of one object of ``family`` drawn with ``rng``."""
    fam = family if isinstance(family, ShapeFamily) else _by_name(family)
    mesh = fam.build(rng)
    mesh.remove_unreferenced_vertices()
    return mesh


def _by_name(name: str) -> ShapeFamily:
    for fam in FAMILIES:
        if fam.name == name:
            return fam
    raise KeyError(f"unknown shape family {name!r}; known: {[f.name for f in FAMILIES]}")
