"""The policy on synthetic cost models with known answers (pure: no timing, no pool)."""

from __future__ import annotations

import math

import pytest

from offload_tuner._costmodel import CostModel
from offload_tuner._policy import (
    KernelCosts,
    PolicyKnobs,
    TransportModel,
    offload_pays,
    predict,
    threshold,
)

RANGE = (1.0, 100_000.0)


def power(a: float, b: float, c: float = 0.0) -> CostModel:
    return CostModel("power_offset", {"a": a, "b": b, "c": c}, RANGE, 0.0, 20, True)


def zero() -> CostModel:
    return CostModel("constant", {"c": 0.0}, RANGE, 0.0, 20, True)


def transport(fixed: float = 0.0, loop: float = 0.0, worker: float = 0.0) -> TransportModel:
    return TransportModel(fixed, 0.0, loop, 0.0, worker, 0.0)


def brute_force(costs, tr, knobs, top) -> int | None:
    """Independent reference: the smallest n with offloading paying at every size above it."""
    verdicts = [offload_pays(predict(costs, tr, knobs, n), knobs) for n in range(top + 1)]
    if not verdicts[-1]:
        return None
    n = top
    while n > 0 and verdicts[n - 1]:
        n -= 1
    return n


def test_linear_compute_with_fixed_overhead_has_the_analytic_threshold():
    # C = 1 us * n; offloading costs 50.25 us of loop time and as much worker time per call. With many
    # callers and 2 workers on 2 cores the stream's period is (C + 100.5 us) / 2: offload iff C > 100.5 us.
    costs = KernelCosts(power(1e-6, 1.0), zero(), zero(), zero())
    knobs = PolicyKnobs(concurrency=64, workers=2, cores=2)
    t = threshold(costs, transport(fixed=200e-6, loop=50.25e-6, worker=50.25e-6), knobs)
    assert t == 101


def test_threshold_matches_brute_force_on_a_quadratic_kernel_with_pickling():
    costs = KernelCosts(power(1e-7, 2.0), power(2e-6, 1.0, 5e-6), power(2e-6, 1.0, 5e-6), power(120.0, 1.0, 60.0))
    tr = TransportModel(180e-6, 3e-9, 40e-6, 0.5e-9, 40e-6, 0.5e-9)
    for knobs in (PolicyKnobs(4, 2, 2), PolicyKnobs(2, 2, 2), PolicyKnobs(8, 4, 4)):
        t = threshold(costs, tr, knobs, (1, 5000))
        assert t == brute_force(costs, tr, knobs, math.ceil(5000 * 1.1))
        assert t is not None and 1 < t < 5000


def test_never_when_serialisation_costs_more_than_compute():
    # Pickling the arguments costs 2 us per element, the work 1 us per element: never worth it.
    costs = KernelCosts(power(1e-6, 1.0), power(2e-6, 1.0), power(2e-6, 1.0), power(50.0, 1.0))
    assert threshold(costs, transport(150e-6, 20e-6, 20e-6), PolicyKnobs(4, 2, 2)) is None


def test_always_when_offloading_is_free():
    costs = KernelCosts(power(1e-6, 1.0, 1e-6), zero(), zero(), zero())
    assert threshold(costs, transport(), PolicyKnobs(4, 2, 2)) == 0


def test_a_lone_caller_never_gains_throughput_by_offloading():
    costs = KernelCosts(power(1e-7, 2.0), power(1e-7, 1.0), power(1e-7, 1.0), power(8.0, 1.0))
    assert threshold(costs, transport(150e-6, 20e-6, 20e-6), PolicyKnobs(1, 2, 2)) is None


def test_loop_budget_offloads_calls_that_would_block_the_loop_too_long():
    # A lone caller: throughput never pays, but with a 1.05 ms budget any call longer than 1 ms inline
    # goes out, because offloading blocks the loop for only 20 us + pickling.
    costs = KernelCosts(power(1e-7, 2.0), power(1e-7, 1.0), power(1e-7, 1.0), power(8.0, 1.0))
    knobs = PolicyKnobs(1, 2, 2, loop_budget_s=1.05e-3)
    t = threshold(costs, transport(150e-6, 20e-6, 20e-6), knobs)
    assert t == math.ceil(math.sqrt(1.05e-3 / 1e-7))  # first n with 1e-7 * n^2 > 1.05 ms: 103


def test_budget_does_not_offload_what_blocks_the_loop_more_when_offloaded():
    costs = KernelCosts(power(1e-6, 1.0), power(3e-6, 1.0), power(3e-6, 1.0), power(50.0, 1.0))
    knobs = PolicyKnobs(1, 2, 2, loop_budget_s=1e-4)
    assert threshold(costs, transport(150e-6, 20e-6, 20e-6), knobs) is None


def test_more_workers_lower_the_threshold():
    costs = KernelCosts(power(1e-7, 2.0), power(1e-6, 1.0), power(1e-6, 1.0), power(50.0, 1.0))
    tr = transport(180e-6, 60e-6, 60e-6)
    few = threshold(costs, tr, PolicyKnobs(8, 1, 1))
    many = threshold(costs, tr, PolicyKnobs(8, 4, 4))
    assert many is not None and (few is None or many < few)


def test_prediction_components_add_up():
    costs = KernelCosts(power(1e-6, 1.0), power(1e-7, 1.0), power(2e-7, 1.0), power(10.0, 1.0), 1.5)
    tr = TransportModel(100e-6, 1e-9, 10e-6, 1e-10, 20e-6, 2e-10)
    p = predict(costs, tr, PolicyKnobs(4, 2, 2), 1000)
    assert p.inline_s == pytest.approx(1e-3)
    assert p.offload_loop_s == pytest.approx(1e-4 + 10e-6 + 1e-10 * 1e4)
    assert p.offload_worker_s == pytest.approx(1.5e-3 + 2e-4 + 20e-6 + 2e-10 * 1e4)
    assert p.offload_latency_s == pytest.approx(100e-6 + 1e-5 + 1e-4 + 2e-4 + 1.5e-3)


@pytest.mark.parametrize("bad", [dict(concurrency=0), dict(workers=-1), dict(cores=1.5), dict(loop_budget_s=-1.0),
                                 dict(loop_budget_s=float("nan"))])
def test_bad_knobs_are_rejected_by_name(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        PolicyKnobs(**bad)


def test_transport_rejects_negative_or_missing_fields():
    with pytest.raises(ValueError, match="round_trip_s"):
        TransportModel(-1.0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="worker_cpu_s"):
        TransportModel.from_json({"round_trip_s": 1e-4, "round_trip_per_byte_s": 0, "caller_cpu_s": 0,
                                  "caller_cpu_per_byte_s": 0, "worker_cpu_per_byte_s": 0})
