"""Checkpoints in the reference repositories' layouts (equissl/ssl/released.py): imported into
equissl checkpoints that compute what the references' modules compute.

Each test builds a model in a reference's layout here, with the module names of its source
(facebookresearch/SIE ``src/models.py``: ``models.SIE``, ``Projector``,
``hypernetwork.ParametrizedNet``; AberdeenML/EquiCaps ``src/models.py`` and
``src/sr_capsnet.py``: ``EquiCaps_3x3``, ``CapsNetNoStem``, ``SelfRouting2d``;
hafezgh/seq-jepa ``src/models.py``: ``SeqJEPA_Transforms``), random weights and running
statistics, saves it as the reference's training loop does (``{"epoch", "model": DDP state
dict, "optimizer"}``), imports it, and compares the rebuilt model with the reference-shaped
modules computed by hand. Nothing is downloaded.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import Tensor, nn

from equissl.checkpointing import CheckpointError, load_checkpoint
from equissl.models.resnet_sie import ResNetSIE
from equissl.ssl.loading import load_method
from equissl.ssl.released import RELEASED_LAYOUTS, import_released
from tests.conftest import compose_pretrain, write_iebench_tree

SIE = [
    "experiment=sie_3diebench",
    "data.image_size=32",
    "backbone.layers=[1,1,1,1]",
    "method.projector=[16,12,8]",
]
EQUICAPS = [
    "experiment=equicaps_3x3_3diebench",
    "data.image_size=64",  # a 2 × 2 feature map: the capsule order over positions matters
    "backbone.layers=[1,1,1,1]",
    "method.num_capsules=4",
]
SEQ_JEPA = [
    "experiment=seq_jepa_3diebench",
    "data.image_size=32",
    "method.action_embed_dim=16",  # token width 512 + 16 = 528, 4 heads
    "method.layers=1",
    "method.predictor_hidden=24",
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_iebench_tree(tmp_path_factory.mktemp("released") / "3DIEBench")


def config_of(tree: Path, overrides: list[str]) -> dict:
    return compose_pretrain([f"data.root={tree}", "data.num_workers=0", *overrides])


def randomised(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter and BatchNorm statistic drawn at random (no zero-initialised branch,
    no identity normalisation), so that a misplaced tensor changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=g)
            if name.endswith("running_var"):
                t.copy_(0.5 + noise.abs())
            elif name.endswith(".weight") and t.dim() == 1:  # BatchNorm / LayerNorm scale
                t.copy_(1 + 0.2 * noise)
            elif t.dim() >= 2:  # scaled by the fan-in: activations stay of order one
                t.copy_(noise / t[0].numel() ** 0.5)
            else:
                t.copy_(0.2 * noise)
    return module.eval()


def save_reference(model: nn.Module, path: Path, ddp: bool = True, **extra: Tensor) -> Path:
    """``{"epoch", "model", "optimizer"}`` as the references' training loops save it; the
    keys carry DDP's ``module.`` prefix when ``ddp``."""
    prefix = "module." if ddp else ""
    state = {prefix + k: v for k, v in model.state_dict().items()}
    state.update({prefix + k: v for k, v in extra.items()})
    torch.save({"epoch": 7, "model": state, "optimizer": {"state": {}}}, path)
    return path


def close(got: Tensor, want: Tensor) -> None:
    """Equal to float32 rounding, relative to the largest value (folding a bias into the
    running mean reorders a sum)."""
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def child(**modules: nn.Module) -> nn.Module:
    """A plain module holding ``modules`` under their names (the references' nesting)."""
    holder = nn.Module()
    for name, module in modules.items():
        holder.add_module(name, module)
    return holder


# ------------------------------------------------------------------------------ SIE
def sie_projector(in_dim: int, dims: list[int]) -> nn.Sequential:
    """SIE's ``Projector``: (Linear with bias, BatchNorm1d, ReLU) per hidden width, then a
    Linear without bias."""
    widths = [in_dim, *dims]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(True)]
    layers.append(nn.Linear(widths[-2], widths[-1], bias=False))
    return nn.Sequential(*layers)


def sie_reference(dims: list[int], seed: int = 0) -> nn.Module:
    """``models.SIE``'s modules: backbone (src/resnet.py's ResNet-18: our resnet_sie names),
    projector_inv / projector_equi on the two 256-d halves, predictor = ParametrizedNet with
    a linear hypernetwork (``hypernet.net.0``, no bias), and an online evaluator."""
    hypernet = child(net=nn.Sequential(nn.Linear(4, dims[-1] ** 2, bias=False)))
    model = child(
        backbone=ResNetSIE(3, [1, 1, 1, 1]),
        projector_inv=sie_projector(256, dims),
        projector_equi=sie_projector(256, dims),
        predictor=child(hypernet=hypernet),
        evaluator=child(classifier_repr=nn.Linear(512, 55)),
    )
    return randomised(model, seed)


def test_sie_layout_imports_with_the_projector_biases_folded(tree, tmp_path):
    ref = sie_reference([16, 12, 8])
    for part in ("inv", "equi"):  # the hidden biases are what the fold is about: not small
        for i in (0, 3):
            assert getattr(ref, f"projector_{part}")[i].bias.abs().mean() > 0.1
    source = save_reference(ref, tmp_path / "model.pth")
    out = import_released("sie", source, tmp_path / "sie.ckpt", config_of(tree, SIE))
    method, meta = load_method(out)
    assert meta["config"]["method"]["name"] == "sie" and meta["spec"]["view_shape"] == [3, 32, 32]
    assert not meta["config"]["method"]["online_probe"]
    released = load_checkpoint(out)["released"]
    assert released["layout"] == "sie" and released["epoch"] == 7
    assert released["repository"] == "facebookresearch/SIE"

    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        r = ref.backbone(x)  # the reference's forward: globally averaged [B, 512]
        reps = method.represent(x)
        torch.testing.assert_close(reps["full"], r)
        torch.testing.assert_close(reps["inv"], r[:, :256])
        torch.testing.assert_close(reps["equi"], r[:, 256:])
        for part, half in (("inv", r[:, :256]), ("equi", r[:, 256:])):
            head = getattr(ref, f"projector_{part}")
            lin, bn = head[0], head[1]
            # by hand: Linear with its bias, then BatchNorm on its running statistics
            h = half @ lin.weight.T + lin.bias
            h = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
            close(head[:2](half), h)
            ours = getattr(method, f"projector_{part}")
            close(ours.layers[:2](half), h)
            close(ours(half), head(half))
        z = method.projector_equi(r[:, 256:])
        action = torch.randn(5, 4)
        # ParametrizedNet: W(q) = hypernet(q) viewed [D_out, D_in], prediction W(q) z
        w = ref.predictor.hypernet.net(action).view(5, 8, 8)
        close(method.predict(z, action), torch.einsum("boi,bi->bo", w, z))
    for key, value in method.state_dict().items():  # no tensor left at its initial value
        if key.startswith("backbone.") and value.is_floating_point():
            assert torch.equal(value, ref.state_dict()[key.replace("backbone.trunk.", "backbone.")])


def test_sie_missing_and_unexpected_keys_and_shapes_are_named(tree, tmp_path):
    ref = sie_reference([16, 12, 8])
    state = {"module." + k: v for k, v in ref.state_dict().items()}
    del state["module.projector_equi.6.weight"]
    state["module.projector_equi.9.weight"] = torch.zeros(3)
    state["module.predictor.hypernet.net.0.weight"] = torch.zeros(36, 4)  # a 6-d embedding
    source = tmp_path / "model.pth"
    torch.save({"model": state}, source)
    with pytest.raises(CheckpointError) as err:
        import_released("sie", source, tmp_path / "sie.ckpt", config_of(tree, SIE))
    message = str(err.value)
    assert str(source) in message
    assert "  missing (1): module.projector_equi.6.weight\n" in message
    assert "  unexpected (1): module.projector_equi.9.weight\n" in message
    assert (
        "  of another shape (1): module.predictor.hypernet.net.0.weight (36, 4) in the file, "
        "(64, 4) in the model\n"
    ) in message
    assert "final_weights.pth" in message  # which file of SIE to import
    assert not (tmp_path / "sie.ckpt").exists()

    backbone_only = tmp_path / "final_weights.pth"  # SIE's backbone-only file
    torch.save(ref.backbone.state_dict(), backbone_only)
    with pytest.raises(CheckpointError) as err:
        import_released("sie", backbone_only, tmp_path / "sie.ckpt", config_of(tree, SIE))
    assert re.search(r"\n  missing \(\d+\): backbone\.conv1\.weight; ", str(err.value))
    assert re.search(r"\n  unexpected \(\d+\): conv1\.weight; ", str(err.value))


def test_wrong_files_and_methods_are_named(tree, tmp_path):
    config = config_of(tree, SIE)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pth cannot be read"):
        import_released("sie", text, tmp_path / "x.ckpt", config)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        import_released("sie", tmp_path / "absent.pth", tmp_path / "x.ckpt", config)
    numbers = tmp_path / "numbers.pth"
    torch.save({"model": [1, 2]}, numbers)
    with pytest.raises(CheckpointError, match="numbers.pth holds no state dict"):
        import_released("sie", numbers, tmp_path / "x.ckpt", config)
    with pytest.raises(ValueError, match="experiment=equicaps_3x3_3diebench"):
        import_released("equicaps", numbers, tmp_path / "x.ckpt", config)
    with pytest.raises(KeyError, match="equicaps, seq_jepa, sie"):
        import_released("capsie", numbers, tmp_path / "x.ckpt", config)
    assert RELEASED_LAYOUTS.names() == ["equicaps", "seq_jepa", "sie"]


# ------------------------------------------------------------------------- EquiCaps
def equicaps_reference(num_caps: int, pose_dim: int, map_side: int, seed: int = 1) -> nn.Module:
    """``EquiCaps_3x3``'s modules: backbone (SIE's ResNet), projector = ``CapsNetNoStem``
    (conv_a, conv_pose, bn_a, bn_pose, fc = ``SelfRouting2d`` with the map as its kernel:
    W1 [kkA, B·D, C], W2 [kkA, B, C], b2 [1, 1, kkA, B]) and an online evaluator."""
    n = map_side * map_side * num_caps
    fc = nn.Module()
    fc.W1 = nn.Parameter(torch.zeros(n, num_caps * pose_dim, pose_dim))
    fc.W2 = nn.Parameter(torch.zeros(n, num_caps, pose_dim))
    fc.b2 = nn.Parameter(torch.zeros(1, 1, n, num_caps))
    projector = child(
        conv_a=nn.Conv2d(512, num_caps, 3, padding=1, bias=False),
        conv_pose=nn.Conv2d(512, num_caps * pose_dim, 3, padding=1, bias=False),
        bn_a=nn.BatchNorm2d(num_caps),
        bn_pose=nn.BatchNorm2d(num_caps * pose_dim),
        fc=fc,
    )
    model = child(
        backbone=ResNetSIE(3, [1, 1, 1, 1]),
        projector=projector,
        evaluator=child(classifier_repr=nn.Linear(512, 55)),
    )
    return randomised(model, seed)


def reference_capsules(proj: nn.Module, fmap: Tensor, num_caps: int, pose_dim: int):
    """Self-routing written out in the reference's layout: input capsule ``n = p·A + a``
    (position ``p`` of the map in row-major order, the order of ``F.unfold``'s kernel, then
    type ``a``); ``r = softmax_k(W2[n] u_n + b2[n])``, votes ``W1[n] u_n`` read as ``[K, D]``,
    ``a_k = Σ a_n r_nk / Σ a_n``, ``pose_k = Σ_n a_n r_nk vote_nk / Σ_n a_n r_nk``."""
    b = fmap.shape[0]
    act = torch.sigmoid(proj.bn_a(proj.conv_a(fmap)))  # [B, A, h, w]
    pose = proj.bn_pose(proj.conv_pose(fmap))  # [B, A·C, h, w], channel a·C + c
    a_in = act.flatten(2).transpose(1, 2).reshape(b, -1)  # [B, p·A + a]
    u = pose.view(b, num_caps, pose_dim, -1).permute(0, 3, 1, 2).reshape(b, -1, pose_dim)
    fc = proj.fc
    r = torch.softmax(torch.einsum("nkc,bnc->bnk", fc.W2, u) + fc.b2[0, 0], dim=-1)
    votes = torch.einsum("nmc,bnc->bnm", fc.W1, u).view(b, -1, num_caps, pose_dim)
    ar = a_in[..., None] * r
    act_out = ar.sum(1) / a_in.sum(1, keepdim=True)
    pose_out = torch.einsum("bnk,bnkd->bkd", ar / ar.sum(1, keepdim=True), votes)
    return act_out, pose_out


def test_equicaps_layout_imports_the_capsule_projector(tree, tmp_path):
    ref = equicaps_reference(num_caps=4, pose_dim=9, map_side=2)
    # EquiCaps' final_weights.pth and released files: the bare DDP state dict
    source = tmp_path / "EquiCaps_3DIEBench.pth"
    torch.save({"module." + k: v for k, v in ref.state_dict().items()}, source)
    out = import_released("equicaps", source, tmp_path / "e.ckpt", config_of(tree, EQUICAPS))
    method, meta = load_method(out)
    assert meta["config"]["method"]["name"] == "equicaps_3x3"
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        fmap = ref.backbone.forward_features(x)
        assert fmap.shape[-2:] == (2, 2)
        torch.testing.assert_close(method.represent(x)["full"], fmap.mean((2, 3)))
        _, act, pose = method.embed(x)
        want_act, want_pose = reference_capsules(ref.projector, fmap, 4, 9)
        torch.testing.assert_close(act, want_act)
        torch.testing.assert_close(pose, want_pose.view(3, 4, 3, 3))

    # 32 px views: a 1 × 1 map, 4 input capsules where the file has 16; shapes named
    small = config_of(tree, [*EQUICAPS, "data.image_size=32"])
    with pytest.raises(CheckpointError) as err:
        import_released("equicaps", source, tmp_path / "f.ckpt", small)
    assert str(err.value).splitlines()[1] == (
        "  of another shape (3): module.projector.fc.W1 (16, 36, 9) in the file, (4, 36, 9) "
        "in the model; module.projector.fc.W2 (16, 4, 9) in the file, (4, 4, 9) in the model; "
        "module.projector.fc.b2 (1, 1, 16, 4) in the file, (1, 1, 4, 4) in the model"
    )


# -------------------------------------------------------------------------- seq-JEPA
def torchvision_encoder() -> nn.Module:
    encoder = torchvision.models.resnet18(weights=None, zero_init_residual=True)
    encoder.fc = nn.Identity()
    return encoder


def seq_jepa_reference(embed: int, hidden: int, seed: int = 2) -> nn.Module:
    """``SeqJEPA_Transforms``' modules: encoder / target_encoder (torchvision's resnet18,
    zero-init residuals, fc replaced by Identity), action_proj (bias-free Linear,
    BatchNorm1d without affine), agg_token, transformer_encoder (``TransformerEncoder_``: an
    nn.TransformerEncoder and a final LayerNorm ``norm``), predictor (Linear without bias,
    BatchNorm1d, ReLU, Linear) and the online probes of main_transformed_views.py."""
    dim = 512 + embed
    layer = nn.TransformerEncoderLayer(dim, 4, dim_feedforward=4 * dim, batch_first=True)
    model = child(
        encoder=torchvision_encoder(),
        target_encoder=torchvision_encoder(),
        action_proj=nn.Sequential(
            nn.Linear(4, embed, bias=False), nn.BatchNorm1d(embed, affine=False)
        ),
        transformer_encoder=child(
            transformer_encoder=nn.TransformerEncoder(layer, 1, enable_nested_tensor=False),
            norm=nn.LayerNorm(dim),
        ),
        predictor=nn.Sequential(
            nn.Linear(dim + embed, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 512),
        ),
        online_linprobe=nn.Sequential(nn.Linear(dim, 55)),
    )
    model.agg_token = nn.Parameter(torch.zeros(1, 1, dim))
    return randomised(model, seed)


def test_seq_jepa_layout_imports_encoder_aggregator_and_predictor(tree, tmp_path):
    ref = seq_jepa_reference(embed=16, hidden=24)
    source = save_reference(ref, tmp_path / "ckpt_epoch_1000.pth", ddp=False)
    out = import_released("seq_jepa", source, tmp_path / "s.ckpt", config_of(tree, SEQ_JEPA))
    method, meta = load_method(out)
    assert meta["parts"] == {"full": 512, "agg": 528}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        z = ref.encoder(x)  # torchvision's ResNet-18: the reference's encoder
        reps = method.represent(x)
        torch.testing.assert_close(reps["full"], z)
        torch.testing.assert_close(method.target_backbone(x), ref.target_encoder(x))
        # one observed view: tokens [AGG, (z ‖ 0)], transformer, final LayerNorm, AGG output
        tokens = torch.cat((z, torch.zeros(2, 16)), dim=1)[:, None]
        seq = torch.cat((ref.agg_token.expand(2, -1, -1), tokens), dim=1)
        tf = ref.transformer_encoder
        agg = tf.norm(tf.transformer_encoder(seq))[:, 0]
        torch.testing.assert_close(reps["agg"], agg)
        action = torch.randn(2, 4)
        emb = ref.action_proj(action)
        torch.testing.assert_close(method.action_embedding(action), emb)
        pred_in = torch.cat((agg, emb), dim=1)
        torch.testing.assert_close(method.predictor(pred_in), ref.predictor(pred_in))


# ----------------------------------------------------------------- command and evaluation
@pytest.mark.e2e
def test_import_command_then_evaluate(tree, tmp_path):
    """The console entry points: an SIE model.pth in, equissl-evaluate's results out."""
    source = save_reference(sie_reference([16, 12, 8]), tmp_path / "model.pth")
    out = tmp_path / "imported" / "sie.ckpt"
    bin_dir = Path(sys.executable).parent

    def run(app: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(bin_dir / f"equissl-{app}"), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )

    bad = run(
        "import", "sie", str(tmp_path / "absent.pth"), str(out), f"data.root={tree}", *SIE[1:]
    )
    assert bad.returncode == 1 and "absent.pth" in bad.stderr
    assert run("import", "sie", str(source)).returncode == 2
    res = run("import", "sie", str(source), str(out), f"data.root={tree}", *SIE[1:])
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"checkpoint: {out}" in res.stdout
    ev = run(
        "evaluate",
        f"checkpoint={out}",
        "probe=[classification,rotation]",
        "eval.probes.classification.epochs=2",
        "eval.probes.rotation.epochs=2",
        "eval.num_workers=0",
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    results = next(out.parent.glob("eval_*/results.json"))
    metrics = json.loads(results.read_text())["metrics"]
    for part in ("full", "inv", "equi"):
        assert f"{part}/classification/top1" in metrics
        assert f"{part}/rotation/r2_global" in metrics
