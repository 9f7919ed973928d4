"""The reruns report's verdicts on synthetic runs (pure: what counts as reproducible and covered)."""

from __future__ import annotations

from benchmarks.reruns import basin_flat, basin_thresholds, verdicts


def _run(threshold, interval, tied, ratio, error=0.05, sweep=None):
    """``sweep``: normalised makespans of static policies (the oracle, T=128, is 1.0 unless given)."""
    key = "m:k"
    summary = {"T=128": {"makespan_s": 1.0}, "tuned": {"makespan_s": ratio}}
    summary.update({name: {"makespan_s": v} for name, v in (sweep or {}).items()})
    return {
        "profile": {"kernels": {key: {"threshold": threshold, "interval": interval, "load": {"tied": tied}}}},
        "workload": {
            "workloads": [
                {
                    "kernel": key,
                    "tuned_vs_oracle": ratio,
                    "oracle": "T=128",
                    "summary": summary,
                    "verdicts": {"tuned_vs_oracle_range": [ratio - 0.02, ratio + 0.02]},
                    "model_check": {"median_error": error},
                }
            ]
        },
        "calibration_wall_s": 40.0,
    }


def test_close_thresholds_are_reproducible_and_covered():
    v = verdicts(
        [_run(128, [91, 181], [128], 1.02), _run(181, [128, 256], [181], 1.04), _run(128, [91, 181], [128], 1.0)]
    )
    row = v["kernels"]["m:k"]
    assert row["within_1.5x"] and row["reproducible"] and row["all_within_1.10x_oracle"]
    assert row["coverage"] == "6/6" and v["coverage"] == 1.0
    assert v["model_error_median"] == 0.05


def test_far_thresholds_need_overlapping_intervals_and_a_flat_basin():
    flat = verdicts([_run(8, [8, 362], [0, 8, 181], 1.0), _run(362, [8, 362], [8, 362], 1.05)])["kernels"]["m:k"]
    assert not flat["within_1.5x"] and flat["intervals_overlap"] and flat["flat_basin_every_run"]
    assert flat["reproducible"]
    sharp = verdicts([_run(8, [8, 11], [8], 1.0), _run(362, [256, 362], [362], 1.2)])
    row = sharp["kernels"]["m:k"]
    assert not row["reproducible"] and not row["all_within_1.10x_oracle"] and row["coverage"] == "0/2"


def test_never_is_its_own_threshold():
    v = verdicts([_run(None, [11585, None], [None], 1.0), _run(None, [16384, None], [None], 0.99)])
    row = v["kernels"]["m:k"]
    assert row["within_1.5x"] and row["coverage"] == "2/2"


def test_a_basin_the_benchmark_measured_flat_makes_far_thresholds_reproducible():
    # Calibration saw one best candidate each time; the benchmark's sweep between 8 and 181 is flat.
    flat_sweep = {"T=8": 1.04, "T=16": 1.02, "T=64": 1.01, "T=256": 1.3}
    measured = verdicts(
        [_run(8, [8, 256], [8], 1.05, sweep=flat_sweep), _run(181, [8, 256], [181], 1.07, sweep=flat_sweep)]
    )["kernels"]["m:k"]
    assert not measured["within_1.5x"] and not measured["flat_basin_every_run"]
    assert measured["flat_in_benchmark"] and measured["reproducible"]  # T=256 is outside 8..181: not asked
    one_slow = verdicts(
        [_run(8, [8, 256], [8], 1.05, sweep=flat_sweep), _run(181, [8, 256], [181], 1.12, sweep=flat_sweep)]
    )["kernels"]["m:k"]
    assert not one_slow["flat_in_benchmark"] and not one_slow["reproducible"]
    # Both runs' thresholds fine, but a threshold between them is not: the basin has a bump, not flat.
    bump = dict(flat_sweep, **{"T=32": 1.16})
    bumpy = verdicts([_run(8, [8, 256], [8], 1.05, sweep=bump), _run(181, [8, 256], [181], 1.07, sweep=bump)])[
        "kernels"
    ]["m:k"]
    assert not bumpy["flat_in_benchmark"] and not bumpy["reproducible"]
    apart = verdicts(
        [_run(8, [8, 11], [8], 1.0, sweep=flat_sweep), _run(181, [128, 256], [181], 1.0, sweep=flat_sweep)]
    )["kernels"]["m:k"]
    assert apart["flat_in_benchmark"] and not apart["reproducible"]  # intervals must still overlap
    # "never" chosen by one run brings the never policy (often an alias of the top sweep point) into it.
    never_slow = verdicts(
        [
            _run(
                8192,
                [4096, None],
                [8192],
                1.0,
                sweep={"T=16384": 1.3},
            ),
            _run(None, [4096, None], [None], 1.3, sweep={"T=16384": 1.3}),
        ]
    )
    assert not never_slow["kernels"]["m:k"]["flat_in_benchmark"]


def test_the_confirmed_ratio_is_judged_where_the_benchmark_ran_one():
    def confirmed(ratio, sweep_ratio):
        run = _run(128, [91, 181], [128], sweep_ratio)
        run["workload"]["workloads"][0]["confirmation"] = {"ratio": ratio, "oracle": "T=128", "per_round": [ratio] * 8}
        return run

    # The sweep read one run 1.12x (a lucky oracle); the fresh rounds read it 1.04x.
    row = verdicts([confirmed(1.04, 1.12), _run(128, [91, 181], [128], 1.0)])["kernels"]["m:k"]
    assert row["all_within_1.10x_oracle"] and row["judged"] == [1.04, 1.0]
    assert row["confirmed"][0]["ratio"] == 1.04 and row["confirmed"][1] is None
    # And the other way: a confirmation that reads it slow fails the run, whatever the sweep said.
    row = verdicts([confirmed(1.15, 1.05), _run(128, [91, 181], [128], 1.0)])["kernels"]["m:k"]
    assert not row["all_within_1.10x_oracle"]


def test_the_basin_check_measures_the_runs_thresholds_their_oracles_and_a_few_between():
    assert basin_thresholds([8, 128, 128], ["T=32", "static-256", "T=32"], [8, 512]) == [8, 16, 32, 64, 128, 256]
    # Wide spans are thinned to a few powers of two between; beyond the workload's top, never is never.
    assert basin_thresholds([1024, 262144], ["T=131072"], [1024, 262144]) == [1024, 4096, 16384, 65536, 131072, 262144]
    assert basin_thresholds([8192, None], ["never"], [64, 16384]) == [8192, 16384, None]
    assert basin_thresholds([0, 45], ["always"], [8, 128]) == [0, 16, 32, 45]  # below 8, every threshold is always


def test_a_recorded_basin_check_decides_whether_far_thresholds_are_reproducible():
    basin = {
        "thresholds": [8, 16, 32, 64, 128, 256],
        "best": "T=32",
        "vs_best": {"T=8": 1.04, "T=16": 1.01, "T=32": 1.0, "T=64": 1.03, "T=128": 1.07, "T=256": 1.3},
    }
    assert basin_flat(basin, [8, 128, 8])  # 256 is outside the runs' span: not asked
    assert not basin_flat(dict(basin, vs_best=dict(basin["vs_best"], **{"T=64": 1.12})), [8, 128])
    runs = [_run(8, [8, 256], [8], 1.0), _run(128, [8, 362], [128], 1.02)]
    row = verdicts(runs, {"m:k": basin})["kernels"]["m:k"]
    assert not row["within_1.5x"] and not row["flat_basin_every_run"]
    assert row["flat_in_benchmark"] and row["reproducible"] and row["basin"]["best"] == "T=32"
    bumpy = dict(basin, vs_best=dict(basin["vs_best"], **{"T=16": 1.15}))
    assert not verdicts(runs, {"m:k": bumpy})["kernels"]["m:k"]["reproducible"]
    # A check that did not measure the runs' own thresholds (failed, or recorded for other runs) shows nothing.
    assert not basin_flat(dict(basin, error=["Traceback ..."]), [8, 128])
    assert not basin_flat(basin, [8, 181])
    sweep_flat = {"T=8": 1.04, "T=16": 1.02, "T=32": 1.0, "T=64": 1.01}
    fallback = [_run(8, [8, 256], [8], 1.0, sweep=sweep_flat), _run(128, [8, 362], [128], 1.02, sweep=sweep_flat)]
    assert verdicts(fallback)["kernels"]["m:k"]["flat_in_benchmark"]  # no basin check: the sweeps decide
    assert not verdicts(fallback, {"m:k": bumpy})["kernels"]["m:k"]["flat_in_benchmark"]  # with one: it decides
