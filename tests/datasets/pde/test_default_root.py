"""``equissl-pretrain method=lie_vicreg data=pde_<eq>`` without ``data.root`` (issue 11,
"How it will be checked"): each PDE data option has a default root where the first run
generates a small set, and a root that already holds trajectories is never added to."""

import numpy as np
import pytest
from hydra import compose, initialize_config_module

from equissl.apps.hydra_main import _resolved
from equissl.datasets.pde import generate_pde
from equissl.datasets.pde.dataset import split_mask
from equissl.datasets.pde.storage import pde_files
from equissl.training.pretrain import prepare_data


def compose_pretrain(overrides):
    with initialize_config_module("equissl.configs", version_base="1.3"):
        return _resolved(compose("pretrain", overrides=overrides))


@pytest.mark.parametrize("equation", ["burgers", "kdv", "ks", "ns"])
def test_every_pde_option_has_a_default_root_and_small_generation(equation):
    data = compose_pretrain(["method=lie_vicreg", f"data=pde_{equation}"])["data"]
    assert data["root"] == f"data/pde_{equation}"
    n = int(data["generate"]["num_trajectories"])
    ids = np.arange(n)
    train = int(split_mask(ids, "train", int(data["val_every"]), data["labelled_split"]).sum())
    assert train >= int(data["batch_size"])  # at least one pretraining batch
    # Nothing that would leak into the recipes, but NS's CPU grid (32 x 32), which
    # experiment=lie_vicreg_ns sets back to the paper's 128 (tests/ssl/test_lie_vicreg.py).
    assert set(data["generate"]["params"]) <= ({"nx"} if equation == "ns" else set())


def test_recipes_keep_their_own_generation():
    data = compose_pretrain(["experiment=lie_vicreg_burgers"])["data"]
    assert data["generate"]["num_trajectories"] == 15000 and not data["generate"]["params"]
    cpu = compose_pretrain(["experiment=cpu/lie_vicreg_kdv"])["data"]
    assert cpu["generate"]["num_trajectories"] == 48 and cpu["generate"]["params"] == {"nx": 64}


def test_default_generation_fills_an_empty_root_only(tmp_path):
    root = tmp_path / "burgers"
    overrides = ["method=lie_vicreg", "data=pde_burgers", f"data.root={root}"]
    data = compose_pretrain([*overrides, "+data.generate.params.nx=16"])["data"]
    prepare_data(data)
    files = pde_files(root)[0]
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    prepare_data(data)  # complete: nothing is written again
    assert pde_files(root)[0] == files and files[0].stat().st_mtime_ns == mtime
    mine = tmp_path / "mine"  # a user's data in 2 chunks: the default never adds a third
    for chunk in (0, 1):
        generate_pde("burgers", mine, num_trajectories=4, chunk=chunk, num_chunks=2, nx=16,
                     progress=False)  # fmt: skip
    prepare_data({**data, "root": str(mine)})
    assert len(pde_files(mine)[0]) == 2
