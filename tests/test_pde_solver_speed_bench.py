"""``bench/pde_solver_speed.py``'s step-count search: the smallest matching count, and a plain
"not matched" when the cap is reached (no solver runs here)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import pde_solver_speed  # noqa: E402


def fourth_order(calls: list[int]):
    def error(s: int) -> float:
        calls.append(s)
        return 3.0 * s**-4.0

    return error


def test_search_finds_the_smallest_matching_step_count():
    for target_steps in (1, 2, 3, 24, 100, 166, 1000):
        target = 3.0 * target_steps**-4.0
        calls: list[int] = []
        steps, matched = pde_solver_speed.match_substeps(fourth_order(calls), target, cap=2048)
        assert (steps, matched) == (target_steps, True)
        assert len(calls) == len(set(calls)) <= 16  # doubling, then a few tries


def test_search_reports_unmatched_at_the_cap():
    calls: list[int] = []
    target = 3.0 * 166.0**-4.0  # needs 166 steps
    assert pde_solver_speed.match_substeps(fourth_order(calls), target, cap=64) == (64, False)
    assert max(calls) == 64
    # a cap that is not a power of two is tried itself
    calls.clear()
    assert pde_solver_speed.match_substeps(fourth_order(calls), target, cap=100) == (100, False)
    assert calls[-1] == 100


def test_search_bisects_when_the_error_is_not_a_power_law():
    # a step in the error (not a power law): bisection still finds the first matching count
    steps, matched = pde_solver_speed.match_substeps(lambda s: 1.0 if s < 37 else 0.0, 0.5, 256)
    assert (steps, matched) == (37, True)


def test_one_error_norm_for_both_solvers():
    import numpy as np

    ref = np.zeros((2, 3, 4))
    sol = ref.copy()
    sol[1, 2, 3] = -2.5
    assert pde_solver_speed.max_error(sol, ref) == 2.5
