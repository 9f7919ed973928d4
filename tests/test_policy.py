"""The policy on synthetic cost models with known answers (pure: no timing, no pool)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from offload_tuner.runtime._costmodel import CostModel
from offload_tuner.runtime._policy import (
    DEFAULT_LOOP_BUDGET_S,
    KernelCosts,
    LoadFactors,
    PolicyKnobs,
    TransportModel,
    budget_threshold,
    offload_pays,
    predict,
    stream_threshold,
    threshold,
    workload_makespan,
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


def test_stream_view_linear_compute_with_fixed_overhead_has_the_analytic_crossover():
    # C = 1 us * n; offloading costs 50.25 us of loop time and as much worker time per call. With many
    # callers and 2 workers on 2 cores the stream's period is (C + 100.5 us) / 2: offload iff C > 100.5 us.
    costs = KernelCosts(power(1e-6, 1.0), zero(), zero(), zero())
    knobs = PolicyKnobs(concurrency=64, workers=2, cores=2)
    t = stream_threshold(costs, transport(fixed=200e-6, loop=50.25e-6, worker=50.25e-6), knobs)
    assert t == 101


def test_stream_view_matches_brute_force_on_a_quadratic_kernel_with_pickling():
    costs = KernelCosts(power(1e-7, 2.0), power(2e-6, 1.0, 5e-6), power(2e-6, 1.0, 5e-6), power(120.0, 1.0, 60.0))
    tr = TransportModel(180e-6, 3e-9, 40e-6, 0.5e-9, 40e-6, 0.5e-9)
    for knobs in (PolicyKnobs(4, 2, 2), PolicyKnobs(2, 2, 2), PolicyKnobs(8, 4, 4)):
        t = stream_threshold(costs, tr, knobs, (1, 5000))
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
    assert stream_threshold(costs, transport(150e-6, 20e-6, 20e-6), PolicyKnobs(1, 2, 2, loop_budget_s=None)) is None


def test_loop_budget_offloads_calls_that_would_block_the_loop_too_long():
    # A lone caller: throughput never pays, but with a 1.05 ms budget any call longer than 1 ms inline
    # goes out, because offloading blocks the loop for only 20 us + pickling.
    costs = KernelCosts(power(1e-7, 2.0), power(1e-7, 1.0), power(1e-7, 1.0), power(8.0, 1.0))
    knobs = PolicyKnobs(1, 2, 2, loop_budget_s=1.05e-3)
    t = stream_threshold(costs, transport(150e-6, 20e-6, 20e-6), knobs)
    assert t == math.ceil(math.sqrt(1.05e-3 / 1e-7))  # first n with 1e-7 * n^2 > 1.05 ms: 103


def test_budget_does_not_offload_what_blocks_the_loop_more_when_offloaded():
    costs = KernelCosts(power(1e-6, 1.0), power(3e-6, 1.0), power(3e-6, 1.0), power(50.0, 1.0))
    knobs = PolicyKnobs(1, 2, 2, loop_budget_s=1e-4)
    assert threshold(costs, transport(150e-6, 20e-6, 20e-6), knobs) is None


def test_more_workers_lower_the_threshold():
    costs = KernelCosts(power(1e-7, 2.0), power(1e-6, 1.0), power(1e-6, 1.0), power(50.0, 1.0))
    tr = transport(180e-6, 60e-6, 60e-6)
    few = stream_threshold(costs, tr, PolicyKnobs(8, 1, 1))
    many = stream_threshold(costs, tr, PolicyKnobs(8, 4, 4))
    assert many is not None and (few is None or many < few)


def test_prediction_components_add_up():
    costs = KernelCosts(power(1e-6, 1.0), power(1e-7, 1.0), power(2e-7, 1.0), power(10.0, 1.0), 1.5)
    tr = TransportModel(100e-6, 1e-9, 10e-6, 1e-10, 20e-6, 2e-10)
    p = predict(costs, tr, PolicyKnobs(4, 2, 2), 1000)
    assert p.inline_s == pytest.approx(1e-3)
    assert p.offload_loop_s == pytest.approx(1e-4 + 10e-6 + 1e-10 * 1e4)
    assert p.offload_worker_s == pytest.approx(1.5e-3 + 2e-4 + 20e-6 + 2e-10 * 1e4)
    assert p.offload_latency_s == pytest.approx(100e-6 + 1e-5 + 1e-4 + 2e-4 + 1.5e-3)


@pytest.mark.parametrize(
    "bad",
    [
        dict(concurrency=0),
        dict(workers=-1),
        dict(cores=1.5),
        dict(loop_budget_s=-1.0),
        dict(loop_budget_s=float("nan")),
    ],
)
def test_bad_knobs_are_rejected_by_name(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        PolicyKnobs(**bad)


def test_transport_rejects_negative_or_missing_fields():
    with pytest.raises(ValueError, match="round_trip_s"):
        TransportModel(-1.0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="worker_cpu_s"):
        TransportModel.from_json(
            {
                "round_trip_s": 1e-4,
                "round_trip_per_byte_s": 0,
                "caller_cpu_s": 0,
                "caller_cpu_per_byte_s": 0,
                "worker_cpu_per_byte_s": 0,
            }
        )


# ------------------------------------------------------------------------------ the workload objective


def brute_force_workload(costs, tr, knobs, lo, hi):
    """Independent reference: try every split of the discretised workload, keep the smallest near-best."""
    from offload_tuner.runtime._policy import TIE_TOLERANCE, WORKLOAD_POINTS

    ratio = (hi / lo) ** (1 / (WORKLOAD_POINTS - 1))
    sizes = [lo * ratio**k for k in range(WORKLOAD_POINTS)]
    best_span, spans = math.inf, []
    for k in range(len(sizes) + 1):
        loop = worker = latency = 0.0
        for i, n in enumerate(sizes):
            p = predict(costs, tr, knobs, n)
            if i >= k:
                loop, worker, latency = (
                    loop + p.offload_loop_s,
                    worker + p.offload_worker_s,
                    latency + p.offload_latency_s,
                )
            else:
                loop, latency = loop + p.inline_s, latency + p.inline_s
        spans.append(max(loop, worker / knobs.workers, (loop + worker) / knobs.cores, latency / knobs.concurrency))
        best_span = min(best_span, spans[-1])
    k = next(i for i, s in enumerate(spans) if s <= best_span * (1 + TIE_TOLERANCE))
    return None if k == len(sizes) else k, sizes


# A pool whose per-call overhead (150 us caller CPU, 80 us worker CPU) is large next to small calls.
MIX_TRANSPORT = TransportModel(300e-6, 3e-9, 150e-6, 0.5e-9, 80e-6, 0.5e-9)


def test_workload_threshold_is_the_best_split_of_the_reference_workload():
    costs = KernelCosts(power(1e-7, 2.0), power(2e-6, 1.0, 5e-6), power(2e-6, 1.0, 5e-6), power(120.0, 1.0, 60.0))
    tr = MIX_TRANSPORT
    knobs = PolicyKnobs(4, 2, 2)
    k, sizes = brute_force_workload(costs, tr, knobs, 8.0, 1024.0)
    assert k is not None and 0 < k < len(sizes)
    assert threshold(costs, tr, knobs, (8.0, 1024.0)) == math.ceil(sizes[k])


def test_small_calls_stay_inline_when_large_ones_keep_the_cores_busy():
    # Per size, offloading pays from a small n; across a mix, large calls saturate both cores, so
    # the loop thread is the cheapest place for the small ones: the workload threshold is higher.
    costs = KernelCosts(power(1e-7, 2.0), power(2e-6, 1.0, 5e-6), power(2e-6, 1.0, 5e-6), power(120.0, 1.0, 60.0))
    tr = MIX_TRANSPORT
    knobs = PolicyKnobs(4, 2, 2)
    per_size = stream_threshold(costs, tr, knobs, (8, 1024))
    mixed = threshold(costs, tr, knobs, (8.0, 1024.0))
    assert per_size is not None and mixed is not None and mixed > 1.5 * per_size


def test_workload_never_and_always():
    never = KernelCosts(power(1e-6, 1.0), power(2e-6, 1.0), power(2e-6, 1.0), power(50.0, 1.0))
    assert threshold(never, transport(150e-6, 20e-6, 20e-6), PolicyKnobs(4, 2, 2)) is None
    free = KernelCosts(power(1e-6, 1.0, 1e-6), zero(), zero(), zero())
    assert threshold(free, transport(), PolicyKnobs(4, 4, 4)) == 0


def test_makespan_counts_each_resource():
    p = predict(
        KernelCosts(power(1e-3, 0.0), zero(), zero(), zero()), transport(1e-3, 0.0, 0.0), PolicyKnobs(4, 2, 2), 10
    )
    # One call of 1 ms: inline, the loop is busy 1 ms; offloaded, it takes a 1 ms round trip on top of
    # its 1 ms of work, shared by 4 callers.
    assert workload_makespan([p], PolicyKnobs(4, 2, 2), 1) == pytest.approx(1e-3)
    assert workload_makespan([p], PolicyKnobs(4, 2, 2), 0) == pytest.approx(max(0.5e-3, 0.5e-3, 2e-3 / 4))


def test_loop_budget_lowers_the_workload_threshold():
    costs = KernelCosts(power(1e-7, 2.0), power(2e-6, 1.0, 5e-6), power(2e-6, 1.0, 5e-6), power(120.0, 1.0, 60.0))
    tr = MIX_TRANSPORT
    free = threshold(costs, tr, PolicyKnobs(4, 2, 2), (8.0, 1024.0))
    budget = threshold(costs, tr, PolicyKnobs(4, 2, 2, loop_budget_s=1.05e-3), (8.0, 1024.0))
    assert free is not None and budget == math.ceil(math.sqrt(1.05e-3 / 1e-7)) < free


def test_the_default_budget_is_asyncios_slow_callback_limit():
    """By default a call predicted to block the loop past 100 ms is offloaded whenever that blocks it less,
    even where throughput alone would keep it inline; ``loop_budget_s=None`` turns that off."""
    costs = KernelCosts(power(1e-7, 2.0), power(1e-7, 1.0), power(1e-7, 1.0), power(8.0, 1.0))
    tr = transport(150e-6, 20e-6, 20e-6)
    assert PolicyKnobs().loop_budget_s == DEFAULT_LOOP_BUDGET_S == 0.1
    lone = PolicyKnobs(1, 2, 2)  # one caller: offloading never pays for throughput
    capped = budget_threshold(costs, tr, lone, (1, 5000))
    assert capped == stream_threshold(costs, tr, lone, (1, 5000))
    assert costs.compute.predict(capped) > 0.1 >= costs.compute.predict(capped - 1)  # C(n) = 1e-7 n^2
    assert stream_threshold(costs, tr, PolicyKnobs(1, 2, 2, loop_budget_s=None), (1, 5000)) is None
    assert budget_threshold(costs, tr, PolicyKnobs(1, 2, 2, loop_budget_s=None), (1, 5000)) is None
    # The workload objective never keeps a call inline past the budget's cap.
    assert threshold(costs, tr, PolicyKnobs(4, 2, 2), (1, 5000)) <= capped


def test_load_factors_scale_each_side_of_the_prediction():
    costs = KernelCosts(power(1e-6, 1.0), power(1e-7, 1.0), power(1e-7, 1.0), power(8.0, 1.0))
    tr = transport(150e-6, 20e-6, 20e-6)
    knobs = PolicyKnobs(4, 2, 2)
    base = predict(costs, tr, knobs, 1000)
    scaled = predict(dataclasses.replace(costs, load=LoadFactors(1.5, 2.0, 3.0)), tr, knobs, 1000)
    assert scaled.inline_s == pytest.approx(1.5 * base.inline_s)
    assert scaled.offload_loop_s == pytest.approx(2.0 * base.offload_loop_s)
    assert scaled.offload_worker_s == pytest.approx(3.0 * base.offload_worker_s)
    assert scaled.offload_latency_s == pytest.approx(3.0 * base.offload_latency_s)
    again = KernelCosts.from_json(dataclasses.replace(costs, load=LoadFactors(1.5, 2.0, 3.0)).to_json())
    assert again.load == LoadFactors(1.5, 2.0, 3.0)
    assert (
        KernelCosts.from_json({k: v for k, v in costs.to_json().items() if k != "load_factors"}).load == LoadFactors()
    )
    with pytest.raises(ValueError, match="load factor"):
        LoadFactors(0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="unknown"):
        LoadFactors.from_json({"inline": 1.0, "bogus": 2.0})
