"""The reruns campaign's check of the loop budget as the benchmark's long runs see it (issue 29's acceptance: no
choice whose p99 passes the budget while a candidate within its tie band keeps it), on synthetic benchmarks."""

from __future__ import annotations

from benchmarks.reruns import budget_kept


def bench(tuned, statics):
    """``tuned`` and each static as (normalised makespan, p99 loop lag in seconds)."""
    rows = {"tuned": tuned, **statics}
    return {"summary": {name: {"makespan_s": m, "lag_p99_s": lag} for name, (m, lag) in rows.items()}}


ENTRY = {"load": {"tie_band": 0.05}}


def test_a_choice_within_the_budget_keeps_it():
    assert budget_kept(bench((1.0, 0.05), {"T=64": (0.98, 0.01)}), ENTRY, 0.1)["kept"]


def test_a_choice_past_the_budget_is_wrong_when_a_static_within_its_tie_band_keeps_it():
    verdict = budget_kept(bench((1.0, 0.125), {"T=64": (1.04, 0.03), "T=128": (0.97, 0.16)}), ENTRY, 0.1)
    assert not verdict["kept"] and verdict["instead"] == ["T=64"]


def test_a_choice_past_the_budget_stands_when_keeping_it_costs_more_than_the_tie_band():
    assert budget_kept(bench((1.0, 0.125), {"T=64": (1.2, 0.03), "never": (1.3, 0.5)}), ENTRY, 0.1)["kept"]


def test_no_budget_or_no_lag_recorded_checks_nothing():
    assert budget_kept(bench((1.0, 0.5), {"T=64": (1.0, 0.01)}), ENTRY, None)["kept"]
    assert budget_kept({"summary": {"tuned": {"makespan_s": 1.0}}}, ENTRY, 0.1)["kept"]
