"""Robust choice under noise (issue 29, item 1): the pure rules of ``_robust`` and how ``choose`` reports the
regret bound, on synthetic measurements."""

from __future__ import annotations

import pytest

from offload_tuner.calibration._candidates import Candidate
from offload_tuner.calibration._choice import choose
from offload_tuner.calibration._robust import (
    MAX_BETWEEN,
    REGRET_LIMIT,
    grid_position,
    needs_rounds,
    regret_bound,
    unsettled,
)


def cand(t, makespans, lag=0.01, cpu=0.5, offloaded=0):
    rounds = len(makespans)
    return Candidate(t, offloaded, tuple(makespans), (lag,) * rounds, (cpu,) * rounds)


LEDGER = (8.0, 160.0)
"""The O(k^3) kernel's mix in the reruns campaign."""


def test_a_best_two_octaves_or_more_from_the_model_measures_the_octaves_in_between_first():
    # The recorded case: the model proposed 8, the phase measured 8, 16, 91 and 128, and 91 came out a lone best
    # by 4% after three rounds; 32-64 were never measured.
    cs = [cand(8, [0.213] * 3), cand(16, [0.215] * 3), cand(91, [0.205] * 3), cand(128, [0.216] * 3)]
    settle = unsettled(91, False, cs, 8, LEDGER, cap=128)
    assert settle.thresholds == (45,)
    assert "octaves from the model's proposal" in settle.why
    # Near the model, and tied with its neighbours: nothing to add.
    assert unsettled(16, True, cs, 16, LEDGER).thresholds == ()


def test_a_lone_best_among_few_candidates_spanning_a_wide_range_is_not_taken_on_one_phase():
    mix = (16.0, 700.0)
    cs = [cand(16, [1.10] * 3), cand(128, [1.05] * 3), cand(512, [1.0] * 3)]
    settle = unsettled(512, False, cs, 362, mix)
    assert settle.thresholds == (256,)
    assert "lone best" in settle.why
    # The same best in a flat basin, or with its neighbours an octave or less away, stands.
    assert unsettled(512, True, cs, 362, mix).thresholds == ()
    dense = cs + [cand(256, [1.04] * 3), cand(362, [1.03] * 3)]
    assert unsettled(512, False, dense, 362, mix).thresholds == ()


def test_at_most_a_few_octaves_are_added_nearest_first_and_none_above_the_cap():
    mix = (4.0, 65536.0)
    cs = [cand(4, [1.2] * 3), cand(65536, [1.0] * 3)]
    settle = unsettled(65536, False, cs, 4, mix)
    assert 0 < len(settle.thresholds) <= MAX_BETWEEN
    assert list(settle.thresholds) == sorted(settle.thresholds, reverse=True)  # nearest the best first
    assert all(t < 65536 for t in settle.thresholds)
    capped = unsettled(65536, False, cs, 4, mix, cap=4096)
    assert all(t <= 4096 for t in capped.thresholds)


def test_grid_positions_put_always_at_the_mix_bottom_and_never_past_its_top():
    assert grid_position(0, LEDGER) == grid_position(8, LEDGER)
    assert grid_position(None, LEDGER) == grid_position(160, LEDGER) + 1
    assert grid_position(10_000, LEDGER) == grid_position(160, LEDGER)


def test_the_regret_bound_grows_with_the_gap_and_the_noise_and_shrinks_with_rounds():
    quiet = [cand(8, [1.0, 1.01, 0.99]), cand(16, [1.05, 1.06, 1.04])]
    noisy = [cand(8, [1.0, 1.1, 0.9]), cand(16, [1.05, 1.15, 0.95])]
    assert 0 < regret_bound(quiet[0], quiet[0], quiet) < regret_bound(quiet[1], quiet[0], quiet)
    assert regret_bound(noisy[1], noisy[0], noisy) > regret_bound(quiet[1], quiet[0], quiet)
    longer = [cand(8, [1.0, 1.01, 0.99] * 3), cand(16, [1.05, 1.06, 1.04] * 3)]
    assert regret_bound(longer[1], longer[0], longer) < regret_bound(quiet[1], quiet[0], quiet)
    assert needs_rounds(REGRET_LIMIT + 0.01) and not needs_rounds(REGRET_LIMIT - 0.01)


def test_choose_reports_the_regret_bound_of_its_choice():
    cs = [cand(8, [1.0, 1.01, 0.99]), cand(16, [1.3, 1.31, 1.29])]
    choice = choose(cs, rounds=3, workload_range=LEDGER)
    assert choice.threshold == 8
    assert choice.regret == pytest.approx(regret_bound(cs[0], cs[0], cs))
