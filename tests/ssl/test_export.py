"""The trained encoder taken out of a checkpoint: it loads strictly into timm and gives the
features the method computed, and the card slices them into the method's parts."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from equissl.apps.export import main as export_main
from equissl.ssl.export import export_encoder, load_encoder
from equissl.ssl.loading import load_method
from equissl.training.pretrain import pretrain
from tests.conftest import TOY, compose_pretrain


@pytest.fixture
def sie_checkpoint(iebench_tree, tmp_path):
    toy = [o for o in TOY if not o.startswith(("method", "backbone"))]
    config = compose_pretrain(
        [*toy, f"data.root={iebench_tree}", "method=sie", "method.projector=[16,16]",
         "backbone=resnet18", "trainer.max_steps=1"]
    )  # fmt: skip
    return pretrain(config, tmp_path / "run")


@pytest.mark.e2e
def test_exported_trunk_loads_strictly_into_timm_and_matches_the_method(sie_checkpoint, tmp_path):
    weights, card_path = export_encoder(sie_checkpoint, tmp_path / "encoder")
    card = json.loads(card_path.read_text())
    assert card["parts"] == {"full": [0, 512], "inv": [0, 256], "equi": [256, 512]}
    assert card["num_features"] == 512
    assert card["timm"].startswith("timm.create_model('resnet18'")
    model = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=3)
    model.load_state_dict(torch.load(weights, weights_only=True)["trunk"], strict=True)
    method, _ = load_method(sie_checkpoint)
    views = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = method.backbone(views)
        assert torch.allclose(model.eval()(views), expected, atol=1e-5)
        encoder, _ = load_encoder(tmp_path / "encoder")
        assert torch.allclose(encoder(views), expected, atol=1e-6)


@pytest.mark.e2e
def test_export_command_names_a_bad_checkpoint(sie_checkpoint, tmp_path, capsys):
    assert export_main([str(sie_checkpoint)]) == 0
    assert (sie_checkpoint.parent.parent / "encoder.json").is_file()
    bad = tmp_path / "text.ckpt"
    bad.write_text("not a checkpoint")
    assert export_main([str(bad)]) == 1
    assert "text.ckpt" in capsys.readouterr().err
    assert export_main([]) == 2
