from pathlib import Path

import numpy as np
import pytest
import torch

from equissl.eval.probes.classification import classification_probe
from equissl.eval.probes.pair_regression import fixed_pairs, pair_regression_probe

CFG = {
    "epochs": 60,
    "lr": 1e-2,
    "weight_decay": 0.0,
    "batch_size": 64,
    "hidden_dim": 64,
    "val_pairs_per_object": 4,
    "seed": 0,
}


def toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """4 views per object; dims 0-3 encode the class, dims 4-5 the view's 2-d latent.
    Returns features ``[n, 4, 8]``, latents ``[n, 4, 2]``, labels ``[n]``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, (n,), generator=g)
    lat = torch.randn(n, 4, 2, generator=g)
    feats = torch.randn(n, 4, 8, generator=g) * 0.1
    feats[..., :3] += torch.nn.functional.one_hot(labels, 3)[:, None].float() * 2
    feats[..., 4:6] += lat
    return feats, lat, labels


def test_classification_probe_learns_and_uses_only_its_part():
    (xt, _, yt), (xv, _, yv) = toy(300, 0), toy(100, 1)
    cpu = torch.device("cpu")
    good = classification_probe(xt[..., :4], yt, xv[..., :4], yv, 3, CFG, cpu, False)
    bad = classification_probe(xt[..., 4:], yt, xv[..., 4:], yv, 3, CFG, cpu, False)
    assert good.metrics["top1"] > 0.95 and good.metrics["balanced_top1"] > 0.95
    assert bad.metrics["top1"] < 0.6


def test_pair_regression_probe_learns_relative_target():
    (xt, lt, _), (xv, lv, _) = toy(400, 2), toy(100, 3)

    def target(a, b):
        return b - a

    cpu = torch.device("cpu")
    good = pair_regression_probe(
        xt[..., 4:6], lt, xv[..., 4:6], lv, target, CFG, cpu, progress=False
    )
    bad = pair_regression_probe(xt[..., :4], lt, xv[..., :4], lv, target, CFG, cpu, progress=False)
    assert good.metrics["r2_global"] > 0.9 and good.metrics["r2_sklearn"] > 0.9
    assert bad.metrics["r2_sklearn"] < 0.2


def test_fixed_pairs_are_distinct_and_seeded():
    p = fixed_pairs(50, 5, 3, seed=7)
    assert p.shape == (150, 3) and (p[:, 1] != p[:, 2]).all()
    assert torch.equal(p, fixed_pairs(50, 5, 3, seed=7))


def test_probes_are_reproducible_whatever_the_global_rng():
    (xt, lt, yt), (xv, lv, yv) = toy(120, 4), toy(40, 5)
    cpu = torch.device("cpu")
    cfg = {**CFG, "epochs": 3}
    runs = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # the global RNG must not matter
        c = classification_probe(xt, yt, xv, yv, 3, cfg, cpu, False).metrics
        r = pair_regression_probe(
            xt, lt, xv, lv, lambda a, b: b - a, cfg, cpu, progress=False
        ).metrics
        runs.append((c, r))
    assert runs[0] == runs[1]


def test_pair_floor_is_the_train_pairs_mean_on_the_same_val_pairs():
    (xt, lt, _), (xv, lv, _) = toy(50, 6), toy(20, 7)
    cpu = torch.device("cpu")
    cfg = {**CFG, "epochs": 1}

    def target(a, b):
        return b - a

    res = pair_regression_probe(xt, lt, xv, lv, target, cfg, cpu, progress=False)
    # independently: the seeded training sample (seed + 2) and validation pairs (seed + 1)
    o, a, b = fixed_pairs(50, 4, 4, seed=2).numpy().T
    mean = (lt.numpy()[o, b] - lt.numpy()[o, a]).astype(np.float64).mean(0)
    o, a, b = fixed_pairs(20, 4, 4, seed=1).numpy().T
    y = (lv.numpy()[o, b] - lv.numpy()[o, a]).astype(np.float64)
    assert np.allclose(res.target.numpy(), y, atol=1e-6)
    ss_res = ((y - mean) ** 2).sum(0)
    assert res.metrics["constant_mse"] == pytest.approx(ss_res.sum() / y.size)
    assert res.metrics["constant_r2_global"] == pytest.approx(
        1 - ss_res.sum() / ((y - y.mean()) ** 2).sum()
    )
    assert res.metrics["constant_r2_sklearn"] == pytest.approx(
        (1 - ss_res / ((y - y.mean(0)) ** 2).sum(0)).mean()
    )
    # floors depend on the targets only, not on the features
    other = pair_regression_probe(xt[..., :2], lt, xv[..., :2], lv, target, cfg, cpu, False)
    floors = {k: v for k, v in res.metrics.items() if k.startswith("constant_")}
    assert floors == {k: v for k, v in other.metrics.items() if k.startswith("constant_")}


def test_probes_on_features_that_carry_nothing_score_their_floor():
    """A probe on constant features can only learn a constant: the train mean (regression)
    or the train majority class (classification), which is what the floors report."""
    (xt, lt, yt), (xv, lv, yv) = toy(200, 8), toy(60, 9)
    yt = torch.where(torch.arange(200) % 3 == 0, 1, yt)  # a clear majority class
    cpu = torch.device("cpu")
    zt, zv = torch.zeros_like(xt), torch.zeros_like(xv)
    c = classification_probe(zt, yt, zv, yv, 3, {**CFG, "epochs": 20}, cpu, False).metrics
    assert c["top1"] == c["majority_top1"] and c["balanced_top1"] == c["majority_balanced_top1"]
    assert c["chance_top1"] == pytest.approx(1 / 3)
    cfg = {**CFG, "epochs": 40, "hidden_dim": 16}
    r = pair_regression_probe(zt, lt, zv, lv, lambda a, b: b - a, cfg, cpu, False).metrics
    for k in ("r2_global", "r2_sklearn", "mse"):
        assert r[k] == pytest.approx(r[f"constant_{k}"], abs=0.02), k


def test_color_runs_by_default_where_the_action_space_offers_it():
    from hydra import compose, initialize_config_module

    from equissl.apps.hydra_main import _resolved
    from equissl.datasets.iebench_actions import IEBenchActionSpace
    from equissl.datasets.pde.dataset import PDEActionSpace
    from equissl.eval.features import FeatureSet
    from equissl.eval.probes.base import EvalContext
    from equissl.plugins import register_configs
    from equissl.registries import PROBES

    register_configs()
    with initialize_config_module("equissl.configs", version_base="1.3"):
        for root, extra in (("pretrain", ["data.root=x"]), ("evaluate", ["checkpoint=x"])):
            probes = _resolved(compose(root, overrides=extra))["eval"]["probes"]
            assert probes["color"]["target"] == "color", root
    feats = FeatureSet({"full": torch.zeros(2, 3, 4)}, torch.zeros(2, 3, 7), *(None,) * 3)
    probe = PROBES.get("pair_regression")("color", {**CFG, "target": "color"})

    def reason(space):
        return probe.skip_reason(
            EvalContext(feats, feats, space, 0, None, {}, {}, torch.device("cpu"), Path("."))
        )

    assert reason(IEBenchActionSpace()) is None  # 3DIEBench
    assert reason(IEBenchActionSpace(latent_dim=10)) is None  # 3DIEBench-T
    for equation in ("burgers", "kdv", "ns"):
        assert "not 'color'" in reason(PDEActionSpace(equation)), equation


def test_classification_reads_the_cached_part_in_place_when_every_label_is_known(tmp_path):
    """A memory-mapped ``[N, V, D]`` part is not copied into RAM for the probe; objects with
    an unknown label (-1) are left out."""
    from equissl.eval.probes.classification import labelled

    path = tmp_path / "part.npy"
    np.save(path, np.arange(24, dtype=np.float32).reshape(4, 3, 2))
    part = torch.from_numpy(np.load(path, mmap_mode="r+"))
    x, y = labelled(part, torch.tensor([0, 1, 1, 0]))
    assert x.data_ptr() == part.data_ptr() and y.tolist() == [0, 1, 1, 0]
    x, y = labelled(part, torch.tensor([0, -1, 1, 0]))
    assert x.shape == (3, 3, 2) and y.tolist() == [0, 1, 0]
    assert torch.equal(x[1], part[2])


def test_predict_fills_one_output_batch_by_batch():
    """``predict`` equals the model on all rows at once, in float32, with ``keep`` applied
    per batch, for integer rows (view indices) too, and on no rows."""
    from equissl.eval.probes.base import predict, view_features
    from equissl.scores import classes

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 5)
    x = torch.randn(10, 3).half()
    with torch.no_grad():
        whole = model(x.float())
    dev = torch.device("cpu")
    torch.testing.assert_close(predict(model, x, dev, bs=4), whole)
    assert torch.equal(predict(model, x, dev, bs=3, keep=classes), whole.argmax(-1))
    cache = torch.randn(4, 3, 2)  # [N, V, D]: pairs of views side by side
    rows = torch.tensor([[0, 5], [11, 2], [7, 7]])
    got = predict(view_features(cache), rows, dev, bs=2)
    flat = cache.reshape(-1, 2)
    assert torch.equal(got, torch.cat((flat[rows[:, 0]], flat[rows[:, 1]]), dim=1))
    assert predict(model, x[:0], dev).shape == (0, 5)
