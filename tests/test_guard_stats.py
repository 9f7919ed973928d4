"""Issue 29 item 3: the statistics say when the loop budget's guard decided. ``stats()`` gives, per kernel whose
profile folds a guard over its threshold, the offloaded calls the guard decided (sizes from the guard up to the
threshold the profile or adaptation chose), derived from the size histogram when the statistics are read: the hot
path counts nothing more. ``drift`` prints the count from a stats file. Synthetic models, no timing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

import offload_tuner
from offload_tuner.runtime import _state
from offload_tuner.runtime._policy import guard_size
from offload_tuner.runtime._stats import BUCKETS, bucket_of, guard_decided
from offload_tuner.runtime.feedback._retune import traffic
from offload_tuner.runtime.feedback._statsfile import StatsError, read_stats, write_stats
from tests.support import total
from tests.test_guard import KEY, KNOBS, LINEAR, MEASURED, TOP, TRANSPORT, profile

GUARD = guard_size(LINEAR, TRANSPORT, KNOBS, MEASURED)[0]  # type: ignore[index]


def counts(*sizes: int) -> list[int]:
    """The offload histogram of calls of these sizes."""
    out = [0] * BUCKETS
    for n in sizes:
        out[bucket_of(n)] += 1
    return out


def test_with_never_every_offloaded_call_from_the_guard_up_is_the_guards_and_exact():
    assert guard_decided(counts(1000, 1500, 5000, 70000), 900, None) == (4, True)


def test_offloads_past_the_chosen_threshold_are_the_thresholds():
    # threshold 4096: buckets 1024-2047 and 2048-4095 are the guard's; 4096-8191 and up the threshold's own
    assert guard_decided(counts(1100, 3000, 4096, 5000, 9000), 900, 4096) == (2, True)


def test_a_bucket_the_threshold_splits_is_apportioned_by_its_timed_calls():
    # threshold 3000 inside bucket 2048-4095: of its 4 offloaded calls, the timed sizes say half lie below 3000
    offload = counts(2100, 2200, 3500, 3600)
    assert guard_decided(offload, 900, 3000, sizes=[2100, 3500]) == (2, False)
    # nothing timed there: the share of the bucket's sizes from the guard's side, (3000 - 2048) / 2048
    assert guard_decided(offload, 900, 3000) == (round(4 * 952 / 2048), False)


def test_a_bucket_holding_the_guard_and_the_threshold_counts_from_the_guard():
    # guard 2500 and threshold 3000 both in 2048-4095: offloaded calls lie in [2500, 4095], 500 of 1596 sizes
    assert guard_decided(counts(2600, 3100), 2500, 3000) == (round(2 * 500 / 1596), False)


def test_offloads_below_the_guard_are_not_the_guards():
    """Counted before the guard was in force (another profile, or ``offload_if=`` is not counted at all)."""
    assert guard_decided(counts(10, 100), 900, None) == (0, True)


def run(path, *sizes: int) -> dict:
    with ThreadPoolExecutor(1) as pool:
        offload_tuner.set_executor(pool)
        offload_tuner.load_profile(path)
        for n in sizes:
            offload_tuner.run_kernel_sync(total, [0] * n)
        (section,) = offload_tuner.stats()["processes"].values()
    return section["kernels"][KEY]


def test_stats_count_the_calls_a_never_profile_offloads_by_its_guard(tmp_path):
    far = 8 * TOP
    kernel = run(profile(tmp_path, None), 10, GUARD - 1, GUARD, far, far)
    assert kernel["guarded"] == {"guard": GUARD, "threshold": None, "calls": 3, "exact": True}
    assert sum(kernel["calls"]["offload"].values()) == 3


def test_stats_leave_the_thresholds_own_offloads_out(tmp_path):
    threshold = 4 * GUARD  # a power of two? no matter: the split bucket is apportioned
    kernel = run(profile(tmp_path, threshold), 2 * GUARD - 1, 2 * GUARD, 8 * GUARD, 8 * GUARD)
    assert sum(kernel["calls"]["offload"].values()) == 4
    guarded = kernel["guarded"]
    assert guarded["guard"] == GUARD and guarded["threshold"] == threshold
    assert guarded["calls"] == 2  # the two below the threshold; 8x the guard is the threshold's


def test_no_guarded_field_where_the_threshold_is_below_the_guard_or_there_is_no_guard(tmp_path):
    assert "guarded" not in run(profile(tmp_path, 100), 8 * TOP)
    offload_tuner.reset_stats()
    assert "guarded" not in run(profile(tmp_path, None, guard=None), 8 * TOP)


def test_an_adapted_threshold_is_the_one_counted_against(tmp_path):
    path = profile(tmp_path, None)
    threshold = 4 * GUARD
    with ThreadPoolExecutor(1) as pool:
        offload_tuner.set_executor(pool)
        loaded = offload_tuner.load_profile(path)
        _state.swap(adapted=_state.Adapted(loaded, {KEY: (threshold, "adapted: test")}))
        for n in (2 * GUARD, 8 * GUARD):
            offload_tuner.run_kernel_sync(total, [0] * n)
        assert offload_tuner.decide(total, [0] * (2 * GUARD)).origin == "adapted"
        (section,) = offload_tuner.stats()["processes"].values()
    guarded = section["kernels"][KEY]["guarded"]
    assert guarded["threshold"] == threshold and guarded["calls"] == 1


def test_reading_the_statistics_never_loads_a_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFLOAD_TUNER_PROFILE", str(profile(tmp_path, None)))
    offload_tuner.run_kernel_sync(total, [0] * 8 * TOP)  # no executor: inline, counted, nothing loaded
    (section,) = offload_tuner.stats()["processes"].values()
    assert "guarded" not in section["kernels"][KEY]
    assert _state.current().profile is _state.UNLOADED


def test_the_stats_file_carries_the_count_and_drift_prints_it(tmp_path, capsys):
    from offload_tuner.inspection._cli import main

    path = profile(tmp_path, None)
    stats = tmp_path / "stats.json"
    run(path, 10, GUARD, 8 * TOP)
    write_stats(stats)
    assert traffic(read_stats(stats))[KEY].guarded == 2
    assert main(["drift", str(path), "--stats", str(stats)]) == 0
    assert "guard: decided 2 of the 2 offloaded calls" in capsys.readouterr().out


@pytest.mark.parametrize(
    "guarded, field",
    [
        ([], "expected an object"),
        ({"guard": 0, "threshold": None, "calls": 1, "exact": True}, "guard"),
        ({"guard": 900, "threshold": -1, "calls": 1, "exact": True}, "threshold"),
        ({"guard": 900, "threshold": None, "calls": 1.5, "exact": True}, "calls"),
        ({"guard": 900, "threshold": None, "calls": 1, "exact": "yes"}, "exact"),
    ],
)
def test_a_malformed_guarded_field_is_refused_naming_it(tmp_path, guarded, field):
    kernel = {"calls": {"inline": {}, "offload": {}}, "samples": {}, "guarded": guarded}
    section = {"pid": 1, "started": 1.0, "updated": 2.0, "sample_every": 64, "kernels": {"m:k": kernel}}
    stats = tmp_path / "s.json"
    stats.write_text(json.dumps({"schema": "offload-tuner-stats/1", "host": "h", "processes": {"1@1": section}}))
    with pytest.raises(StatsError, match=f"guarded.*{field}|{field}"):
        read_stats(stats)
