"""The SIE paper's recipes (configs/experiment/<method>_3diebench.yaml) and their CPU versions
(configs/experiment/cpu/): published values, and that they run.

The baselines' weights are those of SIE src/models.py with the README command's
coefficients (--sim/std-coeff 10, --cov-coeff 1, --equi-factor 0.45, --ec-weight 1).
"""

import pytest

from equissl.checkpointing import load_checkpoint
from equissl.training.pretrain import pretrain, resolve_batch
from tests.conftest import compose_pretrain

SIE_WEIGHTS = {  # README: --sim-coeff 10 --equi-factor 0.45 --std-coeff 10 --cov-coeff 1
    "invariance": 10.0,
    "equivariance": 4.5,
    "variance": 10.0,
    "pred_variance": 10.0,
    "covariance": 1.0,
}
PUBLISHED = {
    "sie": {"weights": SIE_WEIGHTS, "inv_dim": 256, "projector": [1024, 1024, 1024]},
    "sie_novar": {"weights": {**SIE_WEIGHTS, "pred_variance": 0.0}, "inv_dim": 256},
    "sie_onlyequi": {
        # models.SIEOnlyEqui weights its equivariance MSE by --sim-coeff alone
        "weights": {**SIE_WEIGHTS, "invariance": 0.0, "equivariance": 10.0},
        "inv_dim": 0,
        "projector": [2048, 2048, 2048],
    },
    "sie_rotcolor": {"weights": SIE_WEIGHTS, "action": ["rotation", "color"]},
    "vicreg": {
        "weights": {"invariance": 10.0, "variance": 10.0, "covariance": 1.0},
        "projector": [2048, 2048, 2048],
    },
    "simclr": {"weights": {"infonce": 1.0}, "temperature": 0.1, "projector": [2048] * 3},
    "vicreg_partinv": {
        "weights": {"invariance": 10.0, "variance": 10.0, "covariance": 1.0},
        "projector": [2048] * 3,
    },
    "simclr_augself": {"weights": {"infonce": 1.0, "action": 1.0}, "temperature": 0.1},
    "equimod_vicreg": {
        "weights": {
            "invariance": 10.0,
            "variance": 10.0,
            "covariance": 1.0,
            # EquiMod's own lambda = 1 (its authors' released scripts) x (10, 10, 1)
            "equivariance": 10.0,
            "equi_variance": 10.0,
            "equi_covariance": 1.0,
        },
        "projector": [2048] * 3,
    },  # fmt: skip
    "equimod_simclr": {"weights": {"infonce": 1.0, "equi_infonce": 1.0}, "temperature": 0.1},
    "sen": {"weights": {"equi_infonce": 1.0}, "temperature": 0.1, "projector": [2048] * 3},
}


def paper(method: str, *extra: str) -> dict:
    return compose_pretrain([f"experiment={method}_3diebench", "data.root=/data/3DIEBench", *extra])


@pytest.mark.parametrize("method", sorted(PUBLISHED))
def test_paper_recipe_has_the_published_values(method):
    cfg = paper(method)
    assert cfg["method"]["name"] == method
    for key, value in PUBLISHED[method].items():
        assert cfg["method"][key] == value, key
    assert cfg["data"]["name"] == "3diebench" and cfg["data"]["image_size"] == 256
    assert cfg["data"]["global_batch_size"] == 1024
    o = cfg["method"]["optim"]
    assert (o["name"], o["lr"], o["weight_decay"]) == ("adam", 1e-3, 1e-6)
    assert (o["scheduler"], o["lr_scaling"], o["exclude_bias_norm"]) == ("none", "none", False)
    t = cfg["trainer"]
    assert (t["max_epochs"], t["max_steps"]) == (2000, -1)
    assert t["precision"] == "16-mixed"  # fp16 autocast + GradScaler, as main.py's AMP
    assert (t["strategy"], t["sync_batchnorm"], t["accelerator"]) == ("ddp", True, "gpu")
    assert cfg["backbone"] == {
        "impl": "resnet_sie",
        "layers": [2, 2, 2, 2],
        "zero_init_residual": True,
    }
    # the README's 8 GPUs: 128 per device, as main.py's batch_size // world_size
    assert resolve_batch(dict(cfg["data"]), 8, t) == 128
    assert resolve_batch(dict(cfg["data"]), 4 * 2, {**t, "devices": 4, "num_nodes": 2}) == 128
    assert resolve_batch(dict(cfg["data"]), 4, t) == 256


@pytest.mark.parametrize("method", sorted(PUBLISHED))
def test_cpu_version_keeps_the_method_and_scales_down_the_rest(method):
    cfg = compose_pretrain([f"experiment=cpu/{method}_3diebench"])
    ref = paper(method)
    small_batch_projector = method in ("sie", "sie_novar", "sie_rotcolor")
    for key in set(ref["method"]) - ({"projector"} if small_batch_projector else set()):
        assert cfg["method"][key] == ref["method"][key], key
    if small_batch_projector:  # experiment=quickstart's documented small-batch deviation
        assert cfg["method"]["projector"] == [1024, 1024, 128]
    d, t = cfg["data"], cfg["trainer"]
    assert (d["root"], d["image_size"], d["global_batch_size"]) == ("data/quickstart", 64, 64)
    assert d["generate"]["resolution"] == 64 and cfg["evaluate_after"] is True
    assert (t["accelerator"], t["devices"], t["strategy"]) == ("cpu", 1, "auto")
    assert (t["precision"], t["sync_batchnorm"]) == ("32-true", False)
    assert (t["max_steps"], t["max_epochs"]) == (300, -1)
    assert cfg["backbone"]["impl"] == "timm" and cfg["backbone"]["name"] == "resnet18"


def test_paper_recipe_trains_a_step_on_cpu_with_the_sie_resnet(iebench_tree, tmp_path):
    # the recipe shrunk only in scale (one CPU process, fp32, 32 px, 4 objects per batch)
    cfg = paper(
        "sie",
        f"data.root={iebench_tree}",
        "data.image_size=32",
        "data.global_batch_size=4",
        "data.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.strategy=auto",
        "trainer.precision=32-true",
        "trainer.sync_batchnorm=false",
        "trainer.max_steps=1",
        "trainer.enable_progress_bar=false",
        "logger.name=none",
    )
    state = load_checkpoint(pretrain(cfg, tmp_path / "run"))
    meta = state["equissl"]
    assert state["global_step"] == 1 and meta["parts"] == {"full": 512, "equi": 256, "inv": 256}
    assert meta["config"]["backbone"]["impl"] == "resnet_sie"
    assert meta["config"]["data"]["batch_size"] == 4
    assert "backbone.trunk.layer1.0.downsample.0.weight" in state["state_dict"]


def test_cpu_version_runs(iebench_tree, tmp_path):
    cfg = compose_pretrain(
        [
            "experiment=cpu/vicreg_3diebench",
            f"data.root={iebench_tree}",
            "data.generate=null",
            "data.image_size=32",
            "data.global_batch_size=4",
            "data.num_workers=0",
            "trainer.max_steps=1",
            "trainer.enable_progress_bar=false",
            "logger.name=none",
        ]
    )
    state = load_checkpoint(pretrain(cfg, tmp_path / "run"))
    assert state["global_step"] == 1 and state["equissl"]["config"]["data"]["batch_size"] == 4


# ----------------------------------------------------------------------------- EquiCaps
EQUICAPS = {  # experiment -> (method, data, pose size, frame, action)
    "equicaps_3x3_3diebench": ("equicaps_3x3", "3diebench", 3, "object", "rotation_matrix"),
    "equicaps_3x3_3diebench_t": ("equicaps_3x3", "3diebench_t", 3, "object", "rotation_matrix"),
    "equicaps_4x4_3diebench_t": ("equicaps_4x4", "3diebench_t", 4, "object", "transform_object"),
    "equicaps_4x4_base_3diebench_t": ("equicaps_4x4", "3diebench_t", 4, "base", "transform_base"),
}
EQUICAPS_WEIGHTS = {  # README: --sim-coeff 0.1 --equi-factor 5 --std-coeff 10 --cov-coeff 1
    "invariance": 0.1,
    "equivariance": 5.0,
    "memax": 1.0,
    "variance": 10.0,
    "covariance": 1.0,
}


@pytest.mark.parametrize("experiment", sorted(EQUICAPS))
def test_equicaps_recipes_have_the_published_values(experiment):
    method, data, pose, frame, _ = EQUICAPS[experiment]
    cfg = compose_pretrain([f"experiment={experiment}", "data.root=/data/x"])
    m = cfg["method"]
    assert (m["name"], m["impl"], m["pose_size"], m["frame"]) == (method, "equicaps", pose, frame)
    assert m["weights"] == EQUICAPS_WEIGHTS and m["num_capsules"] == 32
    assert m["activation_checkpoint"] is True and m["action"] is None
    d = cfg["data"]
    assert (d["name"], d["image_size"], d["global_batch_size"]) == (data, 256, 256)
    assert d["translation"] is (data == "3diebench_t")
    o = m["optim"]
    assert (o["name"], o["lr"], o["weight_decay"]) == ("adam", 1e-3, 1e-6)
    assert (o["scheduler"], o["lr_scaling"], o["exclude_bias_norm"]) == ("none", "none", False)
    t = cfg["trainer"]
    assert (t["max_epochs"], t["max_steps"], t["precision"]) == (2000, -1, "16-mixed")
    assert (t["strategy"], t["sync_batchnorm"], t["accelerator"]) == ("ddp", True, "gpu")
    assert cfg["backbone"]["impl"] == "resnet_sie"
    assert resolve_batch(dict(d), 8, t) == 32 and resolve_batch(dict(d), 4, t) == 64


@pytest.mark.parametrize(
    "cpu, paper",
    [
        ("equicaps_3x3_3diebench", "equicaps_3x3_3diebench"),
        ("equicaps_3x3_3diebench_t", "equicaps_3x3_3diebench_t"),
        ("equicaps_4x4_3diebench_t", "equicaps_4x4_3diebench_t"),
    ],
)
def test_equicaps_cpu_versions(cpu, paper):
    cfg = compose_pretrain([f"experiment=cpu/{cpu}"])
    ref = compose_pretrain([f"experiment={paper}", "data.root=/data/x"])
    assert cfg["method"] == ref["method"]
    d, t = cfg["data"], cfg["trainer"]
    root = "data/quickstart_t" if paper.endswith("_t") else "data/quickstart"
    assert (d["name"], d["root"], d["image_size"], d["global_batch_size"]) == (
        ref["data"]["name"],
        root,
        64,
        64,
    )
    assert (t["accelerator"], t["precision"], t["max_steps"]) == ("cpu", "32-true", 300)


def test_equicaps_cpu_version_runs(iebench_t_tree, tmp_path):
    cfg = compose_pretrain(
        [
            "experiment=cpu/equicaps_4x4_3diebench_t",
            f"data.root={iebench_t_tree}",
            "data.generate=null",
            "data.image_size=32",
            "data.global_batch_size=4",
            "data.num_workers=0",
            "trainer.max_steps=1",
            "trainer.enable_progress_bar=false",
            "logger.name=none",
        ]
    )
    state = load_checkpoint(pretrain(cfg, tmp_path / "run"))
    assert state["global_step"] == 1 and state["equissl"]["action"]["dim"] == 16


def test_quickstart_deviates_from_sie_only_where_it_says():
    """experiment=quickstart: SIE with two documented deviations (the small-batch projector
    and a 2.5x invariance weight, configs/experiment/quickstart.yaml); the rest SIE's."""
    quick = compose_pretrain(["experiment=quickstart"])["method"]
    sie = paper("sie")["method"]
    assert quick["weights"] == {**sie["weights"], "invariance": 25.0}
    assert quick["projector"] == [1024, 1024, 128] and quick["inv_dim"] == sie["inv_dim"]
