"""``eval.backbone_mode: reference``: the frozen backbone rerun in ``train()`` mode on every
probe batch, as SIE's probe scripts do, on a private copy whose running statistics drift."""

from __future__ import annotations

import copy

import pytest
import torch

from equissl.eval.evaluate import eval_datasets, evaluate_checkpoint
from equissl.eval.features import extract_features
from equissl.eval.probes.backbone_mode import TrainModeBackbone
from equissl.eval.probes.protocol import TRAIN_MODE
from equissl.ssl.loading import load_method
from tests.eval.conftest import fast_probes


def running_means(model: torch.nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in model.modules() if hasattr(m, "running_mean")]


def test_train_mode_uses_batch_statistics_on_a_private_copy(initial_checkpoint):
    _, ckpt = initial_checkpoint
    method, meta = load_method(ckpt)
    _, splits = eval_datasets(meta)
    views = splits["train"].evaluation_views(0, 0)
    v = views.views_per_object
    extraction = {"views_per_object": v, "seed": 0, "batch_size": 8, "num_workers": 0}
    before = running_means(method)
    backbone = TrainModeBackbone(
        method, splits["train"], splits["val"], extraction, "full", torch.device("cpu")
    )
    flat = torch.tensor([0, v + 1, 2 * v + 2, 3 * v])
    expected_model = copy.deepcopy(method).train()
    x = torch.stack([views[int(i)]["views"][0] for i in flat])
    with torch.no_grad():
        expected = expected_model.represent(x)["full"]
    got = backbone.features(flat)
    torch.testing.assert_close(got, expected)  # batch statistics, as net.train() gives
    with torch.no_grad():
        in_eval = method.eval().represent(x)["full"]
    assert not torch.allclose(got, in_eval, atol=1e-4)
    # the running statistics moved on the copy (as SIE's), never on the stage's model
    for a, b in zip(running_means(method), before, strict=True):
        torch.testing.assert_close(a, b)
    drifted = running_means(backbone.model)
    assert any(not torch.allclose(a, b) for a, b in zip(drifted, before, strict=True))
    # the test split is scored in eval() mode with the drifted statistics
    test = backbone.test_features()
    cached = extract_features(method, splits["val"], v, progress=False).parts["full"]
    assert test.shape == cached.shape
    val_views = splits["val"].evaluation_views(v, 0)
    x0 = torch.stack([val_views[i]["views"][0] for i in range(v)])
    with torch.no_grad():
        torch.testing.assert_close(test[0], backbone.model.eval().represent(x0)["full"])
    assert not torch.allclose(test, cached, atol=1e-4)


def test_reference_mode_runs_sies_probes_in_train_mode_and_says_so(initial_checkpoint, tmp_path):
    config, ckpt = initial_checkpoint
    probes = {**fast_probes(batch_size=4), "knn": config["eval"]["probes"]["knn"]}
    eval_cfg = {**config["eval"], "num_workers": 0, "probes": probes}
    runs = {
        mode: evaluate_checkpoint(
            ckpt, {**eval_cfg, "backbone_mode": mode}, tmp_path / mode, progress=False
        )
        for mode in ("eval", "reference")
    }
    cards = runs["reference"]["protocols"]
    for name in ("classification", "rotation"):
        assert cards[name]["backbone"] == TRAIN_MODE
        assert not any(d.startswith("backbone:") for d in cards[name]["deviations"])
        default = runs["eval"]["protocols"][name]
        assert any(d.startswith("backbone:") for d in default["deviations"])
    # k-NN follows no train()-mode protocol: cached features in either mode, same numbers
    assert cards["knn"]["backbone"].startswith("frozen, eval() mode")
    knn = {m: {k: v for k, v in r["metrics"].items() if "/knn/" in k} for m, r in runs.items()}
    assert knn["eval"] == knn["reference"]
    rot = "full/rotation/r2_global"
    assert runs["eval"]["metrics"][rot] != runs["reference"]["metrics"][rot]


def test_an_unknown_backbone_mode_is_named(initial_checkpoint, tmp_path):
    config, ckpt = initial_checkpoint
    with pytest.raises(ValueError, match=r"eval.backbone_mode='train'.*eval, reference"):
        evaluate_checkpoint(ckpt, {**config["eval"], "backbone_mode": "train"}, tmp_path)
