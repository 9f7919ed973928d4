"""Production statistics: every call counted per size bucket and decision, sampled calls timed, memory bounded."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

import offload_tuner
from offload_tuner.runtime import _state, _stats
from offload_tuner.runtime._stats import SAMPLE_CAP, bucket_floor, bucket_of
from tests import controlled
from tests.support import not_registered, total, write_profile_json


def kernel_stats(fn) -> dict:
    """This process's statistics of one kernel ({} if it was never called)."""
    (section,) = offload_tuner.stats()["processes"].values()
    return section["kernels"].get(_key(fn), {})


def _key(fn) -> str:
    from offload_tuner.runtime._registry import spec_for

    return spec_for(fn).key


@pytest.mark.parametrize(
    "n, floor", [(0, 0), (1, 1), (2, 2), (3, 2), (4, 4), (1023, 512), (1024, 1024), (2**70, 2**63)]
)
def test_buckets_are_powers_of_two(n, floor):
    assert bucket_floor(bucket_of(n)) == floor


def test_every_call_the_profile_decides_is_counted_by_size_bucket_and_decision(tmp_path):
    offload_tuner.sample_every(0)
    for n in (1, 2, 3, 100, 100, 1000):  # no executor: everything inline
        offload_tuner.run_kernel_sync(total, list(range(n)))
    calls = kernel_stats(total)["calls"]
    assert calls == {"inline": {"1": 1, "2": 2, "64": 2, "512": 1}, "offload": {}}

    with ThreadPoolExecutor(2) as pool:
        offload_tuner.set_executor(pool)
        offload_tuner.load_profile(write_profile_json(tmp_path / "p.json", {_key(total): 64}, executor_kind="thread"))
        for n in (10, 64, 70, 5000):
            offload_tuner.run_kernel_sync(total, list(range(n)))
        offload_tuner.run_kernel_sync(total, list(range(5)), offload_if=True)  # the caller decides: not counted
    calls = kernel_stats(total)["calls"]
    assert calls["offload"] == {"64": 2, "4096": 1}
    assert calls["inline"]["8"] == 1


def test_sampled_calls_record_what_they_cost():
    offload_tuner.sample_every(1)  # every call timed
    data = controlled._payload(400)[0]
    for _ in range(3):
        offload_tuner.run_kernel_sync(controlled.spin, data)
    samples = kernel_stats(controlled.spin)["samples"]
    assert len(samples["inline"]) == 3 and samples["loop"] == [] and samples["latency"] == []
    for stamp, size, seconds in samples["inline"]:
        assert size == 400 and seconds > 0 and stamp > 1.7e9


def test_offloaded_samples_split_the_callers_share_from_the_round_trip(pool, tmp_path):
    offload_tuner.sample_every(1)
    offload_tuner.set_executor(pool)
    offload_tuner.load_profile(write_profile_json(tmp_path / "p.json", {_key(controlled.fat_result): 0}))

    async def main():
        return [await offload_tuner.run_kernel(controlled.fat_result, 2000) for _ in range(4)]

    results = asyncio.run(main())
    assert results[0] == controlled.fat_result(2000)
    samples = kernel_stats(controlled.fat_result)["samples"]
    assert len(samples["loop"]) == len(samples["latency"]) == 4 and samples["inline"] == []
    for (_, n, loop), (_, m, latency) in zip(samples["loop"], samples["latency"]):
        # The caller unpickles 20000 small tuples on its own thread: a real share, never more than the trip.
        assert n == m == 2000 and 0 < loop <= latency


def test_one_call_in_n_of_each_bucket_is_timed_and_timing_can_be_turned_off():
    assert offload_tuner.sample_every(10) == 64  # the default; 10 rounds down to 8: the hot path tests bits
    assert offload_tuner.sample_every() == 8
    for _ in range(1000):
        offload_tuner.run_kernel_sync(total, [1, 2])
    for _ in range(80):
        offload_tuner.run_kernel_sync(total, list(range(100)))
    sizes = [size for _, size, _ in kernel_stats(total)["samples"]["inline"]]
    assert sizes.count(2) == 125 and sizes.count(100) == 10  # every 8th call of each bucket: stratified by size
    offload_tuner.reset_stats()
    assert offload_tuner.sample_every(0) == 8
    for _ in range(500):
        offload_tuner.run_kernel_sync(total, [1, 2])
    stats = kernel_stats(total)
    assert stats["samples"]["inline"] == [] and stats["calls"]["inline"] == {"2": 500}
    with pytest.raises(ValueError, match="int >= 0"):
        offload_tuner.sample_every(-1)


def test_memory_is_bounded_whatever_the_traffic():
    offload_tuner.sample_every(1)
    for i in range(3 * SAMPLE_CAP):
        offload_tuner.run_kernel_sync(total, list(range(i % 50)))
    stats = kernel_stats(total)
    assert [size for _, size, _ in stats["samples"]["inline"]] == [
        i % 50 for i in range(2 * SAMPLE_CAP, 3 * SAMPLE_CAP)
    ]
    assert sum(stats["calls"]["inline"].values()) == 3 * SAMPLE_CAP
    # Unregistered functions, fresh lambdas above all, leave nothing behind in any table.
    with ThreadPoolExecutor(1) as pool:
        offload_tuner.set_executor(pool)
        for i in range(200):
            offload_tuner.run_kernel_sync(lambda xs: len(xs), [i], offload_if=False)
            offload_tuner.run_kernel_sync(lambda xs: len(xs), [i])
        snap = _state._snapshot
        assert len(snap.table) == 0 and len(snap.caller_decided) == 0
    assert set(offload_tuner.stats()["processes"].popitem()[1]["kernels"]) == {_key(total)}
    assert offload_tuner.run_kernel_sync(not_registered, [1, 2]) == 2


def test_a_failing_size_function_costs_no_call_where_the_size_decides_nothing(tmp_path):
    from tests.support import junk_size

    offload_tuner.sample_every(1)
    assert offload_tuner.run_kernel_sync(junk_size, [1]) == 0  # no executor: inline, size never needed
    with ThreadPoolExecutor(1) as pool:
        offload_tuner.set_executor(pool)
        assert offload_tuner.run_kernel_sync(junk_size, [1], offload_if=True) == 0
    assert kernel_stats(junk_size) == {}


def test_the_production_import_stays_free_of_the_stats_file_machinery():
    import subprocess
    import sys

    code = (
        "import sys, offload_tuner\n"
        "from tests.support import total\n"
        "offload_tuner.run_kernel_sync(total, [1, 2, 3])\n"
        "print(offload_tuner.stats()['processes'].popitem()[1]['kernels'])\n"
        "print(sorted(m for m in sys.modules if m in ('offload_tuner.runtime.feedback._statsfile', 'numpy', 'sklearn', 'asyncio')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "'2': 1" in out[0] and out[1] == "[]"


def _profile_with_model(tmp_path, compute_s: float | None):
    """A profile keeping `total` inline, with (or without) a cost model that says one call takes compute_s."""
    import json

    from offload_tuner.runtime._costmodel import CostModel
    from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel

    path = write_profile_json(tmp_path / "p.json", {_key(total): 1 << 40}, executor_kind="thread")
    data = json.loads(path.read_text())
    if compute_s is not None:

        def constant(c):
            return CostModel("constant", {"c": c}, (1.0, 100000.0), 0.0, 20, True)

        data["kernels"][_key(total)]["costs"] = KernelCosts(
            constant(compute_s), constant(1e-6), constant(1e-6), constant(100.0)
        ).to_json()
        data["transport"] = {"model": TransportModel(2e-4, 0.0, 2e-5, 0.0, 2e-5, 0.0).to_json()}
        data["policy"] = PolicyKnobs(concurrency=4, workers=2, cores=2).to_json()
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("compute_s, warned", [(1e-9, 1), (None, 0)])
def test_the_runtime_says_once_when_a_kernel_no_longer_matches_its_model(tmp_path, compute_s, warned):
    import warnings

    from offload_tuner.runtime._stats import DRIFT_CHECK_EVERY

    offload_tuner.sample_every(1)
    with ThreadPoolExecutor(1) as pool:
        offload_tuner.set_executor(pool)
        offload_tuner.load_profile(_profile_with_model(tmp_path, compute_s))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3 * DRIFT_CHECK_EVERY):  # every call timed: three checks are due...
                assert offload_tuner.run_kernel_sync(total, list(range(100))) == 4950
                _stats.stats_for(total).checked_at = -1e9  # ...and none is held back by the interval
    drift = [str(w.message) for w in caught if "no longer behaves as calibrated" in str(w.message)]
    assert len(drift) == warned  # a model a thousand times off, once; no model, nothing to compare
    if warned:
        assert "inline compute at sizes 64-127" in drift[0] and "x the model" in drift[0]


def test_drift_checks_are_spaced_in_time_whatever_the_sampling():
    from offload_tuner.runtime._stats import DRIFT_CHECK_EVERY

    stats = _stats.stats_for(total)
    due = [stats.record("inline", 10, 1e-6) for _ in range(4 * DRIFT_CHECK_EVERY)]
    assert due.count(True) == 1 and due.index(True) == DRIFT_CHECK_EVERY - 1  # the first is due at once
    stats.checked_at -= _stats.DRIFT_CHECK_INTERVAL_S
    assert [stats.record("inline", 10, 1e-6) for _ in range(DRIFT_CHECK_EVERY)].count(True) == 1


@pytest.mark.parametrize(
    "value, expected, warns", [("8", 8, False), ("100", 64, False), ("0", 0, False), ("lots", 64, True)]
)
def test_the_sampling_rate_can_be_set_from_the_environment(value, expected, warns):
    import os
    import subprocess
    import sys

    code = (
        "import offload_tuner\nfrom tests.support import total\noffload_tuner.run_kernel_sync(total, [1])\n"
        "print(offload_tuner.sample_every())\n"
    )
    env = {**os.environ, "OFFLOAD_TUNER_SAMPLE_EVERY": value}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(expected)]
    assert ("OFFLOAD_TUNER_SAMPLE_EVERY='lots' is not an integer" in done.stderr) == warns
