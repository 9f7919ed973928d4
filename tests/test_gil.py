"""The thread lane's evidence: the GIL hold measured in a thread (controlled kernels, generous tolerances), the
pure rules that turn it into a threshold, and a quick calibration that records both."""

from __future__ import annotations

import json

import pytest

import offload_tuner
from offload_tuner.calibration._calibrate import EFFORTS, KernelPlan, calibrate
from offload_tuner.calibration._gil import gil_hold, point_sizes, thread_fixed_cost, thread_section
from offload_tuner.runtime._policy import GIL_RELEASING_MAX, THREAD_MARGIN, KernelCosts, PolicyKnobs, thread_threshold
from offload_tuner.runtime._profile import validate_profile
from offload_tuner.runtime._registry import spec_for
from tests import controlled
from tests.test_policy import power, zero

# ----------------------------------------------------------------------------------------------- pure


def linear_costs(per_element_s: float) -> KernelCosts:
    """compute(n) = per_element_s * n; nothing else (the thread lane reads only compute)."""
    return KernelCosts(power(per_element_s, 1.0), zero(), zero(), zero())


def test_the_thread_lane_starts_where_the_loop_saves_twice_the_hand_off():
    costs = linear_costs(1e-6)  # 1 us per element
    fixed = 50e-6
    # Saved per call: (1 - hold) * n us; it must pass THREAD_MARGIN * 50 us.
    assert thread_threshold(costs, 0.0, fixed, (1, 10_000)) == pytest.approx(THREAD_MARGIN * 50 + 1, abs=1)
    assert thread_threshold(costs, 0.2, fixed, (1, 10_000)) == pytest.approx(THREAD_MARGIN * 50 / 0.8 + 1, abs=1)
    assert thread_threshold(costs, GIL_RELEASING_MAX + 0.01, fixed, (1, 10_000)) is None, "holds the GIL: never"
    assert thread_threshold(costs, 0.0, 1.0, (1, 10_000)) is None, "never pays within the range"
    with pytest.raises(ValueError, match="gil_hold"):
        thread_threshold(costs, 1.5, fixed)


def test_the_threshold_stays_above_sizes_measured_holding_the_gil():
    costs = linear_costs(1e-6)
    releasing_everywhere = thread_section([(64, 0.02), (4096, 0.01)], costs, 50e-6, (1, 10_000))
    assert releasing_everywhere["gil_hold"] == 0.01
    assert releasing_everywhere["threshold"] == thread_threshold(costs, 0.01, 50e-6, (1, 10_000)) == 102
    # numpy-like: Python overhead holds the GIL at small sizes; nothing says 101-4095 release it.
    small_holds = thread_section([(64, 0.8), (4096, 0.01)], costs, 50e-6, (1, 10_000))
    assert small_holds["threshold"] == 4096
    holding = thread_section([(64, 0.9), (4096, 0.9)], costs, 50e-6, (1, 10_000))
    assert holding["gil_hold"] == 0.9 and holding["threshold"] is None
    assert holding["points"] == [[64, 0.9], [4096, 0.9]] and holding["fixed_s"] == 50e-6
    with pytest.raises(ValueError, match="point"):
        thread_section([], costs, 50e-6, (1, 10_000))


def test_point_sizes_walk_down_the_ladder_an_octave_and_more_apart():
    assert point_sizes([1, 2, 4, 8, 16, 32, 64, 128, 256, 512]) == [512, 64, 8]
    assert point_sizes([10, 20]) == [20]
    assert point_sizes([]) == []


# ---------------------------------------------------------------------------------------- measurement


def test_pure_python_holds_the_gil_and_a_kernel_that_sleeps_does_not():
    spin_args = controlled._payload(2000)  # ~ms of pure Python per call
    nap_args = controlled._payload(1000)  # ~2 ms asleep per call, the GIL released
    held = gil_hold(controlled.spin, spin_args, window_s=0.05, repeats=3)
    released = gil_hold(controlled.nap, nap_args, window_s=0.05, repeats=3)
    assert held > 0.5, held  # ~0.95 measured on the development VM
    assert released < GIL_RELEASING_MAX, released  # ~0.01
    assert 0 < thread_fixed_cost(50) < 0.05
    with pytest.raises(ValueError, match="window_s"):
        gil_hold(controlled.spin, spin_args, window_s=0)


def test_a_quick_calibration_records_the_thread_lane_and_the_runtime_follows_it(tmp_path):
    plans = {
        spec_for(controlled.spin).key: KernelPlan(min_size=4, max_size=4096, workload_range=(16, 4096)),
        spec_for(controlled.nap).key: KernelPlan(min_size=4, max_size=16384, workload_range=(64, 16384)),
    }
    pool = offload_tuner.recommended_pool(2)
    try:
        profile = calibrate(
            [spec_for(controlled.spin), spec_for(controlled.nap)],
            pool,
            effort=EFFORTS["quick"],
            knobs=PolicyKnobs(concurrency=4, workers=2, cores=2),
            plans=plans,
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert 0 < profile["thread"]["fixed_s"] < 0.05
    spin, nap = (profile["kernels"][key] for key in plans)
    assert spin["thread"]["gil_hold"] > GIL_RELEASING_MAX and spin["thread"]["threshold"] is None
    assert nap["thread"]["gil_hold"] <= GIL_RELEASING_MAX and nap["thread"]["threshold"] is not None
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    validate_profile(json.loads(path.read_text()))
    threads = __import__("concurrent.futures").futures.ThreadPoolExecutor(2)
    processes = offload_tuner.recommended_pool(1)
    try:
        offload_tuner.set_executors({"process": processes, "thread": threads})
        offload_tuner.load_profile(path, strict=True)
        big = controlled._payload(16384)
        assert offload_tuner.decide(controlled.nap, *big).backend == "thread"
        assert offload_tuner.decide(controlled.spin, *controlled._payload(4096)).backend in ("process", "inline")
        assert offload_tuner.run_kernel_sync(controlled.nap, *big) == len(big[0])
    finally:
        threads.shutdown()
        processes.shutdown()
