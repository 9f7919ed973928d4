"""The discrete-event model of the reference workload (pure, seeded: no timing)."""

from __future__ import annotations

import math

from benchmarks.workload_model import THRESHOLDS, quadratic, relative_pass_times, slowdown_cost, steady_pass


def _worst_gap(rel: dict, truth: dict) -> float:
    return max(abs(rel[t][0] / truth[t][0] - 1) for t in THRESHOLDS)


def test_a_whole_warm_up_pass_reads_thresholds_as_a_long_stream_does():
    truth = relative_pass_times(400, 400, THRESHOLDS, reps=1)
    whole = relative_pass_times(24, 24, THRESHOLDS, reps=100)
    short = relative_pass_times(24, 8, THRESHOLDS, reps=100)
    assert _worst_gap(whole, truth) < 0.05
    assert _worst_gap(short, truth) > 2 * _worst_gap(whole, truth)
    # The short warm-up's error has a direction: never (nothing queued) looks slower beside the rest.
    assert short[None][0] > whole[None][0] > truth[None][0] * 0.99
    # And a whole pass is the steadier reading of the two.
    assert max(s for _, s in whole.values()) < max(s for _, s in short.values())


def test_six_takes_per_caller_read_a_longer_ring_as_a_whole_pass_does():
    truth = relative_pass_times(400, 400, THRESHOLDS, reps=1)
    for count in (45, 64):
        capped = relative_pass_times(count, 24, THRESHOLDS, reps=60)
        whole = relative_pass_times(count, count, THRESHOLDS, reps=60)
        short = relative_pass_times(count, 8, THRESHOLDS, reps=60)
        assert max(abs(capped[t][0] / whole[t][0] - 1) for t in THRESHOLDS) < 0.015
        assert _worst_gap(capped, truth) < 0.04
        assert _worst_gap(short, truth) > 1.5 * _worst_gap(capped, truth)  # 2 takes per caller stay too few


def test_never_offloading_takes_the_sum_of_its_inline_calls_whatever_the_warm_up():
    costs = quadratic()
    sizes = [8, 512, 64, 300, 20, 128]
    expected = sum(costs.inline(n) for n in sizes)
    for warmup in (4, 6):  # at least one per caller: the first takes all happen at once
        makespan, steady = steady_pass(sizes, None, costs, warmup=warmup)
        assert math.isclose(steady, expected, rel_tol=1e-9)
        assert math.isclose(makespan, expected + sum(costs.inline(n) for n in sizes[:warmup]), rel_tol=1e-9)


def test_a_2x_slowdown_costs_a_static_threshold_most_where_offloading_was_a_wash():
    losses = {ratio: slowdown_cost(ratio, reps=1)["loss"] for ratio in (0.6, 1.0, 2.0)}
    assert losses[1.0] > losses[0.6] and losses[1.0] > losses[2.0]
    # Far from the wash, the threshold best before stays best: nothing for adaptation to win.
    assert losses[2.0] < 1.02
