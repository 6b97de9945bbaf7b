"""A new method in a copy of the checkout is one module + one YAML, nothing else edited."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TOY = '''"""A toy method added in the package itself."""

from dataclasses import dataclass, field

import torch.nn.functional as F

from equissl.config import MethodConfig
from equissl.ssl.base import LossOutput, SSLMethod
from equissl.registries import METHODS


@dataclass
class InTreeToyConfig(MethodConfig):
    weights: dict[str, float] = field(default_factory=lambda: {"align": 1.0})


@METHODS.register("intree_toy", config=InTreeToyConfig)
class InTreeToy(SSLMethod):
    """Aligns the two views' representations."""

    terms = ("align",)

    def compute_loss(self, batch):
        v = batch["views"]
        a, b = self.backbone(v[:, 0]), self.backbone(v[:, 1])
        return LossOutput({"align": F.mse_loss(a, b)}, a)
'''


@pytest.mark.e2e
def test_new_method_in_a_copy_of_the_checkout(tmp_path):
    copy = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "equissl", copy / "equissl", ignore=ignore)
    shutil.copytree(ROOT / "configs", copy / "configs", ignore=ignore)
    (copy / "equissl" / "ssl" / "intree_toy.py").write_text(TOY)
    (copy / "configs" / "method" / "intree_toy.yaml").write_text(
        "defaults:\n  - intree_toy_schema\n  - _self_\nname: intree_toy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(copy)}
    bin_dir = Path(sys.executable).parent
    listed = subprocess.run(
        [str(bin_dir / "equissl-list")], env=env, capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0, listed.stderr
    assert "intree_toy" in listed.stdout.split("methods")[1].split("datasets")[0]
    options = next(ln for ln in listed.stdout.splitlines() if ln.strip().startswith("method "))
    assert "intree_toy" in options
    composed = subprocess.run(
        [str(bin_dir / "equissl-pretrain"), "--cfg", "job", "method=intree_toy", "data.root=/x"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert composed.returncode == 0, composed.stderr
    assert "impl: intree_toy" in composed.stdout and "align: 1.0" in composed.stdout
