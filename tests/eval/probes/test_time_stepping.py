"""The time-stepping probe (issue 11 item 5): the NMSE formula, the LPSDA evaluation
blocks, what each row is conditioned on (the oracle: the coefficients; the SSL row: the
frozen representation of the untransformed first window, never the target frames), a smoke
run on tiny Burgers and Navier–Stokes sets, and the skip on non-PDE data."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from equissl.datasets.pde import generate_pde
from equissl.datasets.pde_windows import PDEWindows
from equissl.eval.probes.base import EvalContext
from equissl.eval.probes.time_stepping import (
    LPSDACNN,
    ConditionedSolver,
    Conditioning,
    SmallUNet,
    TimeSteppingProbe,
    TimeSteppingProbeConfig,
    Trajectories,
    eval_starts,
    evaluate_solver,
    first_window_features,
    frame_nmse,
    passes_per_epoch,
    solver_optimiser,
    train_solver,
)
from equissl.registries import PROBES
from tests.datasets.pde.test_lie_views import write_ns_file

TINY = {
    **TimeSteppingProbeConfig().__dict__,
    "impl": "time_stepping",
    "epochs": 2,
    "history": 4,
    "future": 4,
    "width": 8,
    "width_2d": 4,
    "cond_hidden": 8,
    "batch_size": 4,
    "samples_per_trajectory": 1,  # LPSDA's default is twice the frames per epoch
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small convolutions on a shared 2-core machine: a second thread makes them ~100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class WindowMean:
    """A stand-in frozen method: the representation is the u channel of the view (1-D)
    averaged over x, one number per frame, so it shows exactly which frames it saw."""

    def eval(self):
        return self

    def to(self, device):
        return self

    def represent(self, views: Tensor) -> dict[str, Tensor]:
        field = views[:, 2] if views.ndim == 4 else views[:, 3]  # u (1-D) | v_x (NS)
        return {"full": field.flatten(2).mean(2)}


def context(train, val, method=None) -> EvalContext:
    return EvalContext(
        train=None,
        val=None,
        action_space=None,
        num_classes=0,
        method=method or WindowMean(),
        meta={},
        datasets={"train": train, "val": val},
        device=torch.device("cpu"),
        out_dir=Path("."),
        progress=False,
    )


@pytest.fixture(scope="module")
def burgers(tmp_path_factory):
    root = tmp_path_factory.mktemp("burgers")
    generate_pde("burgers", root, num_trajectories=10, nx=16, nt=30, progress=False)
    train, val = PDEWindows(root, "train", 1, window=8), PDEWindows(root, "val", 1, window=8)
    train.root = val.root = root  # as PDEWindows.from_config sets it
    return train, val


def test_frame_nmse_by_hand():
    target = torch.tensor([[[1.0, 2.0], [0.0, 3.0]]])  # [N=1, F=2, X=2]
    pred = torch.tensor([[[1.0, 0.0], [1.0, 3.0]]])
    nmse = frame_nmse(pred, target)
    torch.testing.assert_close(nmse, torch.tensor([[4.0 / 5.0, 1.0 / 9.0]], dtype=torch.float64))
    fields = torch.ones(2, 3, 2, 4, 4)  # NS: the norm runs over fields and both axes
    assert torch.allclose(
        frame_nmse(fields * 1.5, fields), torch.full((2, 3), 0.25, dtype=torch.float64)
    )


def test_eval_blocks_follow_lpsda():
    # LPSDA test_unrolled_losses: starts time_history, +time_future, ... on 140 frames
    assert eval_starts(140, 20, 20, 16) == [20, 40, 60, 80, 100]
    assert eval_starts(56, 1, 1, 16)[:2] == [16, 17] and eval_starts(56, 1, 1, 16)[-1] == 54
    assert eval_starts(30, 20, 20, 16) == []


def test_solvers_start_as_persistence():
    cnn = LPSDACNN(history=4, future=3, extras=3, width=8)
    u = torch.randn(2, 4, 16)
    torch.testing.assert_close(cnn(u, torch.randn(2, 3)), u[:, -1:].expand(2, 3, 16))
    unet = SmallUNet(history=2, future=1, fields=3, extras=2, width=4)
    v = torch.randn(2, 2, 3, 8, 8)
    torch.testing.assert_close(unet(v, torch.zeros(2, 2)), v[:, -1:])  # last frame + 0


def test_first_window_features_see_only_the_untransformed_first_window(burgers):
    train, _ = burgers
    reps = first_window_features(WindowMean(), train, 3, torch.device("cpu"))["full"]
    assert reps.shape == (len(train), train.window)
    torch.testing.assert_close(reps, train.u[:, : train.window].mean(2))
    saved = train.u.clone()
    try:
        train.u[:, train.window :] = torch.randn_like(train.u[:, train.window :])
        again = first_window_features(WindowMean(), train, 4, torch.device("cpu"))["full"]
        torch.testing.assert_close(again, reps)  # the target frames never enter
    finally:
        train.u.copy_(saved)


def test_rows_condition_on_nothing_the_representation_and_the_coefficients(burgers):
    train, val = burgers
    probe = TimeSteppingProbe("time_stepping", TINY)
    seen = {}

    def row(ctx, cond, desc):
        assert set(cond) == {"train", "val"}  # no labelled split in this context: no "valid"
        seen[desc] = (cond["train"].clone(), cond["val"].clone())
        return {"nmse_1step": 0.0, "nmse_rollout": 0.0, "rollout_frames": 1.0}, None, None

    probe.row = row
    res = probe.run(context(train, val), "full")
    none, rep, oracle = (seen[f"time stepping: {k}"] for k in ("none", "full", "oracle"))
    assert none[0].shape == (len(train), 0) and none[1].shape == (len(val), 0)
    torch.testing.assert_close(oracle[0], train.coeffs.float())  # the true nu
    torch.testing.assert_close(oracle[1], val.coeffs.float())
    torch.testing.assert_close(rep[0], train.u[:, : train.window].mean(2))  # first window
    torch.testing.assert_close(rep[1], val.u[:, : val.window].mean(2))
    assert set(res.metrics) == {
        "nmse_1step", "nmse_rollout", "rollout_frames",
        "none_nmse_1step", "none_nmse_rollout", "oracle_nmse_1step", "oracle_nmse_rollout",
    }  # fmt: skip
    probe.run(context(train, val), "full")
    assert len(seen) == 3  # none and oracle rows are computed once


def test_smoke_run_on_tiny_burgers(burgers):
    train, val = burgers
    probe = PROBES.get("time_stepping")("time_stepping", TINY)
    ctx = context(train, val)
    assert probe.skip_reason(ctx) is None
    res = probe.run(ctx, "full")
    # 30 frames, window 8, history 4, future 4: blocks start at 8, 12, ..., 20
    assert res.metrics["rollout_frames"] == 16.0
    for key in ("", "none_", "oracle_"):
        for metric in ("nmse_1step", "nmse_rollout"):
            assert np.isfinite(res.metrics[key + metric]) and res.metrics[key + metric] >= 0
    assert res.pred.shape == res.target.shape == (len(val), 4, 16)
    again = PROBES.get("time_stepping")("time_stepping", TINY).run(ctx, "full")
    assert again.metrics == res.metrics  # seeded


def test_smoke_run_on_navier_stokes(tmp_path):
    path = write_ns_file(tmp_path / "ns.h5", frames=12)
    train, val = (PDEWindows(path, s, 1, window=8, val_every=3) for s in ("train", "val"))
    res = TimeSteppingProbe("time_stepping", TINY).run(context(train, val), "full")
    assert res.metrics["rollout_frames"] == 3.0  # 12 frames, window 8, 1 -> 1: 8, 9, 10
    assert res.pred.shape == (len(val), 1, 3, 8, 8)
    assert np.isfinite(res.metrics["oracle_nmse_rollout"])


def test_skipped_without_trajectories(burgers):
    probe = TimeSteppingProbe("time_stepping", TINY)
    image_like = object()  # a 3DIEBench split: views of objects, no trajectories
    assert "PDE" in probe.skip_reason(context(image_like, image_like))
    train, val = burgers
    long = TimeSteppingProbe("time_stepping", {**TINY, "history": 20, "future": 20})
    assert "no history 20 + future 20" in long.skip_reason(context(train, val))


def test_schema_is_registered():
    assert PROBES.get("time_stepping") is TimeSteppingProbe
    assert PROBES.entry("time_stepping").config is TimeSteppingProbeConfig


def test_default_schedule_is_lpsdas_as_it_runs():
    """LPSDA's MultiStepLR(milestones=[0, 5, 10, 15], gamma=0.4) decays once when built."""
    cfg = TimeSteppingProbeConfig().__dict__
    opt, sched = solver_optimiser(nn.Linear(2, 2), cfg)
    rates = []
    for _ in range(cfg["epochs"]):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [4e-5] * 5 + [1.6e-5] * 5 + [6.4e-6] * 5 + [2.56e-6] * 5
    assert rates == pytest.approx(expected, rel=1e-9)


def test_default_budget_is_twice_the_frames_per_epoch():
    assert passes_per_epoch(TimeSteppingProbeConfig().__dict__, 140) == 280  # LPSDA's t_res * 2
    assert passes_per_epoch({"samples_per_trajectory": 3}, 140) == 3


def tiny_solver(history=4, future=4):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cond = Conditioning(torch.zeros(0), torch.ones(0), 8, 1)
        return ConditionedSolver(lambda e: LPSDACNN(history, future, e, 8), cond)


def test_validation_picks_the_epoch_with_the_lowest_unrolled_loss(burgers):
    train, _ = burgers
    data = Trajectories.of(train)
    states, scores = [], iter([3.0, 1.0, 2.0, 1.0])  # epoch 2 (0-based 1) is the best

    def validation_loss(model):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    cfg = {**TINY, "epochs": 4}
    model, epoch = train_solver(
        tiny_solver(), data, torch.zeros(len(train), 0), 4, 4, 8, cfg, torch.device("cpu"),
        False, "t", validation_loss,
    )  # fmt: skip
    assert epoch == 1  # a later tie does not replace it (LPSDA: val_loss < min_val_loss)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, states[1][k])
    assert not all(torch.equal(v, states[3][k]) for k, v in model.state_dict().items())
    _, last = train_solver(
        tiny_solver(), data, torch.zeros(len(train), 0), 4, 4, 8, cfg, torch.device("cpu"),
        False, "t",
    )  # fmt: skip
    assert last == 3


def test_summed_nmse_is_lpsdas_sum_over_the_rolled_out_frames(burgers):
    _, val = burgers
    data = Trajectories.of(val)
    metrics, _, _ = evaluate_solver(
        tiny_solver(), data, torch.zeros(len(val), 0), 4, 4, 8, None, torch.device("cpu")
    )
    assert metrics["nmse_rollout_summed"] == pytest.approx(
        metrics["nmse_rollout"] * metrics["rollout_frames"], rel=1e-9
    )
    # persistence (the zero-initialised output): the unrolled MSE is the last history frame's
    s0 = 8
    truth = data.u[:, s0 + 4 : s0 + 20].double()
    persist = data.u[:, s0 + 3 : s0 + 4].double()
    assert metrics["mse_rollout"] == pytest.approx(float((truth - persist).pow(2).mean()), rel=1e-6)


def test_card_names_the_validation_split_or_its_absence(burgers):
    train, val = burgers
    probe = TimeSteppingProbe("time_stepping", TINY)
    data = {
        "impl": "pde", "root": str(train.root), "window": 8, "strengths": {}, "mode": "coords",
        "composition": "expm", "val_every": 6, "labelled_split": True, "val_split": "val",
    }  # fmt: skip
    ctx = context(train, val)
    ctx.data = data
    card = probe.card(ctx)
    assert card["validation_split"] == "labelled" and card["selection"] == "validation"
    assert card["samples_per_trajectory"] == 1 and card["milestones"] == [0, 5, 10, 15]
    assert "samples_per_trajectory: 't_res * 2' in the reference -> 1 here" in card["deviations"]
    res = probe.run(ctx, "full")
    assert 1 <= res.metrics["selected_epoch"] <= TINY["epochs"]
    no_split = TimeSteppingProbe("time_stepping", TINY)
    card = no_split.card(context(train, val))
    assert card["validation_split"] is None and card["selection"] == "last"
    assert any("no validation split" in d for d in card["deviations"])
    with pytest.raises(ValueError, match="selection='best'"):
        TimeSteppingProbe("time_stepping", {**TINY, "selection": "best"})


def test_constant_conditioning_dimensions_are_set_to_zero_not_blown_up():
    """A dimension constant over the probe-train trajectories (a dead unit) carries nothing
    to learn: standardising it would turn a small test-time deviation into a huge input."""
    train = torch.randn(40, 3)
    train[:, 1] = 0.0  # dead on the probe-train split
    cond = Conditioning(train.mean(0), train.std(0), 8, 2)
    test = torch.tensor([[0.1, 5.0, -0.2], [0.1, 0.0, -0.2]])
    with torch.no_grad():
        torch.testing.assert_close(cond(test)[0], cond(test)[1])  # dimension 1 is ignored
        z = (test[0] - cond.mean) / cond.std * cond.live
    assert z[1] == 0 and z.abs().max() < 10
    assert cond.live.tolist() == [1.0, 0.0, 1.0]
