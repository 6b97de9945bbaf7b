"""Lie point symmetries as exact linear maps on extended coordinates, with their group law.

Every symmetry used here (translations, Galilean boosts, scalings — and for 2-D
Navier–Stokes the quadratic boosts ``x → x + εt², v → v + 2εt``) acts *linearly* on the
extended point ``p = (1, t, t², x[, y], u…)``: ``t → t + τ`` sends ``t²`` to
``t² + 2τt + τ²``, still linear in ``(1, t, t²)``. A group element is therefore a matrix
``g`` acting on ``p``; composition is a matrix product, the inverse a matrix inverse, and
``g = expm(Σ εᵢ Aᵢ)`` for generator matrices ``Aᵢ`` and strengths ``εᵢ`` is exact
(``torch.linalg.matrix_exp``). The relative action between two views is the strength vector
of ``g_a⁻¹ g_b`` — recovered with a matrix logarithm (inverse scaling and squaring) and a
projection on the generators — so the action space is exact, not a difference of strengths.

The public code of Mialon et al. composes the generators by a second-order Lie–Trotter
(Strang) splitting with 2 steps; ``composition="strang"`` reproduces that construction,
``composition="expm"`` (default) is the exact exponential. Both act pointwise on
coordinate channels, so nothing is resampled (the paper's coordinate mode; docs/pde.md).

Generators (strength ε; ``u`` the field, one spatial dimension):

=========== ================================================ =======================
name        action                                           equations
=========== ================================================ =======================
t_shift     t → t + ε                                        all
x_shift     x → x + ε                                        all
boost       x → x + εt, u → u + ε                            all 1-D (Galilean)
scale_kdv   t → e^{3ε}t, x → e^{ε}x, u → e^{−2ε}u            KdV
scale_burg  t → e^{2ε}t, x → e^{ε}x, u → e^{−ε}u             Burgers
=========== ================================================ =======================

KS has no scaling symmetry. Burgers' projective symmetry is not affine and is not used.

2-D Navier–Stokes with buoyancy along +y (extended point ``(1, t, t², x, y, s, v_x, v_y)``):
t/x/y shifts; Galilean boosts ``x → x + εt, v_x → v_x + ε`` (and in y); quadratic boosts
``x → x + εt², v_x → v_x + 2εt`` (and in y; the pressure absorbs the uniform acceleration,
the vorticity equation is unchanged); scaling ``t → e^{2ε}t, x, y → e^{ε}(x, y),
v → e^{−ε}v, s → e^{−3ε}s`` (keeps ν and the buoyancy b). Rotations are not symmetries
once gravity picks a direction.

The generator matrices come in two sets (:data:`GENERATOR_SETS`, the data's
``generators``): ``exact``, the symmetries above, and ``released``, what the public code of
Mialon et al. applies in its no-pressure path (``transformations.py``), which the paper's
Navier–Stokes results were trained with. They differ in the quadratic boosts only: the
released ``quad_boost_x`` is the linear boost ``x → x + εt, v_x → v_x + ε`` a second time,
and its ``quad_boost_y`` moves ``y → y + εt²`` but ``v_y → v_y + ε`` (not ``2εt``). At the
recipe's strength 0.01 the exact quadratic boosts change the velocity by up to ``2εt``
(1.6 at t = 82), the released ones by 0.01 (bench/pde_ns_augmentation.py measures both).
The released set is not a Lie algebra: its x pair is one generator twice (the relative
action's coordinates split a combined x boost equally between ``boost_x`` and
``quad_boost_x``, least squares' minimum-norm solution), and the released ``quad_boost_y``'s
commutators with the scaling and the time shift leave the span. On shifts and boosts the
relative action still rebuilds ``g_a⁻¹ g_b`` exactly; with scaling or a time shift it is the
least-squares projection of the logarithm (a residual of order 1e-5 in the element at
strengths 0.01, tested). Only the ``lie`` probe's target uses it; each view applies its
drawn element as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Extended coordinates of 1-D data: (1, t, t², x, u)
ONE, T, T2, X, U = range(5)
DIM_1D = 5


def _gen(entries: dict[tuple[int, int], float], dim: int = DIM_1D) -> Tensor:
    a = torch.zeros(dim, dim, dtype=torch.float64)
    for (i, j), v in entries.items():
        a[i, j] = v
    return a


def t_shift_1d() -> Tensor:
    # d/dε of (t + ε, (t + ε)²) at ε = 0: t' = 1, (t²)' = 2t
    return _gen({(T, ONE): 1.0, (T2, T): 2.0})


def x_shift_1d() -> Tensor:
    return _gen({(X, ONE): 1.0})


def boost_1d() -> Tensor:
    return _gen({(X, T): 1.0, (U, ONE): 1.0})


def scaling_1d(t_power: float, u_power: float) -> Tensor:
    """``t → e^{aε} t, x → e^{ε} x, u → e^{bε} u`` (``t²`` scales with ``2a``)."""
    return _gen({(T, T): t_power, (T2, T2): 2 * t_power, (X, X): 1.0, (U, U): u_power})


GENERATORS: dict[str, dict[str, Tensor]] = {
    "kdv": {
        "t_shift": t_shift_1d(),
        "x_shift": x_shift_1d(),
        "boost": boost_1d(),
        "scale": scaling_1d(3.0, -2.0),
    },
    "ks": {"t_shift": t_shift_1d(), "x_shift": x_shift_1d(), "boost": boost_1d()},
    "burgers": {
        "t_shift": t_shift_1d(),
        "x_shift": x_shift_1d(),
        "boost": boost_1d(),
        "scale": scaling_1d(2.0, -1.0),
    },
}


# Extended coordinates of 2-D Navier–Stokes data: (1, t, t², x, y, s, vx, vy)
NS_X, NS_Y, NS_S, NS_VX, NS_VY = 3, 4, 5, 6, 7
DIM_NS = 8


def ns_generators() -> dict[str, Tensor]:
    g = {
        "t_shift": {(T, ONE): 1.0, (T2, T): 2.0},
        "x_shift": {(NS_X, ONE): 1.0},
        "y_shift": {(NS_Y, ONE): 1.0},
        "boost_x": {(NS_X, T): 1.0, (NS_VX, ONE): 1.0},
        "boost_y": {(NS_Y, T): 1.0, (NS_VY, ONE): 1.0},
        "quad_boost_x": {(NS_X, T2): 1.0, (NS_VX, T): 2.0},
        "quad_boost_y": {(NS_Y, T2): 1.0, (NS_VY, T): 2.0},
        "scale": {
            (T, T): 2.0,
            (T2, T2): 4.0,
            (NS_X, NS_X): 1.0,
            (NS_Y, NS_Y): 1.0,
            (NS_S, NS_S): -3.0,
            (NS_VX, NS_VX): -1.0,
            (NS_VY, NS_VY): -1.0,
        },
    }
    return {k: _gen(v, DIM_NS) for k, v in g.items()}


GENERATORS["ns"] = ns_generators()

#: the generator sets: ``exact`` (:data:`GENERATORS`) and ``released``, where the public
#: code's matrices differ from the exact symmetries (the module docstring); an equation
#: a set does not change keeps its exact generators there
GENERATOR_SETS: dict[str, dict[str, dict[str, Tensor]]] = {
    "exact": GENERATORS,
    "released": {
        "ns": {
            **GENERATORS["ns"],
            "quad_boost_x": _gen({(NS_X, T): 1.0, (NS_VX, ONE): 1.0}, DIM_NS),
            "quad_boost_y": _gen({(NS_Y, T2): 1.0, (NS_VY, ONE): 1.0}, DIM_NS),
        },
    },
}


def matrix_log(m: Tensor, squarings: int = 12, terms: int = 14) -> Tensor:
    """Principal logarithm of ``[..., n, n]`` matrices with positive real spectrum.

    Inverse scaling and squaring: take ``2^s``-th roots by Denman–Beavers iterations until
    ``m ≈ I``, then the Mercator series, times ``2^s``. Accurate to ~1e-12 in float64 for
    the near-identity group elements used here.
    """
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device).expand_as(m)
    y = m
    for _ in range(squarings):
        z = eye
        for _ in range(30):  # Denman–Beavers square root
            y, z = 0.5 * (y + torch.linalg.inv(z)), 0.5 * (z + torch.linalg.inv(y))
        # y is now sqrt of the previous y
    x = y - eye
    out = torch.zeros_like(x)
    power = eye
    for k in range(1, terms + 1):
        power = power @ x
        out = out + ((-1) ** (k + 1) / k) * power
    return out * (2.0**squarings)


@dataclass
class SymmetryGroup:
    """A Lie group of point symmetries given by named generator matrices ``[n, n]``."""

    names: tuple[str, ...]
    generators: Tensor  # [P, n, n] float64

    @classmethod
    def for_equation(
        cls, equation: str, names: tuple[str, ...] | None = None, generators: str = "exact"
    ) -> SymmetryGroup:
        """The group of ``equation``'s generators ``names`` (all by default) from the set
        ``generators`` (:data:`GENERATOR_SETS`)."""
        if generators not in GENERATOR_SETS:
            raise ValueError(
                f"generators={generators!r}: choose one of {', '.join(GENERATOR_SETS)}"
            )
        if equation not in GENERATOR_SETS[generators]:
            raise ValueError(
                f"generators={generators}: the public code has no {equation} generators "
                f"(it covers {', '.join(GENERATOR_SETS[generators])}); use generators=exact"
            )
        table = GENERATOR_SETS[generators][equation]
        names = tuple(names or table)
        unknown = [n for n in names if n not in table]
        if unknown:
            raise ValueError(f"{equation} has no symmetry {unknown}; it has {list(table)}")
        return cls(names, torch.stack([table[n] for n in names]))

    @property
    def dim(self) -> int:
        return len(self.names)

    def algebra(self, eps: Tensor) -> Tensor:
        """``Σ εᵢ Aᵢ`` as ``[..., n, n]`` for strengths ``eps [..., P]``."""
        return torch.einsum("...p,pij->...ij", eps.to(torch.float64), self.generators)

    def element(self, eps: Tensor, composition: str = "expm", steps: int = 2) -> Tensor:
        """Group element ``[..., n, n]`` of strengths ``eps [..., P]``.

        ``expm``: exactly ``exp(Σ εᵢ Aᵢ)``. ``strang``: the public code's second-order
        Lie–Trotter splitting, ``steps`` times the palindromic product of half steps.
        """
        if composition == "expm":
            return torch.linalg.matrix_exp(self.algebra(eps))
        if composition != "strang":
            raise ValueError(f"composition must be expm or strang, not {composition!r}")
        eps = eps.to(torch.float64)
        halves = [
            torch.linalg.matrix_exp(eps[..., i, None, None] * self.generators[i] / (2 * steps))
            for i in range(self.dim)
        ]
        g = torch.eye(self.generators.shape[-1], dtype=torch.float64).expand(
            *eps.shape[:-1], -1, -1
        )
        for _ in range(steps):
            # applied right-to-left to points: reversed order first, then forward order
            for h in reversed(halves):
                g = h @ g
            for h in halves:
                g = h @ g
        return g

    def coordinates(self, g: Tensor) -> Tensor:
        """Strengths ``[..., P]`` with ``exp(Σ εᵢ Aᵢ) = g`` (least squares on the generators)."""
        log = matrix_log(g).flatten(-2)  # [..., n²]
        basis = self.generators.flatten(-2).T  # [n², P]
        return torch.linalg.lstsq(
            basis.expand(*log.shape[:-1], -1, -1), log.unsqueeze(-1)
        ).solution.squeeze(-1)

    @staticmethod
    def compose(g1: Tensor, g2: Tensor) -> Tensor:
        """``g1 ∘ g2`` (apply g2 first)."""
        return g1 @ g2

    @staticmethod
    def inverse(g: Tensor) -> Tensor:
        return torch.linalg.inv(g)

    def relative(self, eps_a: Tensor, eps_b: Tensor, composition: str = "expm") -> Tensor:
        """Strengths of ``g_a⁻¹ g_b`` — the element taking view a's frame to view b's — in
        exponential coordinates, for views made by :meth:`element` with ``composition``.

        On a commuting subgroup (shifts, boosts) this is ``ε_b − ε_a``; otherwise it is the
        exact product (e.g. a time shift and a boost give an x-shift component), not the
        difference of the strengths.
        """
        ga, gb = self.element(eps_a, composition), self.element(eps_b, composition)
        return self.coordinates(self.inverse(ga) @ gb)


def apply_to_points(g: Tensor, t: Tensor, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Transform sample points pointwise: ``t, x, u`` broadcastable ``[..., T, X]`` arrays,
    ``g [..., 5, 5]`` (leading dims broadcast against the samples' leading dims)."""
    t, x, u = torch.broadcast_tensors(t.double(), x.double(), u.double())
    p = torch.stack((torch.ones_like(t), t, t * t, x, u), dim=-1)  # [..., T, X, 5]
    q = torch.einsum("...ij,...tsj->...tsi", g, p)
    return q[..., T], q[..., X], q[..., U]


def apply_to_points_2d(
    g: Tensor, t: Tensor, x: Tensor, y: Tensor, fields: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Navier–Stokes version of :func:`apply_to_points`: ``fields [..., 3, X, Y]`` are
    (s, v_x, v_y); ``t, x, y`` broadcast against ``[..., X, Y]``; ``g [8, 8]``."""
    s, vx, vy = fields.double().unbind(-3)
    t, x, y, s, vx, vy = torch.broadcast_tensors(t.double(), x.double(), y.double(), s, vx, vy)
    p = torch.stack((torch.ones_like(t), t, t * t, x, y, s, vx, vy), dim=-1)
    q = p @ g.T
    return q[..., T], q[..., NS_X], q[..., NS_Y], q[..., NS_S:].movedim(-1, -3)
