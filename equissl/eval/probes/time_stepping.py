"""Time-stepping with the frozen representation as conditioning — the equivariant task of
Mialon et al. (2023): a neural solver predicts the next ``future`` frames of a trajectory
from its last ``history`` frames, in three rows trained on the same data and budget:

* ``none_*`` — the solver alone (with the grid steps ``dx, dt`` every row gets, as LPSDA);
* ``*`` (no prefix) — conditioned on the frozen representation of the trajectory's
  **first** ``window`` frames (untransformed, frames ``[0, window)``), which are never
  among the targets (the paper's protocol, App. F.3 as reported by FAE);
* ``oracle_*`` — conditioned on the true coefficients (Burgers ν, NS buoyancy b); absent
  on data without coefficients (KdV and KS as generated here).

The conditioning vector (standardised with the probe-train statistics; dimensions constant
there set to 0, :class:`Conditioning`) goes through a
2-layer MLP to a ``cond_dim``-wide embedding (the paper: a bottleneck of 1), broadcast over
space and stacked with the solver's input channels, as LPSDA stacks ``dx, dt``.

Solvers (``equissl.eval.probes.time_stepping``): 1-D, LPSDA's ``CNN`` (experiments/
models_cnn.py: a per-point lift of history + conditions to ``width``, eight circular
residual convolutions of kernels 3, 5, 5, 7, 7, 9, 9, 15 with ELU, a 2-layer head to the
future frames); 2-D (Navier–Stokes), a small two-level circular U-Net over (x, y) with the
history's fields as channels (PDEArena's Unetmod-64 is larger; ours is sized for CPU). Both
add their output to the last history frame, with the output layer zero-initialised, so
every row starts as persistence (LPSDA predicts the frames directly, from its own init);
fields are divided by their probe-train RMS. Both train faster at small budgets.

Protocol, LPSDA ``experiments/train.py`` as it runs: history 20, future 20, AdamW lr 1e-4,
batch 16, 20 epochs, each of ``t_res · 2`` passes over the training trajectories (twice the
frames per trajectory: 280 for LPSDA's 140) with a random start per trajectory and pass
(``samples_per_trajectory``; LPSDA draws one start per batch). LPSDA's
``MultiStepLR(milestones=[unrolling, 5, 10, 15], gamma=0.4)`` with ``unrolling = 0`` decays
once when it is built, so its rates are 4e-5, 1.6e-5, 6.4e-6, 2.6e-6: ``milestones: [0, 5,
10, 15]`` reproduces that with torch's scheduler. After each epoch the unrolled MSE on the
validation trajectories (the data's ``labelled`` split, held out of pretraining: LPSDA's
``valid``) picks the model that is tested (``selection: validation``; ``last`` keeps the
final epoch's).

Evaluation (LPSDA ``test_unrolled_losses``) on the val split: starts ``s0 = max(history,
window)``, ``s0 + future``, …; ``nmse_1step`` from the true history at each start,
``nmse_rollout`` feeding predictions back from ``s0`` over ``rollout_blocks`` blocks (all
that fit by default). NMSE is the per-frame ``‖û_t − u_t‖² / ‖u_t‖²`` (over space and
fields) **averaged** over frames and trajectories; ``nmse_rollout_summed`` is LPSDA's
convention, the same errors **summed** over the ``rollout_frames`` rolled-out frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equissl.config import ProbeConfig
from equissl.datasets.base import build_dataset
from equissl.datasets.pde.dataset import PDEWindowDataset
from equissl.eval.probes.base import EvalContext, Probe, ProbeResult, seeded
from equissl.eval.probes.protocol import Reference, trained_head_fields
from equissl.progress import progress_bar
from equissl.registries import PROBES


@dataclass
class TimeSteppingProbeConfig(ProbeConfig):
    """LPSDA (brandstetter-johannes/LPSDA ``experiments/train.py``) argparse defaults for
    1-D; one frame in, one out for Navier–Stokes (PDEArena cond-NS, via FAE [3P])."""

    epochs: int = 20  # --num_epochs 20
    lr: float = 1e-4  # --lr 1e-4, optim.AdamW
    weight_decay: float = 0.01  # AdamW's default (LPSDA passes none)
    # MultiStepLR(milestones=[args.unrolling=0, 5, 10, 15]): the 0 decays at construction
    milestones: list[int] = field(default_factory=lambda: [0, 5, 10, 15])
    lr_decay: float = 0.4  # --lr_decay 0.4
    batch_size: int = 16  # --batch_size 16
    # random starts per training trajectory and epoch; None: LPSDA's t_res * 2 passes, twice
    # the frames per trajectory
    samples_per_trajectory: int | None = None
    selection: str = "validation"  # validation (LPSDA: best unrolled loss on valid) | last
    history: int = 20  # --time_history 20 (1-D)
    future: int = 20  # --time_future 20 (1-D)
    history_2d: int = 1  # Navier–Stokes
    future_2d: int = 1
    width: int = 128  # LPSDA CNN width
    width_2d: int = 32  # U-Net base width (levels: w, 2w, 4w)
    cond_hidden: int = 128  # conditioning MLP hidden width
    cond_dim: int = 1  # the paper's bottleneck of 1
    rollout_blocks: int | None = None  # blocks of `future` frames rolled out (None: all)
    rep_batch_size: int = 64  # first-window representations


SELECTIONS = ("validation", "last")


def frame_nmse(pred: Tensor, target: Tensor) -> Tensor:
    """Per-frame normalised squared error ``‖û_t − u_t‖² / ‖u_t‖²`` over every dimension
    after the first two: ``[N, F, *S]`` -> ``[N, F]``."""
    err = (pred.double() - target.double()).pow(2).flatten(2).sum(2)
    return err / target.double().pow(2).flatten(2).sum(2).clamp_min(1e-24)


#: a conditioning dimension whose probe-train std is below this share of the median std is
#: constant there (a dead ReLU unit of the representation) and is set to 0
CONSTANT_DIMENSION = 1e-3


class Conditioning(nn.Module):
    """Standardise a conditioning vector ``[B, K]`` and map it by a 2-layer MLP to
    ``[B, cond_dim]`` (``K = 0``: ``[B, 0]``, no parameters).

    Dimensions constant over the probe-train trajectories (std below
    :data:`CONSTANT_DIMENSION` × the median std) carry nothing the solver could learn; they
    are set to 0 rather than standardised, which would blow any test-time deviation up (a
    KdV representation's dead units reached 8·10⁴ standard deviations on val and its
    rollouts diverged)."""

    def __init__(self, mean: Tensor, std: Tensor, hidden: int, out_dim: int) -> None:
        super().__init__()
        std = std.float()
        live = std > CONSTANT_DIMENSION * std.median() if len(std) else std > 0
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", torch.where(live, std, torch.ones_like(std)).clone())
        self.register_buffer("live", live.float())
        k = len(mean)
        self.out_dim = out_dim if k else 0
        self.mlp = (
            nn.Sequential(nn.Linear(k, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
            if k
            else None
        )

    def forward(self, c: Tensor) -> Tensor:
        if self.mlp is None:
            return c.new_zeros(len(c), 0)
        return self.mlp((c - self.mean) / self.std * self.live)


class LPSDACNN(nn.Module):
    """LPSDA's 1-D ``CNN``: ``u [B, H, X]``, extras ``[B, E]`` (dx, dt, conditioning) ->
    ``[B, F, X]``, plus the last history frame."""

    kernels = (3, 5, 5, 7, 7, 9, 9, 15)

    def __init__(self, history: int, future: int, extras: int, width: int) -> None:
        super().__init__()
        self.fc0 = nn.Linear(history + extras, width)
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, k, padding=k // 2, padding_mode="circular")
            for k in self.kernels
        )
        for conv in self.convs:
            nn.init.xavier_uniform_(conv.weight)
        self.fc1 = nn.Linear(width, 128)
        self.fc2 = nn.Linear(128, future)
        nn.init.zeros_(self.fc2.weight)  # starts as persistence (see the module docstring)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, u: Tensor, extras: Tensor) -> Tensor:
        x = torch.cat([u, extras[:, :, None].expand(-1, -1, u.shape[-1])], 1)
        h = self.fc0(x.transpose(1, 2)).transpose(1, 2)  # [B, width, X]
        for conv in self.convs:
            h = F.elu(h + conv(h))
        out = self.fc2(F.elu(self.fc1(h.transpose(1, 2)))).transpose(1, 2)
        return u[:, -1:] + out


def conv_block(cin: int, cout: int) -> nn.Sequential:
    def norm(c: int) -> nn.GroupNorm:
        return nn.GroupNorm(min(8, c), c)

    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, padding_mode="circular"),
        norm(cout),
        nn.GELU(),
        nn.Conv2d(cout, cout, 3, padding=1, padding_mode="circular"),
        norm(cout),
        nn.GELU(),
    )


class SmallUNet(nn.Module):
    """A two-level circular U-Net over (x, y): ``u [B, H, C, X, Y]``, extras ``[B, E]`` ->
    ``[B, F, C, X, Y]`` (X, Y divisible by 4), plus the last history frame."""

    def __init__(self, history: int, future: int, fields: int, extras: int, width: int) -> None:
        super().__init__()
        self.future, self.fields = future, fields
        self.enc1 = conv_block(history * fields + extras, width)
        self.enc2 = conv_block(width, 2 * width)
        self.mid = conv_block(2 * width, 4 * width)
        self.dec2 = conv_block(6 * width, 2 * width)
        self.dec1 = conv_block(3 * width, width)
        self.out = nn.Conv2d(width, future * fields, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, u: Tensor, extras: Tensor) -> Tensor:
        b, _, c, nx, ny = u.shape
        x = torch.cat([u.flatten(1, 2), extras[:, :, None, None].expand(-1, -1, nx, ny)], 1)
        e1 = self.enc1(x)
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        m = self.mid(F.avg_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2.0), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1))
        return u[:, -1:] + self.out(d1).view(b, self.future, c, nx, ny)


class ConditionedSolver(nn.Module):
    """``(u [B, H, *S], grid [B, 2], cond [B, K]) -> [B, F, *S]``: the solver sees the grid
    steps and the conditioning MLP's embedding as extra channels."""

    def __init__(self, solver_of: Any, conditioning: Conditioning) -> None:
        super().__init__()
        self.conditioning = conditioning
        self.solver = solver_of(2 + conditioning.out_dim)

    def forward(self, u: Tensor, grid: Tensor, cond: Tensor) -> Tensor:
        return self.solver(u, torch.cat([grid, self.conditioning(cond)], 1))


@dataclass
class Trajectories:
    """One split's raw trajectories for the solver: ``u [N, T, *S]`` float32 (1-D: S = X;
    NS: S = (3, X, Y), fields s, vₓ, v_y), ``grid [N, 2]`` (dx, dt)."""

    u: Tensor
    grid: Tensor

    @classmethod
    def of(cls, ds: PDEWindowDataset, scale: float = 1.0) -> Trajectories:
        """``ds``'s trajectories divided by ``scale`` (NMSE does not change)."""
        dx = ds.x[:, 1] - ds.x[:, 0]
        dt = ds.t[:, 1] - ds.t[:, 0]
        return cls(ds.u.float() / scale, torch.stack([dx, dt], 1).float())


@torch.inference_mode()
def first_window_features(
    method: Any, ds: PDEWindowDataset, batch_size: int, device: torch.device
) -> dict[str, Tensor]:
    """The frozen representation of every trajectory's first ``ds.window`` frames,
    untransformed (identity group element): ``{part: [N, D]}``."""
    method.eval().to(device)
    identity = torch.zeros(ds.group.dim, dtype=torch.float64)
    out: dict[str, list[Tensor]] = {}
    for start in range(0, len(ds), batch_size):
        views = torch.stack(
            [ds.view(i, 0, identity) for i in range(start, min(len(ds), start + batch_size))]
        )
        for name, rep in method.represent(views.to(device)).items():
            out.setdefault(name, []).append(rep.float().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def eval_starts(frames: int, history: int, future: int, window: int) -> list[int]:
    """Starts of the evaluation blocks: ``max(history, window)`` then every ``future``
    frames while a whole target block fits (LPSDA ``test_unrolled_losses``)."""
    return list(range(max(history, window), frames - history - future + 1, future))


def passes_per_epoch(cfg: dict[str, Any], frames: int) -> int:
    """Random starts per training trajectory and epoch: ``samples_per_trajectory``, or
    LPSDA's ``t_res · 2`` (twice the ``frames`` per trajectory) when it is unset."""
    given = cfg.get("samples_per_trajectory")
    return int(given) if given is not None else 2 * int(frames)


def solver_optimiser(
    model: nn.Module, cfg: dict[str, Any]
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.MultiStepLR]:
    """AdamW and the per-epoch MultiStepLR of the config. A milestone 0 decays once as the
    scheduler is built, as LPSDA's ``milestones=[unrolling=0, 5, 10, 15]`` does."""
    opt = torch.optim.AdamW(
        model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"])
    )
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[int(m) for m in cfg["milestones"]], gamma=float(cfg["lr_decay"])
    )
    return opt, sched


def train_solver(
    model: ConditionedSolver,
    data: Trajectories,
    cond: Tensor,
    history: int,
    future: int,
    window: int,
    cfg: dict[str, Any],
    device: torch.device,
    progress: bool,
    desc: str,
    validation_loss: Callable[[ConditionedSolver], float] | None = None,
) -> tuple[ConditionedSolver, int]:
    """AdamW + MultiStepLR on the MSE of the next ``future`` frames after ``history``
    frames from random starts whose targets all lie after the first ``window`` frames.

    Returns the model and its epoch (0-based): with ``validation_loss`` the epoch whose
    model scored lowest on it after the epoch (LPSDA's selection), else the last."""
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    model.to(device).train()
    opt, sched = solver_optimiser(model, cfg)
    n, frames = data.u.shape[:2]
    lo, hi = max(0, window - history), frames - history - future
    reps, bs = passes_per_epoch(cfg, frames), int(cfg["batch_size"])
    offsets = torch.arange(history + future)
    epochs = int(cfg["epochs"])
    best, best_epoch, best_state = float("inf"), epochs - 1, None
    for epoch in progress_bar(range(epochs), desc=desc, unit="ep", disable=not progress):
        model.train()
        traj = torch.arange(n).repeat(reps)
        traj = traj[torch.randperm(len(traj), generator=gen)]
        starts = torch.randint(lo, hi + 1, (len(traj),), generator=gen)
        for k in range(0, len(traj), bs):
            i, s = traj[k : k + bs], starts[k : k + bs]
            clip = data.u[i[:, None], s[:, None] + offsets].to(device)
            pred = model(clip[:, :history], data.grid[i].to(device), cond[i].to(device))
            loss = F.mse_loss(pred, clip[:, history:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if validation_loss is not None:
            score = validation_loss(model.eval())
            if score < best:  # strictly lower, as LPSDA's `val_loss < min_val_loss`
                best, best_epoch = score, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), best_epoch


@torch.no_grad()
def evaluate_solver(
    model: ConditionedSolver,
    data: Trajectories,
    cond: Tensor,
    history: int,
    future: int,
    window: int,
    rollout_blocks: int | None,
    device: torch.device,
    batch_size: int = 64,
) -> tuple[dict[str, float], Tensor, Tensor]:
    """``({nmse_1step, nmse_rollout, nmse_rollout_summed, mse_rollout, rollout_frames},
    first-block prediction, its truth)`` on every trajectory (see the module docstring;
    ``mse_rollout`` is the unrolled MSE LPSDA selects on)."""
    frames = data.u.shape[1]
    starts = eval_starts(frames, history, future, window)
    blocks = starts[: rollout_blocks or None]
    one, roll, sq, first_pred, first_true = [], [], [], [], []
    for k in range(0, len(data.u), batch_size):
        u = data.u[k : k + batch_size].to(device)
        grid, c = data.grid[k : k + batch_size].to(device), cond[k : k + batch_size].to(device)
        for s in starts:
            pred = model(u[:, s : s + history], grid, c)
            one.append(frame_nmse(pred, u[:, s + history : s + history + future]).cpu())
            if s == starts[0]:
                first_pred.append(pred.cpu())
                first_true.append(u[:, s + history : s + history + future].cpu())
        state, errs = u[:, blocks[0] : blocks[0] + history], []
        for s in blocks:
            pred = model(state[:, -history:], grid, c)
            true = u[:, s + history : s + history + future]
            errs.append(frame_nmse(pred, true))
            sq.append((pred.double() - true.double()).pow(2).mean().cpu() * len(u))
            state = torch.cat([state, pred], 1)
        roll.append(torch.cat(errs, 1).cpu())
    rolled = torch.cat(roll)  # [N, frames rolled out]
    metrics = {
        "nmse_1step": float(torch.cat(one).mean()),
        "nmse_rollout": float(rolled.mean()),
        "nmse_rollout_summed": float(rolled.sum(1).mean()),
        "mse_rollout": float(torch.stack(sq).sum() / (len(data.u) * len(blocks))),
        "rollout_frames": float(len(blocks) * future),
    }
    return metrics, torch.cat(first_pred), torch.cat(first_true)


@PROBES.register("time_stepping", config=TimeSteppingProbeConfig)
class TimeSteppingProbe(Probe):
    """Neural time-stepping without conditioning, with the frozen first-window
    representation, and with the true coefficients."""

    def __init__(self, name: str, cfg: dict[str, Any]) -> None:
        super().__init__(name, cfg)
        if cfg.get("selection", "validation") not in SELECTIONS:
            raise ValueError(
                f"eval.probes.{name}.selection={cfg['selection']!r}: use one of "
                f"{', '.join(SELECTIONS)}"
            )
        self._fixed: dict[str, float] | None = None
        self._reps: tuple[Any, dict[str, dict[str, Tensor]]] | None = None
        # (the validation split or None,) once looked up: None alone means not yet
        self._valid: tuple[PDEWindowDataset | None] | None = None

    def reference(self) -> Reference:
        return Reference(
            "LPSDA (Brandstetter, Welling, Worrall, ICML 2022), "
            "github.com/brandstetter-johannes/LPSDA experiments/train.py",
            {"optimizer": "AdamW", "lr": 1e-4, "weight_decay": 0.01, "epochs": 20,
             "batch_size": 16, "milestones": [0, 5, 10, 15], "lr_decay": 0.4,
             "samples_per_trajectory": "t_res * 2", "selection": "validation"},
            (
                "starts: a random start per trajectory and pass; LPSDA draws one per batch",
            ),
        )  # fmt: skip

    def card_fields(self, ctx: EvalContext) -> dict[str, Any]:
        ds = ctx.datasets["train"]
        two_d = bool(getattr(ds, "two_d", False))
        head = (
            f"U-Net (base width {int(self.cfg['width_2d'])})"
            if two_d
            else f"LPSDA CNN (width {int(self.cfg['width'])})"
        )
        pde = isinstance(ds, PDEWindowDataset)
        history, future = self.horizon(ds) if pde else (0, 0)
        given = self.cfg.get("samples_per_trajectory")
        passes = passes_per_epoch(self.cfg, ds.u.shape[1]) if pde else 0
        valid = self.validation(ctx) if pde else None
        return {
            **trained_head_fields(self.cfg, head, "AdamW"),
            "milestones": [int(m) for m in self.cfg["milestones"]],
            "lr_decay": float(self.cfg["lr_decay"]),
            "history": history,
            "future": future,
            "train_objects": len(ds) if pde else 0,  # trajectories
            "test_objects": len(ctx.datasets["val"]) if pde else 0,
            "samples_per_trajectory": "t_res * 2" if given is None else int(given),
            "selection": str(self.cfg["selection"]) if valid is not None else "last",
            "validation_split": valid.split_name if valid is not None else None,
            "samples": f"{passes} random start time(s) per training trajectory per epoch",
        }

    def run_deviations(self, ctx: EvalContext) -> tuple[str, ...]:
        out = []
        ds = ctx.datasets.get("train")
        if getattr(ds, "two_d", False):
            out.append(
                "solver: Navier-Stokes uses a small circular U-Net sized for CPU, not "
                "PDEArena's Unetmod-64 of the paper"
            )
        if self.cfg["selection"] == "validation" and self.validation(ctx) is None:
            out.append(
                "selection: the data have no validation split held out of pretraining "
                "(data.labelled_split is off): the last epoch's model is tested"
            )
        return tuple(out)

    def skip_reason(self, ctx: EvalContext) -> str | None:
        ds = ctx.datasets.get("train")
        if not isinstance(ds, PDEWindowDataset) or not isinstance(
            ctx.datasets.get("val"), PDEWindowDataset
        ):
            return "needs raw PDE trajectories (data=pde_<equation>)"
        history, future = self.horizon(ds)
        if not eval_starts(ds.u.shape[1], history, future, ds.window):
            return (
                f"trajectories of {ds.u.shape[1]} frames hold no history {history} + future "
                f"{future} block after the first window of {ds.window}"
            )
        return None

    def horizon(self, ds: PDEWindowDataset) -> tuple[int, int]:
        if ds.two_d:
            return int(self.cfg["history_2d"]), int(self.cfg["future_2d"])
        return int(self.cfg["history"]), int(self.cfg["future"])

    def validation(self, ctx: EvalContext) -> PDEWindowDataset | None:
        """The trajectories that select the model: the data's ``labelled`` split (held out
        of pretraining, never tested on), or ``None`` when the data have none or
        ``selection`` is ``last``."""
        if self.cfg["selection"] != "validation":
            return None
        if self._valid is None:
            ds = build_dataset(ctx.data, "labelled", 1) if ctx.data.get("labelled_split") else None
            self._valid = (ds if isinstance(ds, PDEWindowDataset) else None,)
        return self._valid[0]

    def row(
        self,
        ctx: EvalContext,
        cond: dict[str, Tensor],
        desc: str,
    ) -> tuple[dict[str, float], Tensor, Tensor]:
        """Train one solver on the train split's trajectories with ``cond["train"] [N, K]``
        (selected on the validation split's with ``cond["valid"]``) and test it on the val
        split's with ``cond["val"]``."""
        ds = ctx.datasets["train"]
        history, future = self.horizon(ds)
        # unit RMS over the probe-train fields, so the persistence skip starts every row
        # from the same prediction whatever the equation's amplitude (Burgers ν ≪ 1)
        scale = float(ds.u.double().pow(2).mean().sqrt().clamp_min(1e-12))
        train, val = Trajectories.of(ds, scale), Trajectories.of(ctx.datasets["val"], scale)
        cfg = self.cfg
        if ds.two_d:
            fields = train.u.shape[2]

            def solver_of(extras: int) -> nn.Module:
                return SmallUNet(history, future, fields, extras, int(cfg["width_2d"]))
        else:

            def solver_of(extras: int) -> nn.Module:
                return LPSDACNN(history, future, extras, int(cfg["width"]))

        cond_train = cond["train"]
        with seeded(int(cfg["seed"])):
            k = cond_train.shape[1]
            conditioning = Conditioning(
                cond_train.mean(0) if k else torch.zeros(0),
                cond_train.std(0) if k and len(cond_train) > 1 else torch.ones(k),
                int(cfg["cond_hidden"]),
                int(cfg["cond_dim"]),
            )
            model = ConditionedSolver(solver_of, conditioning)
        valid_ds, select = self.validation(ctx), None
        if valid_ds is not None:
            valid = Trajectories.of(valid_ds, scale)

            def select(m: ConditionedSolver) -> float:
                scores, _, _ = evaluate_solver(
                    m, valid, cond["valid"], history, future, ds.window,
                    cfg["rollout_blocks"], ctx.device,
                )  # fmt: skip
                return scores["mse_rollout"]

        model, epoch = train_solver(
            model, train, cond_train, history, future, ds.window, cfg, ctx.device,
            ctx.progress, desc, select,
        )  # fmt: skip
        metrics, pred, target = evaluate_solver(
            model, val, cond["val"], history, future, ds.window, cfg["rollout_blocks"], ctx.device
        )
        metrics["selected_epoch"] = float(epoch + 1)  # 1-based: 20 of 20 is the last
        return metrics, pred, target

    def splits(self, ctx: EvalContext) -> dict[str, PDEWindowDataset]:
        """``{"train", "val"}`` and, when it selects the model, ``"valid"``."""
        out = {"train": ctx.datasets["train"], "val": ctx.datasets["val"]}
        valid = self.validation(ctx)
        return {**out, "valid": valid} if valid is not None else out

    def fixed_rows(self, ctx: EvalContext) -> dict[str, float]:
        """The unconditioned and oracle rows, computed once per evaluation and repeated
        under every part (and under every baseline model: they do not depend on it)."""
        if self._fixed is None:
            splits = self.splits(ctx)
            none = {name: torch.zeros(len(ds), 0) for name, ds in splits.items()}
            metrics, _, _ = self.row(ctx, none, "time stepping: none")
            fixed = {f"none_{k}": v for k, v in metrics.items() if k != "rollout_frames"}
            train = splits["train"]
            if train.coeffs.ndim == 2 and train.coeffs.shape[1] > 0:
                truth = {name: ds.coeffs.float() for name, ds in splits.items()}
                metrics, _, _ = self.row(ctx, truth, "time stepping: oracle")
                fixed.update(
                    {f"oracle_{k}": v for k, v in metrics.items() if k != "rollout_frames"}
                )
            self._fixed = fixed
        return self._fixed

    def representations(self, ctx: EvalContext) -> dict[str, dict[str, Tensor]]:
        """``{split: {part: [N, D]}}`` of the first windows of ``ctx.method``, computed once
        per model (a baseline model gets its own)."""
        if self._reps is None or self._reps[0] is not ctx.method:
            bs = int(self.cfg["rep_batch_size"])
            reps = {
                name: first_window_features(ctx.method, ds, bs, ctx.device)
                for name, ds in self.splits(ctx).items()
            }
            self._reps = (ctx.method, reps)
        return self._reps[1]

    def run(self, ctx: EvalContext, part: str) -> ProbeResult:
        reps = self.representations(ctx)
        cond = {name: rep[part] for name, rep in reps.items()}
        metrics, pred, target = self.row(ctx, cond, f"time stepping: {part}")
        metrics.update(self.fixed_rows(ctx))
        # no floors: the none_* / oracle_* rows are solvers trained on the same budget,
        # shown as columns beside the conditioned one
        return ProbeResult(metrics, pred, target, floors={})
