"""The workload benchmark's confirmation on synthetic runs (pure: which policies are confirmed, and how the
confirmed ratio is read)."""

from __future__ import annotations

import pytest

from benchmarks.workload import analyse, analyse_confirmation, confirmation_names, judged_ratio, verdicts


def _runs(makespans: dict[str, list[float]]) -> dict[str, list[dict[str, float]]]:
    return {name: [{"policy": name, "makespan_s": m, "lag_p50_s": 0.001, "lag_p99_s": 0.002, "lag_max_s": 0.003,
                    "caller_cpu_s": m, "worker_cpu_s": 0.0, "offloaded": 0, "calls": 10, "steady_s": None}
                   for m in values] for name, values in makespans.items()}


def _entry(makespans: dict[str, list[float]], same_as: dict[str, str] | None = None) -> dict:
    entry = {"runs": _runs(makespans), "same_as": same_as or {}}
    analyse(entry)
    return entry


SWEEP = {"tuned": [1.10, 1.08, 1.12], "static-256": [1.3, 1.3, 1.3], "T=8": [1.0, 1.0, 1.0],
         "T=16": [1.02, 1.01, 1.03], "T=64": [1.06, 1.05, 1.07], "never": [2.0, 2.0, 2.0]}


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
    entry["confirmation"] = {"runs": _runs({"tuned": [1.02, 1.03, 1.04, 1.03], "T=8": [1.02, 1.03, 1.04, 1.03],
                                            "T=16": [1.0, 1.0, 1.0, 1.0]})}
    analyse_confirmation(entry)
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
    entry["confirmation"] = {"runs": _runs({"tuned": [1.2, 1.15, 1.18], "T=8": [1.0, 1.0, 1.0], "T=16": [1.0, 1.0, 1.0]})}
    analyse_confirmation(entry)
    assert not verdicts(entry, None)["makespan_within_1.10x_oracle"]


def test_re_analysis_of_a_recorded_entry_recomputes_the_confirmation():
    entry = _entry(SWEEP)
    entry["confirmation"] = {"runs": _runs({"tuned": [1.05, 1.05], "T=8": [1.0, 1.0], "T=16": [1.0, 1.0]})}
    analyse(entry)  # what --from-recorded runs
    assert entry["confirmation"]["ratio"] == pytest.approx(1.05, abs=0.002)


def test_the_standard_error_shrinks_with_rounds_and_grows_with_the_spread():
    from benchmarks.workload import median_standard_error

    assert median_standard_error([1.0]) == float("inf")
    steady, lumpy = [1.0, 1.06, 0.95, 1.02] * 2, [1.0, 1.25, 0.81, 1.14] * 2
    assert median_standard_error(steady) < 0.03 < median_standard_error(lumpy)
    assert median_standard_error(lumpy * 3) < median_standard_error(lumpy)
    entry = _entry(SWEEP)
    entry["confirmation"] = {"runs": _runs({"tuned": [1.0, 1.25, 0.81, 1.14], "T=8": [1.0] * 4, "T=16": [1.0] * 4})}
    analyse_confirmation(entry)
    assert entry["confirmation"]["standard_error"] == pytest.approx(
        median_standard_error(entry["confirmation"]["per_round"]))
