"""The workload benchmark's confirmation on synthetic runs (pure: which policies are confirmed, and how the
confirmed ratio is read)."""

from __future__ import annotations

import pytest

from benchmarks.confirm import (
    analyse_basin,
    analyse_confirmation,
    confirmation_names,
    judged_ratio,
    median_standard_error,
    until_settled,
)
from benchmarks.workload import analyse, verdicts


def _runs(makespans: dict[str, list[float]]) -> dict[str, list[dict[str, float]]]:
    return {
        name: [
            {
                "policy": name,
                "makespan_s": m,
                "lag_p50_s": 0.001,
                "lag_p99_s": 0.002,
                "lag_max_s": 0.003,
                "caller_cpu_s": m,
                "worker_cpu_s": 0.0,
                "offloaded": 0,
                "calls": 10,
                "steady_s": None,
            }
            for m in values
        ]
        for name, values in makespans.items()
    }


def _entry(makespans: dict[str, list[float]], same_as: dict[str, str] | None = None) -> dict:
    entry = {"runs": _runs(makespans), "same_as": same_as or {}}
    analyse(entry)
    return entry


SWEEP = {
    "tuned": [1.10, 1.08, 1.12],
    "static-256": [1.3, 1.3, 1.3],
    "T=8": [1.0, 1.0, 1.0],
    "T=16": [1.02, 1.01, 1.03],
    "T=64": [1.06, 1.05, 1.07],
    "never": [2.0, 2.0, 2.0],
}


def test_tuned_is_confirmed_against_the_sweep_s_best_two_statics():
    entry = _entry(SWEEP)
    assert entry["oracle"] == "T=8"
    assert confirmation_names(entry) == ["tuned", "T=8", "T=16"]


def test_no_confirmation_where_tuned_decides_like_the_oracle():
    makespans = dict(SWEEP, tuned=[0.9, 0.9, 0.9], **{"T=8": [0.9, 0.9, 0.9]})
    entry = _entry(makespans, same_as={"T=8": "tuned"})
    assert entry["same_as"].get(entry["oracle"], entry["oracle"]) == "tuned"
    assert confirmation_names(entry) is None
    assert judged_ratio(entry) == pytest.approx(1.0)


def test_aliases_of_tuned_and_of_each_other_are_not_confirmed_twice():
    makespans = dict(SWEEP, **{"T=32": SWEEP["tuned"], "always": SWEEP["T=8"]})
    entry = _entry(makespans, same_as={"T=32": "tuned", "always": "T=8"})
    names = confirmation_names(entry)
    assert names is not None and names[0] == "tuned" and "T=32" not in names and "always" not in names
    assert len(names) == 3 and len(set(names)) == 3


def test_the_confirmed_ratio_is_against_the_static_tuned_compares_worst_with():
    entry = _entry(SWEEP)
    # Fresh rounds: T=16 turns out the faster of the two; tuned is 2-4% behind it, level with T=8.
    entry["confirmation"] = analyse_confirmation(
        _runs({"tuned": [1.02, 1.03, 1.04, 1.03], "T=8": [1.02, 1.03, 1.04, 1.03], "T=16": [1.0, 1.0, 1.0, 1.0]})
    )
    c = entry["confirmation"]
    assert c["oracle"] == "T=16" and c["rounds"] == 4
    assert c["ratio"] == pytest.approx(1.03, abs=0.002) and c["against"]["T=8"] == pytest.approx(1.0)
    assert len(c["per_round"]) == 4 and min(c["per_round"]) == pytest.approx(1.02, abs=0.002)
    # The verdict judges the confirmed ratio, not the sweep's (which read tuned 1.10x the lucky T=8).
    assert entry["tuned_vs_oracle"] == pytest.approx(1.10)
    entry["summary"]["tuned"]["lag_p99_s"] = entry["summary"]["static-256"]["lag_p99_s"]
    v = verdicts(entry, None)
    assert v["confirmed_vs_oracle"] == pytest.approx(1.03, abs=0.002) and v["makespan_within_1.10x_oracle"]
    # A slow tuned in the confirmation fails, however the sweep read it.
    entry["confirmation"] = analyse_confirmation(
        _runs({"tuned": [1.2, 1.15, 1.18], "T=8": [1.0] * 3, "T=16": [1.0] * 3})
    )
    assert not verdicts(entry, None)["makespan_within_1.10x_oracle"]


def test_re_analysis_of_a_recorded_entry_recomputes_the_confirmation():
    entry = _entry(SWEEP)
    entry["confirmation"] = {"runs": _runs({"tuned": [1.05, 1.05], "T=8": [1.0, 1.0], "T=16": [1.0, 1.0]})}
    analyse(entry)  # what --from-recorded runs
    assert entry["confirmation"]["ratio"] == pytest.approx(1.05, abs=0.002)


def test_the_standard_error_shrinks_with_rounds_and_grows_with_the_spread():
    assert median_standard_error([1.0]) == float("inf")
    steady, lumpy = [1.0, 1.06, 0.95, 1.02] * 2, [1.0, 1.25, 0.81, 1.14] * 2
    assert median_standard_error(steady) < 0.03 < median_standard_error(lumpy)
    assert median_standard_error(lumpy * 3) < median_standard_error(lumpy)
    c = analyse_confirmation(_runs({"tuned": [1.0, 1.25, 0.81, 1.14], "T=8": [1.0] * 4, "T=16": [1.0] * 4}))
    assert c["standard_error"] == pytest.approx(median_standard_error(c["per_round"]))


def test_rounds_run_until_the_ratio_settles_and_no_further():
    def rounds(spread):
        pattern = [1.0, 1.0 + spread, 1.0 - spread, 1.0]
        for i in range(100):
            yield {"tuned": _runs({"x": [pattern[i % 4]]})["x"][0], "T=8": _runs({"x": [1.0]})["x"][0]}

    # Steady: the least number of rounds is enough.
    assert until_settled(rounds(0.02), 8, analyse_confirmation)["rounds"] == 8
    # Lumpy: more rounds, as many as the standard error needs, at most what the source gives.
    lumpy = until_settled(rounds(0.15), 8, analyse_confirmation)
    assert 8 < lumpy["rounds"] < 100 and lumpy["standard_error"] <= 0.03
    capped = until_settled((r for _, r in zip(range(12), rounds(0.3))), 8, analyse_confirmation)
    assert capped["rounds"] == 12 and capped["standard_error"] > 0.03


def test_a_basin_compares_every_threshold_with_the_best_of_them():
    basin = analyse_basin(_runs({"T=8": [1.05, 1.06, 1.04], "T=128": [1.0, 1.0, 1.0], "never": [1.5, 1.6, 1.4]}))
    assert basin["best"] == "T=128" and basin["vs_best"]["T=128"] == 1.0
    assert basin["vs_best"]["T=8"] == pytest.approx(1.05) and basin["vs_best"]["never"] == pytest.approx(1.5)
    assert basin["rounds"] == 3


def test_a_comparison_without_rounds_is_an_error_not_an_empty_verdict():
    with pytest.raises(ValueError, match="no rounds"):
        until_settled(iter(()), 8, analyse_confirmation)


def test_the_basin_reference_is_the_one_the_per_round_ratios_put_lowest():
    # By normalised medians T=32 is best; by the median of per-round ratios against it, T=16 is 3% ahead.
    basin = analyse_basin(
        _runs(
            {
                "T=8": [1.16, 0.91, 1.22, 1.09, 0.94],
                "T=16": [0.83, 1.23, 1.29, 0.84, 1.2],
                "T=32": [1.01, 0.88, 0.95, 1.18, 1.24],
            }
        )
    )
    assert basin["best"] == "T=16" and basin["vs_best"]["T=16"] == pytest.approx(1.0)
    assert basin["vs_best"]["T=32"] == pytest.approx(1 / 0.9677, abs=0.001) and min(basin["vs_best"].values()) == 1.0
