"""Path integration: the cumulative action against scipy, the probe against exact and noise
aggregates, and the evaluation stage's keys, plot, report and skips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from equissl.datasets.iebench_actions import IEBenchActionSpace
from equissl.eval.evaluate import evaluate_checkpoint
from equissl.eval.probes.path_integration import angle_sum, composed, path_integration_probe
from equissl.registries import METHODS
from equissl.training.pretrain import pretrain
from tests.conftest import TOY, compose_pretrain, write_iebench_tree
from tests.toy_parts import Toy, ToyConfig

CFG = {
    "epochs": 40,
    "lr": 1e-2,
    "weight_decay": 0.0,
    "batch_size": 100,
    "hidden_dim": 64,
    "seed": 0,
}
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Small MLPs: one thread is several times faster than contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_latents(n: int, v: int, seed: int, latent_dim: int = 7) -> torch.Tensor:
    """``[n, v, latent_dim]`` 3DIEBench-like latents (Euler angles in ±π/2, hues, light,
    translations in ±0.5)."""
    g = torch.Generator().manual_seed(seed)
    lat = torch.rand(n, v, latent_dim, generator=g)
    lat[..., :3] = (lat[..., :3] - 0.5) * torch.pi
    if latent_dim == 10:
        lat[..., 7:] -= 0.5
    return lat


def test_composed_rotation_is_the_composition_of_the_steps():
    lat = random_latents(64, 6, seed=0)
    action = IEBenchActionSpace().select(["rotation"])
    steps = [Rotation.from_euler("xyz", lat[:, k, :3].double().numpy()) for k in range(6)]
    for m in range(2, 7):
        path = steps[0].inv() * steps[0]  # identity
        for k in range(m - 1):
            path = path * (steps[k].inv() * steps[k + 1])
        ours = Rotation.from_quat(composed(action, lat, m).double().numpy())
        assert np.allclose((ours.inv() * path).magnitude(), 0, atol=1e-5)
        step_angles = sum((steps[k].inv() * steps[k + 1]).magnitude() for k in range(m - 1))
        np.testing.assert_allclose(angle_sum(action, lat, m)[:, 0].numpy(), step_angles, atol=1e-5)


def test_composed_translation_is_the_composition_of_rigid_steps():
    """translation_object is the translation part of M_a⁻¹ M_b (M = [R | t]): composing the
    step transforms with numpy gives the first-to-last target."""
    lat = random_latents(32, 4, seed=1, latent_dim=10)
    action = IEBenchActionSpace(latent_dim=10).select(["translation_object", "translation"])

    def pose(k: int) -> np.ndarray:
        out = np.tile(np.eye(4), (len(lat), 1, 1))
        out[:, :3, :3] = Rotation.from_euler("xyz", lat[:, k, :3].double().numpy()).as_matrix()
        out[:, :3, 3] = lat[:, k, 7:].double().numpy()
        return out

    path = np.tile(np.eye(4), (len(lat), 1, 1))
    for k in range(3):
        path = path @ np.linalg.inv(pose(k)) @ pose(k + 1)
    target = composed(action, lat, 4).double().numpy()
    np.testing.assert_allclose(target[:, :3], path[:, :3, 3], atol=1e-5)
    np.testing.assert_allclose(target[:, 3:], lat[:, 3, 7:] - lat[:, 0, 7:], atol=1e-6)


def sequences(n: int, seed: int, m: int, exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Aggregates ``[n, 8]`` of ``m`` views: the composed quaternion (+ noise dims), or noise
    only; and the targets ``[n, 4]``."""
    lat = random_latents(n, m, seed)
    y = composed(IEBenchActionSpace().select(["rotation"]), lat, m)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(n, 8, generator=g)
    if exact:
        x[:, :4] = y
    return x, y


@pytest.mark.parametrize("m", [2, 5])
def test_probe_recovers_an_aggregate_that_encodes_the_path(m):
    (xt, yt), (xv, yv) = sequences(300, 0, m, True), sequences(200, 1, m, True)
    res = path_integration_probe(xt, yt, xv, yv, CFG, CPU, progress=False).metrics
    assert res["r2_global"] > 0.9 and res["r2_sklearn"] > 0.9
    assert res["r2_global"] > res["constant_r2_global"] + 0.5
    assert res["r2_sklearn"] > res["constant_r2_sklearn"] + 0.8


def test_probe_on_a_noise_aggregate_stays_at_the_constant_floor():
    (xt, yt), (xv, yv) = sequences(300, 2, 4, False), sequences(200, 3, 4, False)
    res = path_integration_probe(xt, yt, xv, yv, CFG, CPU, progress=False).metrics
    # the floor: predicting the train-mean target (r2_global of quaternions is far above 0)
    constant = yt.mean(0, keepdim=True).expand_as(yv).double()
    ss_tot = ((yv.double() - yv.double().mean()) ** 2).sum()
    assert res["constant_r2_global"] == pytest.approx(
        float(1 - ((yv.double() - constant) ** 2).sum() / ss_tot)
    )
    assert res["constant_r2_global"] > 0.1 and abs(res["constant_r2_sklearn"]) < 0.05
    # noise carries no path: the probe does no better than the constant (it overfits below)
    assert res["r2_global"] < res["constant_r2_global"] + 0.05
    assert res["r2_sklearn"] < 0.05


# ------------------------------------------------------------------ evaluation stage
@METHODS.register("toy_path", config=ToyConfig)
class ToyPath(Toy):
    """A sequence method whose ``equi`` aggregate is the composed rotation of its views,
    ``inv`` aggregate is noise and ``full`` aggregate the mean of the views' features."""

    sequence_representation = True

    @property
    def parts(self) -> dict[str, slice]:
        w = self.repr_dim
        return {"full": slice(0, w), "inv": slice(0, w // 2), "equi": slice(w // 2, w)}

    def represent_sequence(self, views, latents):
        b, m = views.shape[:2]
        path = self.action_space.target("rotation", latents[:, 0].cpu(), latents[:, -1].cpu())
        g = torch.Generator().manual_seed(int(latents.sum() * 1000) % 2**31)
        return {
            "full": self.backbone(views.flatten(0, 1)).view(b, m, -1).mean(1),
            "equi": torch.cat((path, torch.zeros(b, 4)), 1).to(views.device),
            "inv": torch.randn(b, 8, generator=g).to(views.device),
        }


def resplit(root: Path) -> Path:
    """Half of each class to val (the fixture puts one object per class there)."""
    data = root / "data"
    entries = np.concatenate([np.load(data / f"{s}_images.npy") for s in ("train", "val")])
    labels = np.concatenate([np.load(data / f"{s}_labels.npy") for s in ("train", "val")])
    val = np.arange(len(entries)) % 2 == 0
    for split, mask in (("train", ~val), ("val", val)):
        np.save(data / f"{split}_images.npy", entries[mask])
        np.save(data / f"{split}_labels.npy", labels[mask])
    return root


def probes(epochs: int) -> dict:
    fast = {"epochs": epochs, "batch_size": 16, "lr": 1e-2, "hidden_dim": 32}
    return {
        "classification": {"impl": "classification", "seed": 0, **fast, "weight_decay": 0.0},
        "rotation": {
            "impl": "pair_regression",
            "seed": 0,
            "target": "rotation",
            "weight_decay": 0.0,
            "val_pairs_per_object": 2,
            **fast,
        },  # fmt: skip
        "path_integration": {
            "impl": "path_integration",
            "seed": 0,
            "components": None,
            "cumulative": "composed",
            "lengths": [2, 3, 4, 5, 6, 7],
            "weight_decay": 0.0,
            **fast,
        },  # fmt: skip
    }


def test_evaluation_stage_reports_sequence_protocols(tmp_path):
    root = resplit(write_iebench_tree(tmp_path / "data", objects_per_class=12, views=5))
    config = compose_pretrain(
        [*TOY, "method=toy_path_schema", "method.name=toy_path", f"data.root={root}",
         "trainer.max_steps=0"]
    )  # fmt: skip
    ckpt = pretrain(config, tmp_path / "run")
    eval_cfg = {**config["eval"], "num_workers": 0, "probes": probes(60)}
    out = tmp_path / "eval"
    results = evaluate_checkpoint(ckpt, eval_cfg, out, progress=False)
    metrics = results["metrics"]
    # classification of the aggregate with M_val = 1, 3, 5 (eval.sequence_views), per part
    for part in ("full", "inv", "equi"):
        for m in (1, 3, 5):
            assert f"{part}@M{m}/classification/top1" in metrics
    assert "full@M2/classification/top1" not in metrics  # a path-integration-only length
    # path integration for M = 2..5 (7 views asked, 5 stored), both R² and the floor
    for m in (2, 3, 4, 5):
        for k in ("r2_global", "r2_sklearn", "constant_r2_global", "constant_r2_sklearn"):
            assert f"equi@M{m}/path_integration/{k}" in metrics
    assert not any(k.startswith(("equi@M6", "full/path", "equi/path")) for k in metrics)
    for m in (2, 3, 4, 5):
        exact = metrics[f"equi@M{m}/path_integration/r2_global"]
        noise = metrics[f"inv@M{m}/path_integration/r2_global"]
        floor = metrics[f"equi@M{m}/path_integration/constant_r2_global"]
        assert exact > floor + 0.3 and exact > noise + 0.3, (m, exact, noise, floor)
    # the plot is written and referenced, in results.json and results.md
    assert results["plots"]["path_integration"] == "path_integration.png"
    assert (out / "path_integration.png").stat().st_size > 1000
    assert (out / results["plots"]["rotation/full"]).is_file()
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["plots"] == results["plots"] and on_disk["skipped"] == {}
    md = (out / "results.md").read_text()
    assert "## classification against the number of views M" in md
    assert "## path_integration against the number of views M" in md
    assert "| equi | r2_global |" in md and "![path_integration](path_integration.png)" in md


def test_path_integration_is_skipped_for_methods_without_sequences(iebench_tree, tmp_path):
    config = compose_pretrain([*TOY, f"data.root={iebench_tree}", "trainer.max_steps=0"])
    ckpt = pretrain(config, tmp_path / "run")
    eval_cfg = {**config["eval"], "num_workers": 0, "probes": probes(1)}
    results = evaluate_checkpoint(ckpt, eval_cfg, tmp_path / "eval", progress=False)
    assert "sequence representation" in results["skipped"]["path_integration"]
    assert not any("@M" in k or "path_integration" in k for k in results["metrics"])
    assert "full/classification/top1" in results["metrics"]
    md = (tmp_path / "eval" / "results.md").read_text()
    assert "- path_integration: the method has no sequence representation" in md


def test_bad_settings_fail_naming_the_key():
    from equissl.eval.probes.path_integration import PathIntegrationProbe

    cfg = probes(1)["path_integration"]
    with pytest.raises(ValueError, match=r"lengths has \[1\]: a path needs at least 2 views"):
        PathIntegrationProbe("path_integration", {**cfg, "lengths": [1, 3]})
    with pytest.raises(ValueError, match=r"cumulative='sum'; choose from"):
        PathIntegrationProbe("path_integration", {**cfg, "cumulative": "sum"})
    assert PathIntegrationProbe("p", {**cfg, "lengths": [5, 2, 5]}).sequence_views() == (2, 5)
