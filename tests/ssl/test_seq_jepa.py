"""seq-JEPA (equissl/ssl/seq_jepa.py): the published architecture and recipe, the loss
against 1 − cos, the actions against scipy, the EMA target (schedule, resume), two gloo
ranks against one process, and runs through the real Trainer and the evaluation stage.

Reference: github.com/hafezgh/seq-jepa (src/models.py ``SeqJEPA_Transforms``,
src/datasets.py, src/engine.py, scripts/script_transformed_views.sh).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy.spatial.transform import Rotation
from torch import nn

from equissl.checkpointing import load_checkpoint
from equissl.datasets.base import DataSpec
from equissl.eval.evaluate import evaluate_checkpoint
from equissl.eval.probes.sequences import aggregate, random_orders
from equissl.models.ema import momentum_tau
from equissl.models.sequence import sequence_tokens
from equissl.ssl.loading import build_method
from equissl.ssl.optim import warmup_constant, warmup_cosine
from equissl.ssl.seq_jepa import SeqJEPA, seq_jepa_terms
from equissl.training.datamodule import PretrainDataModule
from equissl.training.pretrain import pretrain, resolve_batch
from equissl.training.signals import TrainingStopped
from tests.conftest import TOY, compose_pretrain, write_iebench_tree
from tests.ssl.test_base import logged_lrs

#: seq-JEPA on the two-layer CNN (16-d encoder), narrow heads: token width 16 + 8 = 24
SMALL = [
    *TOY[2:],
    "method=seq_jepa",
    "method.action_embed_dim=8",
    "method.predictor_hidden=32",
    "method.layers=2",
]
WORLD = 2


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_iebench_tree(tmp_path_factory.mktemp("seq_jepa") / "3DIEBench")


@pytest.fixture(scope="module")
def tree_t(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_iebench_tree(tmp_path_factory.mktemp("seq_jepa_t") / "3DIEBench-T", latent_dim=10)


def config_of(tree: Path, *overrides: str) -> dict:
    return compose_pretrain([f"data.root={tree}", *SMALL, *overrides])


def build(tree: Path, *overrides: str) -> tuple[SeqJEPA, PretrainDataModule]:
    config = config_of(tree, *overrides)
    dm = PretrainDataModule(config["data"], config["method"]["num_views"])
    return build_method(config, dm.spec), dm


def batch_of(dm: PretrainDataModule, n: int) -> dict[str, torch.Tensor]:
    return torch.utils.data.default_collate([dm.dataset[i] for i in range(n)])


# ------------------------------------------------------------------------ architecture
def test_published_architecture_on_resnet18(tree):
    method, dm = build(tree, "backbone=resnet18", "method.action_embed_dim=128")
    method_default = compose_pretrain([f"data.root={tree}", "method=seq_jepa"])["method"]
    assert {k: method_default[k] for k in ("num_views", "heads", "layers", "mlp_ratio")} == {
        "num_views": 4,  # --seq-len 3 + 1 target
        "heads": 4,
        "layers": 3,
        "mlp_ratio": 4,
    }
    assert (method_default["action_embed_dim"], method_default["predictor_hidden"]) == (128, 1024)
    assert method_default["weights"] == {"prediction": 1.0}
    method, _ = build(
        tree, "backbone=resnet18", "method.action_embed_dim=128", "method.predictor_hidden=1024"
    )
    assert method.repr_dim == 512 and method.agg_dim == 640 and method.train_views == 3
    assert method.action_embedding.linear.weight.shape == (128, 4)  # quaternion -> 128
    assert method.aggregator.aggregate_token.shape == (1, 1, 640)
    linear1, bn, relu, linear2 = method.predictor.layers
    assert (linear1.in_features, linear1.out_features, linear1.bias) == (768, 1024, None)
    assert isinstance(bn, nn.BatchNorm1d) and bn.affine and isinstance(relu, nn.ReLU)
    assert (linear2.in_features, linear2.out_features) == (1024, 512)
    assert linear2.bias is not None  # the reference's last Linear keeps its bias
    # the EMA target: a frozen copy of the encoder, and the only momentum pair
    assert [(a, b) for a, b in method.momentum_pairs()] == [
        (method.backbone, method.target_backbone)
    ]
    assert all(not p.requires_grad for p in method.target_backbone.parameters())
    assert method.part_dims == {"full": 512, "agg": 640}
    assert method.sequence_representation


@pytest.mark.parametrize(
    "data, action, dim", [("3diebench", "[rotation]", 4), ("3diebench", "[rotation,color]", 6)]
)
def test_action_width_follows_the_action(tree, data, action, dim):
    method, _ = build(tree, f"method.action={action}")
    assert method.action.dim == dim and method.action_embedding.linear.in_features == dim


def test_rotation_translation_on_3diebench_t(tree_t):
    method, _ = build(tree_t, "data=3diebench_t", "method.action=[rotation,translation]")
    assert method.action.dim == 7


def test_too_few_views_are_refused(tree):
    with pytest.raises(ValueError, match="num_views"):
        build(tree, "method.num_views=1")


# ------------------------------------------------------------------------------- loss
def test_loss_is_one_minus_mean_cosine():
    pred = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    terms = seq_jepa_terms(pred, target)
    assert set(terms) == {"prediction"}
    # cosines 0, 1, -1: 1 - (0 + 1 - 1) / 3 = 1
    torch.testing.assert_close(terms["prediction"], torch.tensor(1.0))
    pred2 = torch.tensor([[3.0, 4.0]])
    target2 = torch.tensor([[4.0, 3.0]])
    torch.testing.assert_close(seq_jepa_terms(pred2, target2)["prediction"], torch.tensor(1 - 0.96))
    # scale-free, and no gradient reaches the target
    torch.testing.assert_close(
        seq_jepa_terms(5 * pred2, 0.1 * target2)["prediction"], torch.tensor(1 - 0.96)
    )
    target_leaf = target.clone().requires_grad_()
    seq_jepa_terms(pred, target_leaf)["prediction"].backward()
    assert target_leaf.grad is None and pred.grad is not None


# ---------------------------------------------------------------------------- actions
def test_consecutive_actions_are_the_relative_rotations_of_scipy(tree):
    method, dm = build(tree, "method.action=[rotation,color]")
    batch = batch_of(dm, 3)
    lat = batch["latents"].double()
    actions = method.consecutive_actions(batch["latents"])
    assert actions.shape == (3, 3, 6)
    for b in range(3):
        for i in range(3):
            ra = Rotation.from_euler("xyz", lat[b, i, :3].numpy())
            rb = Rotation.from_euler("xyz", lat[b, i + 1, :3].numpy())
            q = torch.from_numpy((ra.inv() * rb).as_quat()).float()
            torch.testing.assert_close(actions[b, i, :4], q, atol=1e-5, rtol=0)
            # (Δ floor hue, Δ spot hue), plain differences as datasets.py's relative_color
            hue = lat[b, i + 1, [3, 6]] - lat[b, i, [3, 6]]
            torch.testing.assert_close(actions[b, i, 4:], hue.float(), atol=1e-5, rtol=0)


def test_rotation_translation_action_is_quaternion_then_world_displacement(tree_t):
    method, dm = build(tree_t, "data=3diebench_t", "method.action=[rotation,translation]")
    batch = batch_of(dm, 2)
    actions = method.consecutive_actions(batch["latents"])
    lat = batch["latents"]
    torch.testing.assert_close(actions[..., 4:], lat[:, 1:, 7:10] - lat[:, :-1, 7:10])


# ------------------------------------------------------------------ forward wiring
def manual_loss(method: SeqJEPA, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The forward pass written out: 3 observed views encoded in one call (one BatchNorm
    batch of B·3 views, as the reference's reshape), target = view 4 via the target encoder,
    predictor on [z_AGG ‖ emb(a_3)] (a_3: view 3 -> view 4)."""
    views, lat = batch["views"], batch["latents"]
    b = views.shape[0]
    z = method.backbone(views[:, :3].reshape(b * 3, *views.shape[2:])).view(b, 3, -1)
    a = torch.stack(
        [method.action.relative(lat[:, i], lat[:, i + 1]) for i in range(3)], dim=1
    )  # [B, 3, A]
    emb = method.action_embedding(a)
    tokens = torch.cat((z, emb * torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1)), dim=-1)
    agg = method.aggregator(tokens)
    pred = method.predictor(torch.cat((agg, method.action_embedding(a[:, 2])), dim=1))
    target = method.target_backbone(views[:, 3])
    return 1 - nn.functional.cosine_similarity(pred, target, dim=1).mean()


def test_compute_loss_predicts_the_last_view_from_the_others(tree):
    torch.manual_seed(0)
    method, dm = build(tree, "method.dropout=0")
    batch = batch_of(dm, 4)
    with torch.no_grad():  # a target that differs from the online encoder
        for p in method.target_backbone.parameters():
            p.add_(0.1 * torch.randn_like(p))
    for mode in (True, False):  # batch statistics, then running statistics
        method.train(mode)
        out = method.compute_loss(batch)
        torch.testing.assert_close(out.terms["prediction"], manual_loss(method, batch))
    assert out.embedding.shape == (4, 16)  # z of the first view, for the online probe


def test_representations(tree):
    torch.manual_seed(0)
    method, dm = build(tree)
    method.eval()
    batch = batch_of(dm, 3)
    views, lat = batch["views"], batch["latents"]
    with torch.no_grad():
        single = method.represent(views[:, 0])
        assert single["full"].shape == (3, 16) and single["agg"].shape == (3, 24)
        torch.testing.assert_close(single["full"], method.backbone(views[:, 0]))
        one = method.represent_sequence(views[:, :1], lat[:, :1])
        torch.testing.assert_close(one["agg"], single["agg"])  # agg = agg@M1 of that view
        seq = method.represent_sequence(views, lat)["agg"]  # M = 4 views, 3 actions
        z = method.encode(views)
        between = method.action_embedding(method.consecutive_actions(lat))
        torch.testing.assert_close(seq, method.aggregator(sequence_tokens(z, between)))
        assert not torch.allclose(seq, single["agg"])
        # the aggregate from per-view encodings (the feature cache's "full"), with the
        # views in any order: what the classification probe's fresh sequences use
        order = torch.tensor([2, 0, 3])
        cached = torch.stack([method.represent(views[:, j])["full"] for j in range(4)], 1)
        fresh = aggregate(
            method, cached, lat, torch.arange(3), order.expand(3, -1), "agg", torch.device("cpu")
        )
        want = method.represent_sequence(views[:, order], lat[:, order])["agg"]
        torch.testing.assert_close(fresh, want, atol=1e-5, rtol=1e-5)
    orders = random_orders(200, 5, 3, torch.Generator().manual_seed(0))
    assert orders.shape == (200, 3) and all(len(set(o.tolist())) == 3 for o in orders)
    assert len({tuple(o.tolist()) for o in orders}) > 30  # fresh, not one fixed sequence


def test_online_probe_reads_the_aggregate_as_the_reference(tree):
    """``online_probe_input: aggregate`` (the recipes): the online classifier is trained on
    detached z_AGG of each training sequence; ``view`` (earlier checkpoints) on z of view 1."""
    torch.manual_seed(0)
    method, dm = build(tree, "method.online_probe_input=aggregate", "method.online_probe=true")
    assert method.online_classifier.in_features == 24  # 16 + the action embedding's 8
    batch = batch_of(dm, 4)
    views, lat = batch["views"], batch["latents"]
    with torch.no_grad():  # eval(): no dropout, running statistics, so both paths agree
        out = method.eval().compute_loss(batch)
        agg = method.represent_sequence(views[:, :3], lat[:, :3])["agg"]
    torch.testing.assert_close(out.online_input, agg, atol=1e-5, rtol=1e-5)
    plain, _ = build(tree, "method.online_probe=true")
    assert plain.online_classifier.in_features == 16
    assert plain.compute_loss(batch).online_input is None
    with pytest.raises(ValueError, match="online_probe_input='agg'"):
        build(tree, "method.online_probe_input=agg")
    assert recipe("seq_jepa_3diebench")["method"]["online_probe_input"] == "aggregate"


# ------------------------------------------------------------------------ EMA target
class TargetRecorder(pl.Callback):
    """The first online and target encoder weights at the start and after every optimizer
    step (the EMA update runs in the module's optimizer_step, before this hook)."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def record(self, trainer: pl.Trainer, module: SeqJEPA) -> None:
        online = next(module.backbone.parameters()).detach().clone()
        target = next(module.target_backbone.parameters()).detach().clone()
        self.records.append({"step": trainer.global_step, "online": online, "target": target})

    def on_train_start(self, trainer, module) -> None:
        self.record(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.record(trainer, module)


def test_ema_target_follows_the_encoder_on_a_cosine_from_0996_to_1(tree):
    method, dm = build(tree)
    recorder = TargetRecorder()
    trainer = pl.Trainer(
        max_steps=5,
        accelerator="cpu",
        logger=False,
        callbacks=[recorder],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(method, datamodule=dm)
    optimised = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in method.target_backbone.parameters()}
    assert [r["step"] for r in recorder.records] == [0, 1, 2, 3, 4, 5]
    torch.testing.assert_close(recorder.records[0]["target"], recorder.records[0]["online"])
    for before, after in itertools.pairwise(recorder.records):
        s = after["step"]
        # lightly's cosine_schedule: 1 − (1 − 0.996)·(cos(π s / (T − 1)) + 1) / 2, T = 5
        tau = 1 - 0.004 * (math.cos(math.pi * s / 4) + 1) / 2 if s < 4 else 1.0
        assert momentum_tau(s, 5, 0.996, 1.0) == pytest.approx(tau)
        expected = tau * before["target"] + (1 - tau) * after["online"]
        torch.testing.assert_close(after["target"], expected)
    assert momentum_tau(0, 5, 0.996, 1.0) == pytest.approx(0.996)
    assert not torch.equal(recorder.records[-1]["target"], recorder.records[-1]["online"])


def test_target_encoder_survives_a_stop_and_resume(tree, tmp_path, monkeypatch):
    def cfg() -> dict:
        return config_of(
            tree, "trainer.max_steps=5", "checkpoint.every_n_steps=0", "logger.name=none"
        )

    reference = load_checkpoint(pretrain(cfg(), tmp_path / "reference"))

    original = SeqJEPA.on_train_batch_end

    def stop_after_step_2(self, outputs, batch, batch_idx):
        original(self, outputs, batch, batch_idx)
        if self.global_step == 2:  # as SLURM's SIGTERM: checkpoint at the next boundary
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(SeqJEPA, "on_train_batch_end", stop_after_step_2)
    with pytest.raises(TrainingStopped):
        pretrain(cfg(), tmp_path / "run")
    stopped = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert 2 <= stopped["global_step"] < 5
    monkeypatch.setattr(SeqJEPA, "on_train_batch_end", original)
    resumed = load_checkpoint(pretrain(cfg(), tmp_path / "run"))
    assert resumed["global_step"] == reference["global_step"] == 5
    targets = [k for k in reference["state_dict"] if k.startswith("target_backbone.")]
    assert targets and set(reference["state_dict"]) == set(resumed["state_dict"])
    for key, value in reference["state_dict"].items():  # bitwise, target encoder included
        assert torch.equal(resumed["state_dict"][key], value), key
    assert not torch.equal(
        reference["state_dict"][targets[0]],
        reference["state_dict"][targets[0].replace("target_backbone.", "backbone.", 1)],
    )


# ---------------------------------------------------------------------------- schedule
def test_schedule_factors_warm_up_from_the_start_lr():
    cos = warmup_cosine(10, 4, start=0.025, floor=0.025)
    assert [cos(s) for s in range(4)] == pytest.approx(
        [0.025 + 0.975 * k / 4 for k in (1, 2, 3, 4)]
    )
    assert cos(4) == pytest.approx(1.0)
    assert cos(7) == pytest.approx(0.025 + 0.975 * 0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert cos(10) == pytest.approx(0.025)  # the floor: min_lr / lr
    const = warmup_constant(10, 4, start=0.025)
    assert [const(s) for s in range(4)] == [cos(s) for s in range(4)]
    assert [const(s) for s in range(4, 12)] == [1.0] * 8
    # without start and floor: the earlier warmup_cosine, unchanged
    assert warmup_cosine(6, 2)(0) == 0.5 and warmup_cosine(6, 2)(6) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "scheduler, expected",
    [
        ("warmup_constant", [5.5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3]),
        (
            "warmup_cosine",
            [5.5e-4, 1e-3]
            + [1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)],
        ),
    ],
)
def test_logged_lr_of_the_schedules(tree, tmp_path, scheduler, expected):
    config = config_of(
        tree,
        "logger.name=csv",
        "trainer.log_every_n_steps=1",
        "trainer.max_steps=6",
        "trainer.max_epochs=-1",
        "method.optim.name=adam",
        "method.optim.lr=1e-3",
        f"method.optim.scheduler={scheduler}",
        "method.optim.warmup_steps=2",
        "method.optim.warmup_start_lr=1e-4",
        "method.optim.min_lr=1e-4",
        "method.optim.exclude_bias_norm=false",
    )
    pretrain(config, tmp_path / "run")
    assert logged_lrs(tmp_path / "run") == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ two gloo ranks
def gloo_worker(rank: int, tmp: str) -> None:
    import tests.toy_parts  # noqa: F401  (registers tiny_cnn in the spawned process)

    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=WORLD)
    try:
        saved = torch.load(Path(tmp) / "setup.pt", weights_only=False)
        views, lat = (saved["batch"][k].chunk(WORLD)[rank] for k in ("views", "latents"))
        out = {}
        for train in (False, True):
            method = build_method(saved["config"], DataSpec.from_dict(saved["spec"]))
            method.load_state_dict(saved["state"])
            method.train(train)
            ddp = nn.parallel.DistributedDataParallel(LossOf(method))  # alive for backward
            loss = ddp(views, lat)
            loss.backward()
            grads = {n: p.grad for n, p in method.named_parameters() if p.requires_grad}
            out[train] = {"loss": loss.detach(), "grads": grads}
        torch.save(out, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


class LossOf(nn.Module):
    """The method's loss as a module's forward, for DistributedDataParallel."""

    def __init__(self, method: SeqJEPA) -> None:
        super().__init__()
        self.method = method

    def forward(self, views: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        batch = {"views": views, "latents": latents}
        return self.method.compute_loss(batch).terms["prediction"]


def single_process(saved: dict, train: bool, parts: int) -> tuple[torch.Tensor, dict]:
    """Loss and gradient of one process, the batch cut into ``parts`` chunks (per-chunk
    BatchNorm statistics) whose losses are averaged."""
    method = build_method(saved["config"], DataSpec.from_dict(saved["spec"]))
    method.load_state_dict(saved["state"])
    method.train(train)
    chunks = zip(*(saved["batch"][k].chunk(parts) for k in ("views", "latents")), strict=True)
    loss = sum(LossOf(method)(v, lat) for v, lat in chunks) / parts
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in method.named_parameters() if p.requires_grad}


@pytest.mark.e2e
def test_two_gloo_ranks_match_one_process(tree, tmp_path):
    # Nothing is gathered: the loss is a batch mean of per-object terms, so DDP's averaged
    # gradient is the whole batch's wherever samples do not interact. The only interaction
    # is BatchNorm (encoder, action embedding, predictor). With running statistics (eval
    # mode) it is per sample: 2 ranks = 1 process on the whole batch. With batch statistics
    # each rank normalises its own half (SyncBatchNorm, trainer.sync_batchnorm=true, needs
    # GPUs; the reference trains on one): 2 ranks = 1 process averaging the two halves.
    torch.manual_seed(0)
    method, dm = build(tree, "method.dropout=0", "method.online_probe=false")
    with torch.no_grad():  # running statistics that are not the identity
        for module in method.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    saved = {
        "config": method.config,
        "spec": method.spec.to_dict(),
        "state": method.state_dict(),
        "batch": batch_of(dm, 8),
    }
    torch.save(saved, tmp_path / "setup.pt")
    mp.spawn(gloo_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for train in (False, True):
        loss, grads = single_process(saved, train, parts=WORLD if train else 1)
        torch.testing.assert_close(sum(r[train]["loss"] for r in ranks) / WORLD, loss)
        for name, grad in grads.items():
            for r in ranks:  # DDP all-reduces: every rank holds the averaged gradient
                got = r[train]["grads"][name]
                torch.testing.assert_close(got, grad, msg=name, atol=1e-6, rtol=1e-4)
    # batch statistics over the whole batch would differ from the per-rank ones
    whole, _ = single_process(saved, True, parts=1)
    assert not torch.allclose(whole, loss)


# ------------------------------------------------------------ real Trainer + evaluation
@pytest.mark.parametrize(
    "data, action, dim",
    [
        ("3diebench", "[rotation]", 4),
        ("3diebench", "[rotation,color]", 6),
        ("3diebench_t", "[rotation,translation]", 7),
    ],
)
def test_pretrain_and_evaluate(tree, tree_t, tmp_path, data, action, dim):
    root = tree_t if data == "3diebench_t" else tree
    probes = ["classification", "rotation", *(["translation"] if data == "3diebench_t" else [])]
    config = config_of(
        root,
        f"data={data}",
        f"method.action={action}",
        "trainer.max_steps=2",
        "eval.num_workers=0",
        "method.online_probe_input=aggregate",
        f"probe=[{','.join(probes)}]",
        *(f"eval.probes.{p}.epochs=1" for p in probes),
    )
    ckpt = pretrain(config, tmp_path / "run")
    meta = load_checkpoint(ckpt)["equissl"]
    assert meta["config"]["method"]["impl"] == "seq_jepa" and meta["action"]["dim"] == dim
    assert meta["parts"] == {"full": 16, "agg": 24} and meta["sequence_representation"]
    evaluate_checkpoint(ckpt, config["eval"], tmp_path / "eval", progress=False)
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    metrics, card = results["metrics"], results["protocols"]["classification"]
    assert "a fresh random sequence of M views per training object per epoch" in card["samples"]
    assert any("fresh sequences every epoch" in d for d in card["deviations"])
    # the test tree has 5 views per object: M_val = 1, 3, 5
    for m in (1, 3, 5):
        assert f"agg@M{m}/classification/top1" in metrics
        # the online classifier, trained on aggregates during pretraining, scored as well
        assert 0 <= metrics[f"agg@M{m}/classification/online_top1"] <= 1
    assert "full/classification/online_top1" not in metrics
    assert {"full/classification/top1", "full/rotation/r2_global"} <= set(metrics)
    if data == "3diebench_t":
        assert "full/translation/r2_global" in metrics


# ----------------------------------------------------------------------------- recipes
#: what main_transformed_views.py runs (the default since the evidence in docs/seq_jepa.md)
PAPER_OPTIM = {
    "name": "adam",
    "lr": 4e-4,
    "weight_decay": 0.0,
    "exclude_bias_norm": False,
    "scheduler": "warmup_constant",
    "warmup_epochs": 20.0,
    "warmup_steps": 0,
    "warmup_start_lr": 1e-5,
    "min_lr": 0.0,
    "lr_scaling": "none",
}


def recipe(name: str, *extra: str) -> dict:
    return compose_pretrain([f"experiment={name}", "data.root=/data/3DIEBench", *extra])


@pytest.mark.parametrize(
    "name, data, action, views",
    [
        ("seq_jepa_3diebench", "3diebench", ["rotation"], 4),
        ("seq_jepa_rotcolor_3diebench", "3diebench", ["rotation", "color"], 5),
        ("seq_jepa_3diebench_t", "3diebench_t", ["rotation", "translation"], 4),
    ],
)
def test_paper_recipe_has_the_published_values(name, data, action, views):
    cfg = recipe(name)
    m, d, t = cfg["method"], cfg["data"], cfg["trainer"]
    assert (m["name"], m["action"], m["num_views"]) == ("seq_jepa", action, views)
    assert (m["action_embed_dim"], m["heads"], m["layers"], m["mlp_ratio"]) == (128, 4, 3, 4)
    assert (m["predictor_hidden"], m["dropout"], m["weights"]) == (1024, 0.1, {"prediction": 1})
    assert m["momentum"] == {"base_tau": 0.996, "final_tau": 1.0}
    assert {k: m["optim"][k] for k in PAPER_OPTIM} == PAPER_OPTIM
    assert (d["name"], d["image_size"], d["global_batch_size"]) == (data, 128, 512)
    assert (t["max_epochs"], t["max_steps"], t["precision"]) == (1000, -1, "32-true")
    assert (t["accelerator"], t["devices"], t["sync_batchnorm"]) == ("gpu", 1, False)
    assert cfg["backbone"]["impl"] == "timm" and cfg["backbone"]["name"] == "resnet18"
    assert cfg["backbone"]["zero_init_residual"] and not cfg["backbone"]["cifar_stem"]
    assert cfg["eval"]["sequence_views"] == [1, 3, 5]
    assert resolve_batch(dict(d), 1, t) == 512


def test_code_recipe_is_the_default_under_its_old_name():
    cfg, paper = recipe("seq_jepa_3diebench_code"), recipe("seq_jepa_3diebench")
    assert cfg["method"]["name"] == "seq_jepa_code"
    assert {**cfg, "method": {**cfg["method"], "name": "seq_jepa"}} == paper


def test_adamw_recipe_is_the_flags_optimiser():
    cfg, paper = recipe("seq_jepa_3diebench_adamw"), recipe("seq_jepa_3diebench")
    o = cfg["method"]["optim"]
    assert (o["name"], o["lr"], o["weight_decay"], o["exclude_bias_norm"]) == (
        "adamw",
        4e-4,
        1e-3,
        True,
    )
    assert (o["scheduler"], o["warmup_epochs"], o["warmup_start_lr"], o["min_lr"]) == (
        "warmup_cosine",
        20,
        1e-5,
        1e-5,
    )
    rest = set(cfg["method"]) - {"optim"}
    assert {k: cfg["method"][k] for k in rest} == {k: paper["method"][k] for k in rest}
    assert (cfg["data"], cfg["trainer"]) == (paper["data"], paper["trainer"])


def test_cpu_version_keeps_the_method_and_scales_down_the_rest():
    cfg, ref = compose_pretrain(["experiment=cpu/seq_jepa_3diebench"]), recipe("seq_jepa_3diebench")
    assert cfg["method"] == ref["method"]
    d, t = cfg["data"], cfg["trainer"]
    assert (d["root"], d["image_size"], d["global_batch_size"]) == ("data/quickstart", 64, 64)
    assert d["generate"]["views"] >= cfg["method"]["num_views"] and cfg["evaluate_after"]
    assert (t["accelerator"], t["devices"], t["precision"]) == ("cpu", 1, "32-true")
    assert (t["max_steps"], t["max_epochs"]) == (300, -1)


def test_cpu_version_runs_a_step_with_resnet18(tree, tmp_path):
    cfg = compose_pretrain(
        [
            "experiment=cpu/seq_jepa_3diebench",
            f"data.root={tree}",
            "data.generate=null",
            "data.image_size=32",
            "data.global_batch_size=4",
            "data.num_workers=0",
            "trainer.max_steps=1",
            "trainer.enable_progress_bar=false",
            "logger.name=none",
            "evaluate_after=false",
        ]
    )
    state = load_checkpoint(pretrain(cfg, tmp_path / "run"))
    assert state["global_step"] == 1
    assert state["equissl"]["parts"] == {"full": 512, "agg": 640}
