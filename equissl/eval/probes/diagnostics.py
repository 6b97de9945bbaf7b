"""What a representation learned, per part, without a trained head: how far it moves when
one object is rotated against how far it moves when the object changes (invariance), how
much of that movement the known rotation explains (equivariance), and a PCA picture.

Every score uses the L2-normalised features ``z`` of the part (``[N, V, D]``, ``N``
objects, ``V`` views), as the cosine-based probes see them.

**Distances** (validation split). ``pairs_per_object`` seeded view pairs ``(a, b)``,
``a ≠ b``, per object ``o``, and for each a different object ``o' ≠ o`` drawn at random:

* ``within  = mean ‖z_{o,a} − z_{o,b}‖`` (same object, another view),
* ``between = mean ‖z_{o,a} − z_{o',b}‖`` (another object),
* ``invariance = 1 − within / between``: 1 when the views of an object coincide, about 0
  when the object does not matter (a view of the object is as far as another object).

**Variance decomposition** (validation split, exact, a one-way ANOVA with the object as the
factor). With ``m_o`` the mean over the views of object ``o`` and ``m`` the grand mean::

    SS_total = Σ_{o,v} ‖z_{o,v} − m‖²
             = Σ_{o,v} ‖z_{o,v} − m_o‖²  +  V Σ_o ‖m_o − m‖²  =  SS_view + SS_object

``var_object = SS_object / SS_total`` and ``var_view = SS_view / SS_total`` (they sum to
1). Features that ignore the object still give ``var_object ≈ 1/V`` (the object means of
pure noise spread by ``σ²/V``), so read it against that.

**Equivariance** (fitted on the training split, scored on validation, closed form). For a
pair ``(a, b)`` of one object with relative action ``g`` (``action.relative``, e.g. the
quaternion of ``R_a⁻¹ R_b``; ``components``, else the method's action, else the data's),
the displacement ``Δ = z_b − z_a`` is regressed by ridge least squares on two designs:

* reduced: ``[1, z̃_a]`` — what the start view alone predicts (regression to the mean);
* full: ``φ(g) ⊗ [1, z̃_a]`` with ``φ(g) = [1, g, g_i g_j (i ≤ j)]`` (``degree: 2``; ``[1, g]``
  for ``degree: 1``) — a linear map of ``z_a`` whose matrix is a polynomial in ``g``, the
  closed-form version of a hypernetwork predictor ``z_b = ρ(g) z_a``.

``z̃`` is ``z`` on its first ``components_pca`` principal axes (of the training features),
which keeps the design small. ``equivariance = 1 − SS_res(full) / SS_res(reduced)`` on the
validation pairs (a partial R²): the share of the displacement left unexplained by the start
view that the known action explains. It is 1 when ``z_b`` is such a polynomial map of ``z_a``
— e.g. features linear in the rotation matrix, since ``R_b = R_a R(g)`` and ``R(g)`` is
quadratic in the quaternion — and about 0 when views move at random; a part that does not
move at all (``SS_res(reduced) = 0``) scores 0. The ridge penalises the action's columns
only (given the start view), ``λ = r · tr(XᵀX) / F`` for those ``F`` columns ``X``, with
``r`` the one of ``ridges`` that predicts every fifth training object best from the others
(see :func:`equivariance`): a part that knows nothing of the action scores about 0, not a
negative overfit.

**PCA and t-SNE plots** (``pca_plot``, ``tsne_plot``): the validation views of the part on
their first two principal axes (``torch.pca_lowrank``), and as scikit-learn's t-SNE of a
seeded subset (``tsne_points``; initialised from the PCA, perplexity 30 or a third of the
points), coloured by class (a legend up to 20 classes) — or, for data without classes, by
the first invariant coefficient (a PDE's ν or buoyancy) — and by the view's absolute pose
(``pose_colour``: the rotation angle of a ``quaternion`` target, the wrapped angle of an
``angle`` target, chosen by the targets' kinds), one PNG per part and picture. A t-SNE
keeps neighbourhoods, not distances or axes: clusters are meaningful, the gaps between
them and the axes are not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from equissl.config import ProbeConfig
from equissl.datasets.contract import Action, ActionSpace, wrap_angle
from equissl.eval.plots import Colouring, plot_embedding, plot_pca
from equissl.eval.probes.base import EvalContext, Probe, ProbeResult, seeded
from equissl.eval.probes.pair_regression import fixed_pairs
from equissl.geometry import quaternion_angle
from equissl.registries import PROBES
from equissl.scores import RIDGES


@dataclass
class DiagnosticsProbeConfig(ProbeConfig):
    """Invariance, variance decomposition and equivariance of each part; PCA plots."""

    pairs_per_object: int = 10  # seeded view pairs per object (distances, regression)
    # action-space targets of the equivariance regression; None: the action the method is
    # conditioned on (its checkpoint's ``action``), else the data's default action
    components: list[str] | None = None
    degree: int = 2  # polynomial degree of the action in the regression's design (1 or 2)
    components_pca: int = 32  # principal axes of z_a in the design
    # relative ridges of the action's columns (times the mean diagonal of their XᵀX); the
    # one with the least error on every fifth training object is used
    ridges: list[float] = field(default_factory=lambda: list(RIDGES))
    pca_plot: bool = True
    pca_points: int = 5000  # validation views drawn in the PCA plot (seeded subset)
    tsne_plot: bool = True
    # validation views in the t-SNE (seeded subset; its cost grows as n log n: ~10 s
    # for 1,000 points of 512-d on one core of a loaded 2-core machine)
    tsne_points: int = 1000


def unit(rows: Tensor) -> Tensor:
    """Cached feature rows ``[..., D]`` L2-normalised in float32 (row by row, so normalising
    gathered rows equals gathering normalised ones)."""
    return F.normalize(rows.float(), dim=-1)


def distances(z: Tensor, pairs_per_object: int, seed: int) -> dict[str, float]:
    """``within``, ``between`` and ``invariance`` of the normalised features of ``z [N, V,
    D]`` (``N ≥ 2``, ``V ≥ 2``) on seeded pairs; see the module docstring. Pairs are
    gathered chunk by chunk from ``z`` (the memory-mapped cache)."""
    n, v, _ = z.shape
    o, a, b = fixed_pairs(n, v, pairs_per_object, seed).unbind(1)
    gen = torch.Generator().manual_seed(seed + 1)
    other = (o + torch.randint(1, n, o.shape, generator=gen)) % n
    within = between = 0.0
    for sl in chunks(len(o)):
        za = unit(z[o[sl], a[sl]])
        within += float((za - unit(z[o[sl], b[sl]])).double().norm(dim=-1).sum())
        between += float((za - unit(z[other[sl], b[sl]])).double().norm(dim=-1).sum())
    within, between = within / len(o), between / len(o)
    invariance = 1.0 - within / between if between > 0 else 0.0  # every view at one point
    return {"within": within, "between": between, "invariance": invariance}


def variance_decomposition(z: Tensor) -> dict[str, float]:
    """``var_object`` and ``var_view``, the shares of ``SS_total`` of the normalised
    features of ``z [N, V, D]`` between and within objects (one-way ANOVA sums of squares),
    in two passes over chunks of objects (the grand mean, then the sums of squares)."""
    n, v, d = z.shape
    blocks = chunks(n, max(1, 65536 // v))
    grand = torch.zeros(d, dtype=torch.float64)
    for sl in blocks:
        grand += unit(z[sl]).double().sum((0, 1))
    grand /= n * v
    ss_view = ss_object = 0.0
    for sl in blocks:
        x = unit(z[sl]).double()
        means = x.mean(1, keepdim=True)
        ss_view += float(((x - means) ** 2).sum())
        ss_object += float(v * ((means - grand) ** 2).sum())
    total = ss_view + ss_object
    if total <= 0:  # every view of every object at one point
        return {"var_object": 0.0, "var_view": 0.0}
    return {"var_object": ss_object / total, "var_view": ss_view / total}


def action_features(g: Tensor, degree: int) -> Tensor:
    """``φ(g) [M, F]``: ``[1, g]`` (degree 1) or ``[1, g, g_i g_j for i ≤ j]`` (degree 2)
    of actions ``g [M, K]``."""
    feats = [g.new_ones(len(g), 1), g]
    if degree == 2:
        i, j = torch.triu_indices(g.shape[1], g.shape[1])
        feats.append(g[:, i] * g[:, j])
    return torch.cat(feats, dim=1)


def ridge_solve(gram: Tensor, xty: Tensor, ridge: float) -> Tensor:
    """Weights ``[F, D]`` minimising ``‖y − x W‖² + λ‖W‖²`` from ``gram = xᵀx [F, F]`` and
    ``xty = xᵀy [F, D]``, with ``λ = ridge · tr(xᵀx) / F``."""
    lam = ridge * float(gram.diagonal().mean())
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    return torch.linalg.solve(gram + lam * eye, xty)


def chunks(count: int, size: int = 8192) -> list[slice]:
    return [slice(s, min(count, s + size)) for s in range(0, count, size)]


def principal_axes(z: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """Mean ``[D]`` and the first ``count`` principal axes ``[D, count']`` of the
    normalised views of ``z [N, V, D]`` (exact: eigenvectors of the covariance, largest
    first; accumulated in chunks of objects, float64)."""
    d = z.shape[-1]
    total, outer, rows = (
        torch.zeros(d, dtype=torch.float64),
        torch.zeros(d, d, dtype=torch.float64),
        0,
    )
    for sl in chunks(len(z), 1024):
        x = F.normalize(z[sl].double(), dim=-1).reshape(-1, d)
        total += x.sum(0)
        outer += x.T @ x
        rows += len(x)
    mean = total / rows
    cov = outer / rows - torch.outer(mean, mean)
    _, vecs = torch.linalg.eigh(cov)  # ascending
    return mean, vecs.flip(1)[:, : min(count, d)]


@dataclass
class Pairs:
    """View pairs of one split: features ``z [N, V, D]`` (not yet normalised), pairs
    ``[M, 3]`` (object, view a, view b) and their relative actions ``g [M, K]``."""

    z: Tensor
    pairs: Tensor
    g: Tensor

    def designs(
        self, sl: slice, mean: Tensor, axes: Tensor, degree: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Reduced design ``x_0 = [1, z̃_a]`` ``[m, 1 + p]``, the action's columns
        ``x_g = φ_{>0}(g) ⊗ x_0`` ``[m, (F − 1)(1 + p)]`` (the full design is ``[x_0, x_g]``)
        and the displacement ``Δ [m, D]`` of the pairs ``sl`` (float64)."""
        o, a, b = self.pairs[sl].unbind(1)
        za = F.normalize(self.z[o, a].double(), dim=-1)
        zb = F.normalize(self.z[o, b].double(), dim=-1)
        reduced = torch.cat((za.new_ones(len(za), 1), (za - mean) @ axes), dim=1)
        phi = action_features(self.g[sl].double(), degree)[:, 1:]
        extra = (phi[:, :, None] * reduced[:, None, :]).flatten(1)
        return reduced, extra, zb - za


@dataclass
class Moments:
    """Sums over pairs of the products of the designs ``x_0``, ``x_g`` and ``Δ`` (float64):
    everything the regressions need, accumulated in one pass over chunks."""

    g00: Tensor  # x_0ᵀ x_0
    g0d: Tensor  # x_0ᵀ Δ
    ggg: Tensor  # x_gᵀ x_g
    gg0: Tensor  # x_gᵀ x_0
    ggd: Tensor  # x_gᵀ Δ

    @classmethod
    def zeros(cls, cols: int, extra: int, d: int) -> Moments:
        shapes = ((cols, cols), (cols, d), (extra, extra), (extra, cols), (extra, d))
        return cls(*(torch.zeros(shape, dtype=torch.float64) for shape in shapes))

    def add(self, x0: Tensor, xg: Tensor, delta: Tensor) -> None:
        self.g00 += x0.T @ x0
        self.g0d += x0.T @ delta
        self.ggg += xg.T @ xg
        self.gg0 += xg.T @ x0
        self.ggd += xg.T @ delta

    def __add__(self, other: Moments) -> Moments:
        return Moments(*(getattr(self, k) + getattr(other, k) for k in MOMENTS))

    def fit(self, ridge: float) -> tuple[Tensor, Tensor, Tensor]:
        """``(W_0, B, W_g)`` (see :func:`equivariance`) with the relative ``ridge``."""
        w0 = ridge_solve(self.g00, self.g0d, 1e-9)
        b = ridge_solve(self.g00, self.gg0.T, 1e-9)
        # (x_g − x_0 B)ᵀ (x_g − x_0 B) and (x_g − x_0 B)ᵀ (Δ − x_0 W_0), as x_0ᵀ (Δ − x_0 W_0) = 0
        return w0, b, ridge_solve(self.ggg - self.gg0 @ b, self.ggd - self.gg0 @ w0, ridge)

    def held_out_error(self, w0: Tensor, b: Tensor, wg: Tensor) -> float:
        """``Σ ‖r − u W_g‖² − Σ ‖r‖²`` over these pairs, with ``r = Δ − x_0 W_0`` and
        ``u = x_g − x_0 B`` of a fit on other pairs (the part that depends on the fit's
        ``W_g``)."""
        cross = self.ggd - self.gg0 @ w0 - b.T @ self.g0d + b.T @ self.g00 @ w0  # uᵀ r
        gram = self.ggg - self.gg0 @ b - b.T @ self.gg0.T + b.T @ self.g00 @ b  # uᵀ u
        return float(-2 * (wg * cross).sum() + (wg * (gram @ wg)).sum())


MOMENTS = ("g00", "g0d", "ggg", "gg0", "ggd")


def equivariance(
    train: Pairs,
    val: Pairs,
    degree: int = 2,
    components_pca: int = 32,
    ridges: Sequence[float] = RIDGES,
) -> float:
    """Partial R² of the action in the regression of ``Δ = z_b − z_a`` on ``z_a`` (module
    docstring): fitted on ``train``'s pairs, scored on ``val``'s, in chunks of pairs.

    The ridge penalises the action's columns only, after the start view (one ridge on the
    whole full design would regularise its copy of ``x_0`` less than the reduced model's,
    e.g. through ``Σ q_i² = 1``, and credit the action with that). By Frisch–Waugh–Lovell:
    ``W_0`` fits ``Δ`` on ``x_0`` (ridge ``1e-9``, numerical only), ``B`` fits ``x_g`` on
    ``x_0``, and ``W_g`` fits the residual ``Δ − x_0 W_0`` on ``x_g − x_0 B`` with a
    relative ridge; at ridge 0 this is the least-squares fit of the full design. The ridge
    is the one of ``ridges`` with the least error on the training pairs of every fifth
    object when fitted on the others; the fit is then redone on all training pairs.
    """
    mean, axes = principal_axes(train.z, components_pca)
    d, cols = train.z.shape[-1], 1 + axes.shape[1]
    extra = cols * (action_features(train.g[:1], degree).shape[1] - 1)
    fit, held = Moments.zeros(cols, extra, d), Moments.zeros(cols, extra, d)
    for sl in chunks(len(train.pairs)):
        x0, xg, delta = train.designs(sl, mean, axes, degree)
        out = train.pairs[sl, 0] % 5 == 0
        fit.add(x0[~out], xg[~out], delta[~out])
        held.add(x0[out], xg[out], delta[out])
    ridge = min(ridges, key=lambda r: held.held_out_error(*fit.fit(r)))
    w0, b, wg = (fit + held).fit(ridge)
    reduced = full = scale = 0.0
    for sl in chunks(len(val.pairs)):
        x0, xg, delta = val.designs(sl, mean, axes, degree)
        rest = delta - x0 @ w0
        reduced += float((rest**2).sum())
        full += float(((rest - (xg - x0 @ b) @ wg) ** 2).sum())
        scale += float(len(delta))  # Σ ‖z_a‖² of unit vectors
    if reduced <= 1e-12 * scale:  # the part does not move: nothing to explain
        return 0.0
    return 1.0 - full / reduced


def split_pairs(z: Tensor, lat: Tensor, action: Action, per_object: int, seed: int) -> Pairs:
    """Seeded view pairs of each object of a split and the relative actions a -> b."""
    pairs = fixed_pairs(z.shape[0], z.shape[1], per_object, seed)
    o, a, b = pairs.unbind(1)
    return Pairs(z, pairs, action.relative(lat[o, a], lat[o, b]))


def pose_colour(space: ActionSpace, latents: Tensor) -> tuple[Tensor, str]:
    """The value the PCA plot's second panel is coloured by, ``[...]``, and its label, from
    the target from latents 0 (the identity pose) to each view's, chosen by kind: the
    rotation angle (degrees) of the first target of kind ``quaternion``; else the absolute
    wrapped angle (degrees, the norm over components) of the first of kind ``angle``; else
    the norm of the default action."""
    zero = torch.zeros_like(latents)
    quaternions = space.targets_of_kind("quaternion")
    if quaternions:
        q = space.target(quaternions[0], zero, latents)
        label = f"absolute {quaternions[0]} angle (deg)"
        return quaternion_angle(q.double()).rad2deg().float(), label
    angles = space.targets_of_kind("angle")
    if angles:
        a = wrap_angle(space.target(angles[0], zero, latents).double()).rad2deg()
        return a.norm(dim=-1).float(), f"absolute {angles[0]} angle (deg)"
    return space.relative(zero, latents).norm(dim=-1), "‖action from latents 0‖"


@PROBES.register("diagnostics", config=DiagnosticsProbeConfig)
class DiagnosticsProbe(Probe):
    """Invariance (distances, variance shares) and equivariance (partial R²) per part."""

    def card_fields(self, ctx: EvalContext) -> dict[str, Any]:
        return {
            "head": f"ridge regression (degree {int(self.cfg['degree'])} in the action), "
            "ridge chosen on held-out objects",
            "samples": f"{int(self.cfg['pairs_per_object'])} seeded view pairs per object",
        }

    def __init__(self, name: str, cfg: dict[str, Any]) -> None:
        super().__init__(name, cfg)
        if int(cfg["degree"]) not in (1, 2):
            raise ValueError(f"eval.probes.{name}.degree={cfg['degree']}; choose 1 or 2")

    def action(self, ctx: EvalContext) -> Action:
        """The action of the equivariance score: ``components``, the method's, the data's."""
        components = self.cfg.get("components") or (ctx.meta.get("action") or {}).get("components")
        return ctx.action_space.select(components)

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if ctx.train.views_per_object < 2:
            return "diagnostics compare views of one object: they need two views per object"
        if ctx.val.num_objects < 2:
            return "diagnostics compare objects: the validation split has fewer than two"
        try:
            self.action(ctx)
        except ValueError as err:
            return str(err)
        return None

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        cfg, seed = self.cfg, int(self.cfg["seed"])
        val_z = ctx.val.part(part)  # [N, V, D] as cached: normalised where it is read
        per_object = int(cfg["pairs_per_object"])
        action = self.action(ctx)
        train = split_pairs(ctx.train.part(part), ctx.train.latents, action, per_object, seed)
        val = split_pairs(ctx.val.part(part), ctx.val.latents, action, per_object, seed + 2)
        score = equivariance(
            train,
            val,
            int(cfg["degree"]),
            int(cfg["components_pca"]),
            [float(r) for r in cfg["ridges"]],
        )
        metrics = {
            **distances(val_z, per_object, seed),
            **variance_decomposition(val_z),
            "equivariance": score,
        }
        # nothing is trained, so there are no predictions to keep (nor floors)
        res = ProbeResult(metrics, torch.empty(0), torch.empty(0), floors={})
        if cfg["pca_plot"]:
            res.plots[f"{self.name}/pca_{part}"] = self.plot_pca(ctx, part, val_z)
        if cfg.get("tsne_plot", False):
            res.plots[f"{self.name}/tsne_{part}"] = self.plot_tsne(ctx, part, val_z)
        return res

    def view_points(
        self, ctx: EvalContext, val_z: Tensor, count: int
    ) -> tuple[Tensor, Colouring, Tensor, str]:
        """A seeded subset of at most ``count`` validation views: features ``[M, D]``, the
        first panel's colouring, the pose ``[M]`` and its label."""
        n, v, _ = val_z.shape
        gen = torch.Generator().manual_seed(int(self.cfg["seed"]))
        keep = torch.randperm(n * v, generator=gen)[:count]
        o, j = keep // v, keep % v  # only the drawn views' pose is computed
        pose, pose_label = pose_colour(ctx.action_space, ctx.val.latents[o, j])
        names = tuple(ctx.meta.get("spec", {}).get("coeff_names") or ())
        if bool((ctx.val.labels >= 0).any()) or not names or ctx.val.coeffs.shape[1] == 0:
            first = Colouring(ctx.val.labels[o], "class")
        else:  # unlabelled data with invariant targets (PDE coefficients)
            first = Colouring(ctx.val.coeffs[o, 0], names[0], categorical=False)
        return unit(val_z[o, j]), first, pose, pose_label

    def title(self, ctx: EvalContext, part: str) -> str:
        return f"{ctx.meta['config']['method']['name']} {part}"

    def plot_pca(self, ctx: EvalContext, part: str, val_z: Tensor) -> str:
        """Write the part's PCA scatter; return its file name."""
        x, first, pose, pose_label = self.view_points(ctx, val_z, int(self.cfg["pca_points"]))
        with seeded(int(self.cfg["seed"])):
            coords, explained = pca_2d(x)
        file = f"{self.name}_pca_{part}.png"
        plot_pca(
            coords, first, pose, pose_label, explained, self.title(ctx, part), ctx.out_dir / file
        )
        return file

    def plot_tsne(self, ctx: EvalContext, part: str, val_z: Tensor) -> str:
        """Write the part's t-SNE scatter; return its file name."""
        x, first, pose, pose_label = self.view_points(ctx, val_z, int(self.cfg["tsne_points"]))
        coords = tsne_2d(x, int(self.cfg["seed"]))
        file = f"{self.name}_tsne_{part}.png"
        title = f"t-SNE — {self.title(ctx, part)} ({len(x)} views)"
        plot_embedding(
            coords, first, pose, pose_label, ("t-SNE 1", "t-SNE 2"), title, ctx.out_dir / file
        )
        return file


def tsne_2d(x: Tensor, seed: int) -> Tensor:
    """scikit-learn's t-SNE of rows ``x [M, D]`` into ``[M, 2]``: PCA initialisation,
    perplexity 30 (at most a third of the points), 500 iterations (the first 250 with early
    exaggeration), the exact gradient up to 1,000 points, seeded."""
    from sklearn.manifold import TSNE  # only where a t-SNE is drawn

    m = len(x)
    if m < 4:  # too few points for a neighbourhood
        return torch.zeros(m, 2)
    # the exact gradient up to 1,000 points: faster there than Barnes-Hut (measured 1.4 s
    # against 10 s at 200 points of 512-d on two cores), and exact
    tsne = TSNE(
        2,
        perplexity=min(30.0, (m - 1) / 3),
        init="pca",
        max_iter=500,
        method="exact" if m <= 1000 else "barnes_hut",
        random_state=seed,
    )
    return torch.from_numpy(tsne.fit_transform(x.double().numpy())).float()


def pca_2d(x: Tensor) -> tuple[Tensor, Tensor]:
    """Coordinates ``[M, 2]`` of rows ``x [M, D]`` on their first two principal axes
    (``torch.pca_lowrank``, centred; seed the global RNG for reproducibility) and the share
    of the total variance each axis explains ``[2]``."""
    x = x.double()
    q = min(6, *x.shape)
    _, s, v = torch.pca_lowrank(x, q=q, center=True, niter=4)
    centred = x - x.mean(0)
    coords = centred @ v[:, :2]
    total = float((centred**2).sum())
    explained = s[:2] ** 2 / total if total > 0 else torch.zeros(2, dtype=x.dtype)
    if coords.shape[1] < 2:  # one-dimensional features: a flat second axis
        coords = torch.cat((coords, coords.new_zeros(len(coords), 1)), dim=1)
        explained = torch.cat((explained, explained.new_zeros(1)))
    return coords.float(), explained.float()
