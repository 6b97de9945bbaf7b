"""``bench/full_scale.py``'s building blocks (the bench itself runs for an hour): its synthetic
trees are in the published layout and pass ``equissl-validate``, loose and packed alike and
for 3DIEBench-T; its memory sampler sees a process tree; its table extrapolates a skipped
full-size stage from the work beyond the command's fixed cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import full_scale  # noqa: E402

from equissl.datasets.iebench_format import load_split  # noqa: E402
from equissl.datasets.packed import PackedStore  # noqa: E402
from equissl.datasets.validate_tree import validate_iebench  # noqa: E402


def test_catalog_is_every_synset_80_20():
    splits = full_scale.catalog(1100)
    assert len(splits["train"]) + len(splits["val"]) == 1100
    assert len(splits["val"]) == 55 * 4  # 20 objects per class, 4 in val
    assert {lab for _, lab in splits["train"]} == set(range(55))
    entries = [e for items in splits.values() for e, _ in items]
    assert len(set(entries)) == 1100 and all(e.count("/") == 3 for e in entries)


@pytest.mark.parametrize("dim", [7, 10])
def test_loose_and_packed_trees_validate(tmp_path, dim):
    loose, packed = tmp_path / "loose", tmp_path / "packed"
    full_scale.build_loose(loose, 110, 4, dim)
    full_scale.build_packed(packed, 110, 4, dim)
    for root in (loose, packed):
        report = validate_iebench(root, progress=False, workers=1)
        assert report.ok, report.summary()
        assert report.objects == 110
    lat = np.load(next(loose.glob("*/*/latent_0.npy")))
    assert lat.dtype == np.float64 and lat.shape == (dim,)
    assert (np.abs(lat[:3]) <= np.pi / 2).all() and 0 <= lat[4] <= np.pi / 4
    store = PackedStore(packed, "train")
    assert store.latent_dim == dim and store.views_per_object == 4
    assert load_split(packed, "val").entries == load_split(loose, "val").entries


def test_sampler_sees_the_process_tree(tmp_path):
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'x = bytearray(80 << 20); import time; time.sleep(1)'])"  # noqa: E501
    r = full_scale.measure([sys.executable, "-c", code], tmp_path / "log", tmp_path)
    assert r["exit"] == 0 and r["processes"] >= 2
    assert r["anon_rss"] > 80  # the grandchild's 80 MiB
    assert r["cpu_s"] >= 0 and r["wall_s"] >= 1


def test_extrapolation_uses_the_work_beyond_the_fixed_cost():
    def stage(cpu: float, anon: float) -> dict:
        return {"wall_s": cpu, "cpu_s": cpu, "anon_rss": anon, "file_rss": 0.0,
                "anon_pss": anon, "exit": 0}  # fmt: skip

    runs = {  # fixed cost 10 s; knn work quadratic: 1 s at 1k, 16 s at 4k
        1000: {"other probes": stage(10, 600), "knn_flat": stage(11, 650)},
        4000: {"other probes": stage(10, 600), "knn_flat": stage(26, 800)},
        16000: {"other probes": stage(10, 600), "knn_flat": {"skipped": "x"}},
    }
    full_scale.extrapolate(runs)
    r = runs[16000]["knn_flat"]
    assert r["extrapolated"] and r["work_exponent"] == pytest.approx(2.0)
    assert r["cpu_s"] == pytest.approx(10 + 16 * 16)
    assert r["anon_rss"] == pytest.approx(800 + 150 / 3000 * 12000)
    text = "\n".join(full_scale.table(runs))
    assert "knn_flat **(extrapolated)** | 16,000" in text and "1.68 (2.00)" in text


def test_command_line_help():
    script = Path(full_scale.__file__)
    res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--skip-at-full" in res.stdout


def test_merge_replaces_only_the_named_stages():
    earlier = {"date": "d0", "command": "c0", "runs": {
        "10": {"rotation": {"cpu_s": 1.0}, "color": {"cpu_s": 2.0}},
        "20": {"rotation": {"cpu_s": 3.0}, "color": {"cpu_s": 4.0}}}}  # fmt: skip
    now = {"date": "d1", "command": "c1", "runs": {"20": {"rotation": {"cpu_s": 9.0},
                                                          "color": {"cpu_s": 8.0}}}}  # fmt: skip
    out, runs = full_scale.merged(earlier, now, {"rotation"})
    assert runs[20] == {"rotation": {"cpu_s": 9.0}, "color": {"cpu_s": 4.0}}
    assert runs[10] == earlier["runs"]["10"]
    assert out["remeasured"] == {"rotation": "d1 by `c1`"}
    assert earlier["runs"]["20"]["rotation"] == {"cpu_s": 3.0}  # not modified in place
