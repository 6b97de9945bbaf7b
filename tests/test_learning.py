"""Learning is tested, not assumed (slow: ~15 CPU minutes; run with ``pytest -m slow``)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


@pytest.mark.slow
def test_sie_equivariant_part_predicts_rotation(tmp_path):
    from learning_sie_vs_vicreg import compare

    results, _ = compare(tmp_path, [])
    m = {k: r["metrics"] for k, r in results.items()}
    sie = m["sie"]["equi/rotation/r2_global"]
    print({k: {kk: round(v, 3) for kk, v in r.items()} for k, r in m.items()})
    assert sie >= m["vicreg"]["full/rotation/r2_global"] + 0.1
    assert sie >= m["untrained"]["full/rotation/r2_global"] + 0.1
    assert m["sie"]["full/classification/top1"] > m["untrained"]["full/classification/top1"]
