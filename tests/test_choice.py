"""The measured choice (pure): grid, noise, load factors, tie rules and intervals on synthetic measurements."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from offload_tuner.calibration._choice import (
    LAG_TIE,
    MAX_TIE_BAND,
    MIN_TIE_BAND,
    Candidate,
    choose,
    fit_load_factors,
    grid_above,
    grid_below,
    lag_tie_s,
    measured_noise,
    offload_from,
    order_key,
    predicted_makespans,
    snap,
    snap_down,
    tie_band,
)
from offload_tuner.runtime._policy import LoadFactors, PolicyKnobs, Prediction

KNOBS = PolicyKnobs(concurrency=4, workers=2, cores=2)
RANGE = (8.0, 512.0)


def cand(t, makespans, lag=0.01, cpu=0.5, offloaded=0):
    rounds = len(makespans)
    lags = lag if isinstance(lag, (list, tuple)) else [lag] * rounds
    cpus = cpu if isinstance(cpu, (list, tuple)) else [cpu] * rounds
    return Candidate(t, offloaded, tuple(makespans), tuple(lags), tuple(cpus))


# ------------------------------------------------------------------------------------------------ grid


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 100, 158, 377, 1000, 7672, 123457])
def test_grid_helpers_bracket_the_size(n):
    assert grid_below(n) < n < grid_above(n) or n == 1
    assert snap_down(n) <= n < grid_above(snap_down(n))
    assert 2**-0.25 * 0.99 <= snap(n) / n <= 2**0.25 * 1.01  # nearest half-octave point


def test_snap_is_stable_for_nearby_sizes():
    # Reruns whose model thresholds differ by a few percent land on the same grid point.
    assert snap(158) == snap(165) == 181
    assert snap(377) == snap(394) == 362


def test_offload_from_indexes_a_sorted_stream():
    sizes = [8, 8, 20, 64, 300]
    assert offload_from(sizes, 0) == 0
    assert offload_from(sizes, 8) == 0
    assert offload_from(sizes, 9) == 2
    assert offload_from(sizes, 301) == 5
    assert offload_from(sizes, None) == 5


# ----------------------------------------------------------------------------------------------- noise


def test_noise_is_the_pooled_spread_of_one_run():
    quiet = [cand(t, [1.0, 1.0, 1.0]) for t in (0, 64, None)]
    assert measured_noise(quiet) == 0.0
    noisy = [cand(t, [0.95, 1.0, 1.05]) for t in (0, 64, None)]
    # range 10% of the median over d2(3) = 1.693
    assert measured_noise(noisy) == pytest.approx(0.10 / 1.693, rel=1e-6)
    # one candidate hit by a spike does not move the pooled value
    spiked = noisy[:2] + [cand(None, [1.0, 1.0, 3.0])] + [cand(128, [0.95, 1.0, 1.05])]
    assert measured_noise(spiked) == pytest.approx(0.10 / 1.693, rel=1e-6)


def test_tie_band_grows_with_noise_and_shrinks_with_rounds():
    assert tie_band(0.0, 3) == MIN_TIE_BAND
    assert tie_band(0.1, 3) > tie_band(0.1, 9) > MIN_TIE_BAND
    assert tie_band(0.05, 3, 4.0) == pytest.approx(4 * tie_band(0.05, 3))
    assert tie_band(5.0, 3) == MAX_TIE_BAND
    with pytest.raises(ValueError):
        tie_band(0.1, 0)


def test_candidate_rejects_bad_measurements():
    with pytest.raises(ValueError, match="one makespan"):
        Candidate(64, 3, (1.0, 1.0), (0.1,), (0.1, 0.1))
    with pytest.raises(ValueError, match="finite"):
        cand(64, [1.0, math.nan])
    with pytest.raises(ValueError, match="0 s"):
        cand(64, [0.0, 1.0])


# ---------------------------------------------------------------------------------------- load factors


def synthetic_predictions(sizes):
    """An O(n^2) kernel with a fixed offload overhead, as the isolated model would predict it."""
    out = []
    for n in sizes:
        compute = 1e-6 * n * n
        loop = 150e-6 + 2e-7 * n
        worker = compute + 100e-6
        latency = compute + 400e-6
        out.append(Prediction(n, compute, loop, worker, latency, compute, 0.0))
    return out


@pytest.mark.parametrize("truth", [LoadFactors(), LoadFactors(1.0, 1.5, 1.4), LoadFactors(1.1, 2.5, 1.2)])
def test_load_factors_make_predicted_makespans_match_measured(truth):
    rng = random.Random(3)
    sizes = sorted(int(math.exp(rng.uniform(math.log(8), math.log(512)))) for _ in range(80))
    predictions = synthetic_predictions(sizes)
    indices = [offload_from(sizes, t) for t in (0, 64, 128, 256, None)]
    measured = predicted_makespans(predictions, indices, KNOBS, truth)
    factors = fit_load_factors(predictions, list(zip(indices, measured)), KNOBS)
    refitted = predicted_makespans(predictions, indices, KNOBS, factors)
    for predicted, actual in zip(refitted, measured):
        assert predicted == pytest.approx(actual, rel=0.05)
    # The untouched model misses by the inflation; the fitted one does not.
    raw = predicted_makespans(predictions, indices, KNOBS, LoadFactors())
    if truth != LoadFactors():
        assert max(abs(r - m) / m for r, m in zip(raw, measured)) > 0.15


def test_load_factors_stay_near_one_without_evidence():
    sizes = list(range(8, 512, 8))
    predictions = synthetic_predictions(sizes)
    never = offload_from(sizes, None)
    # Only "never" was measured, and exactly as predicted: nothing says the offload side is off.
    (measured,) = predicted_makespans(predictions, [never], KNOBS, LoadFactors())
    factors = fit_load_factors(predictions, [(never, measured)], KNOBS)
    assert factors.inline == pytest.approx(1.0, abs=0.03)
    assert 0.9 <= factors.offload_loop <= 1.1 and 0.9 <= factors.offload_worker <= 1.1
    assert fit_load_factors(predictions, [], KNOBS) == LoadFactors()


# ---------------------------------------------------------------------------------------------- choice


def test_a_clear_winner_is_chosen_and_bounded_by_its_worse_neighbours():
    cs = [
        cand(0, [1.30, 1.31, 1.29]),
        cand(64, [1.10, 1.11, 1.09]),
        cand(128, [0.80, 0.81, 0.79]),
        cand(256, [1.00, 1.02, 0.99]),
        cand(None, [1.50, 1.52, 1.49]),
    ]
    choice = choose(cs, rounds=3, workload_range=RANGE)
    assert choice.threshold == 128 and choice.best == 128 and not choice.flat
    assert choice.interval == (grid_above(64), grid_below(256)) == (91, 181)
    assert "fastest" in choice.reason


def test_a_flat_basin_is_resolved_by_lag_then_cpu_the_same_way_whatever_the_order():
    cs = [
        cand(0, [1.02, 1.01, 1.03], lag=0.004, cpu=0.9),
        cand(64, [1.00, 1.01, 0.99], lag=0.012, cpu=0.7),
        cand(128, [0.99, 1.00, 1.01], lag=0.030, cpu=0.6),
        cand(None, [1.60, 1.61, 1.59], lag=0.500, cpu=1.6),
    ]
    choices = {choose(list(p), rounds=3, workload_range=RANGE) for p in itertools.permutations(cs)}
    assert len(choices) == 1
    (choice,) = choices
    assert choice.threshold == 0  # ties on throughput; the lowest p99 loop lag
    assert choice.flat and set(choice.tied) == {0, 64, 128}
    assert choice.interval == (0, 512)  # from always up to the last grid point before "never" (worse)
    assert "flat basin" in choice.reason and "loop lag" in choice.reason


def test_lags_a_few_milliseconds_apart_tie_and_cpu_decides():
    # The flat basin the benchmark caught: "always" had the lowest p99 lag by 3.7 ms and was measurably slower
    # than keeping small calls inline, which the CPU it spends pickling shows.
    cs = [
        cand(0, [1.00, 1.01, 0.99], lag=0.0047, cpu=0.149),
        cand(91, [0.98, 0.99, 0.97], lag=0.0084, cpu=0.130),
        cand(362, [1.60, 1.61, 1.59], lag=0.139, cpu=0.169),
    ]
    choice = choose(cs, rounds=3, workload_range=RANGE)
    assert choice.threshold == 91 and "CPU" in choice.reason
    cs[1] = cand(91, [0.98, 0.99, 0.97], lag=0.0125, cpu=0.130)  # 12.5 ms: beyond 25% + 5 ms of 4.7 ms
    assert choose(cs, rounds=3, workload_range=RANGE).threshold == 0


def test_lags_within_a_tenth_of_the_loop_budget_tie_and_cpu_decides():
    # The recorded flat basin of a big-result kernel: offloading its largest calls had 10 ms p99 against 19 ms
    # never offloading; against a 100 ms budget that is no reason to spend 40% more CPU.
    cs = [
        cand(8192, [1.40, 1.45, 1.42], lag=0.011, cpu=0.12),
        cand(11585, [1.00, 0.98, 1.01], lag=0.0101, cpu=0.089),
        cand(None, [1.02, 0.99, 1.03], lag=0.0188, cpu=0.062),
    ]
    with_budget = choose(cs, rounds=3, loop_budget_s=0.1, workload_range=(64.0, 16384.0))
    assert with_budget.threshold is None and "CPU" in with_budget.reason
    # Without a budget, or with a tight one, the 8.7 ms still decides.
    assert choose(cs, rounds=3, workload_range=(64.0, 16384.0)).threshold == 11585
    assert choose(cs, rounds=3, loop_budget_s=0.03, workload_range=(64.0, 16384.0)).threshold == 11585
    assert lag_tie_s(None) == LAG_TIE[1] and lag_tie_s(0.01) == LAG_TIE[1] and lag_tie_s(0.2) == pytest.approx(0.02)


def test_equal_lags_fall_to_cpu_then_to_the_fewest_offloads():
    cs = [
        cand(0, [1.0, 1.0, 1.0], lag=0.004, cpu=0.9),
        cand(64, [1.0, 1.0, 1.0], lag=0.0041, cpu=0.6),
        cand(128, [1.0, 1.0, 1.0], lag=0.0042, cpu=0.61),
        cand(256, [1.0, 1.0, 1.0], lag=0.0043, cpu=0.8),
    ]
    assert choose(cs, rounds=3, workload_range=RANGE).threshold == 128
    assert "CPU" in choose(cs, rounds=3, workload_range=RANGE).reason


def test_never_worse_than_the_best_beyond_the_measured_noise():
    rng = random.Random(11)
    for _ in range(200):
        cs = []
        for t in (0, 32, 64, 128, 256, None):
            base = rng.uniform(0.5, 1.5)
            cs.append(
                cand(
                    t,
                    [base * rng.uniform(0.95, 1.05) for _ in range(3)],
                    lag=rng.uniform(0, 0.1),
                    cpu=rng.uniform(0.2, 1.0),
                )
            )
        choice = choose(cs, rounds=3, workload_range=RANGE)
        best = min(c.makespan for c in cs)
        chosen = next(c for c in cs if c.threshold == choice.threshold)
        # Within the noise band; off a cliff's edge, within two standard errors (and never beyond MAX_TIE_BAND).
        band = choice.band if "cliff" not in choice.reason else max(choice.band, min(MAX_TIE_BAND, 2 * choice.band))
        assert chosen.makespan <= best * (1 + band) + 1e-12


def test_a_lone_winner_on_a_cliff_s_edge_gives_way_to_the_nearest_candidate_within_two_standard_errors():
    # Campaign 10's second calibration of cluster_observations: 362 won by 10% over 256 in 3 rounds, next to
    # 512 at 2.1x; the benchmark read 362 1.17x the oracle and 256 1.02x.
    cs = [
        cand(8, [0.1463, 0.1577, 0.1620]),
        cand(16, [0.1674, 0.1552, 0.1511]),
        cand(256, [0.1159, 0.1243, 0.1374]),
        cand(362, [0.1125, 0.1050, 0.1217]),
        cand(512, [0.2178, 0.2607]),
    ]
    choice = choose(cs, rounds=3, workload_range=RANGE)
    assert choice.best == 362 and choice.tied == (362,)
    assert choice.threshold == 256 and "cliff" in choice.reason and "512" in choice.reason
    lo, hi = choice.interval
    assert order_key(lo) <= 256 <= order_key(hi)
    # The nearest below within reach, skipping one that is not: 131072 lies between but was measured far slower.
    spikes = [
        cand(0, [0.0785, 0.0747, 0.0694]),
        cand(92682, [0.0748, 0.0716, 0.0783]),
        cand(131072, [0.0830, 0.0907]),
        cand(185364, [0.0802, 0.0649, 0.0631]),
        cand(None, [0.1036, 0.1144]),
    ]
    assert choose(spikes, rounds=3, workload_range=(1024, 262144)).threshold == 92682


def test_no_step_off_a_gentle_slope_nor_without_a_candidate_close_enough_below():
    # 128 is 6% slower than 256: within two standard errors (9%), not one (4.6%); only a cliff moves the choice.
    for above, chosen in ((1.40, 256), (1.49, 256), (1.50, 128), (2.0, 128)):
        cs = [cand(128, [1.10, 1.06, 1.02]), cand(256, [1.04, 1.00, 0.96]), cand(362, [above] * 3)]
        choice = choose(cs, rounds=3, workload_range=RANGE)
        assert choice.best == 256 and choice.tied == (256,)
        assert choice.threshold == chosen, (above, choice.reason)
    # A candidate below ruled out by its loop lag is not stepped to.
    cs = [cand(128, [1.10, 1.06, 1.02], lag=0.2), cand(256, [1.04, 1.00, 0.96]), cand(362, [2.0] * 3)]
    assert choose(cs, rounds=3, workload_range=RANGE, loop_budget_s=0.1).threshold == 256
    alone = [cand(128, [1.30, 1.31, 1.29]), cand(256, [1.00, 1.01, 0.99]), cand(None, [2.0, 2.01, 1.99])]
    choice = choose(alone, rounds=3, workload_range=RANGE)
    assert choice.threshold == 256 and "cliff" not in choice.reason  # nothing below within two standard errors
    top = [cand(0, [1.30, 1.31, 1.29]), cand(None, [1.00, 1.01, 0.99])]
    assert choose(top, rounds=3, workload_range=RANGE).threshold is None  # never has nothing above it


def test_the_loop_budget_rules_out_faster_candidates_above_the_cap():
    cs = [
        cand(0, [1.2, 1.2, 1.2]),
        cand(128, [1.1, 1.1, 1.1]),
        cand(362, [0.9, 0.9, 0.9]),
        cand(None, [0.8, 0.8, 0.8]),
    ]
    unbudgeted = choose(cs, rounds=3, workload_range=RANGE)
    assert unbudgeted.threshold is None
    budgeted = choose(cs, rounds=3, budget_cap=256, capped=True, workload_range=RANGE)
    assert budgeted.threshold == 128 and budgeted.best == 128
    assert budgeted.interval[1] is not None and budgeted.interval[1] <= 256
    assert "loop budget" in budgeted.reason


def test_a_candidate_measured_past_the_loop_budget_is_ruled_out_when_another_is_within_it():
    # The model's cap (362) is eligible, but under load the heartbeat waited 112 ms at p99 there: the
    # measurement decides (the recorded case: chosen at 362, benchmarked 1.29x the oracle and 130 ms p99).
    cs = [
        cand(8, [0.212, 0.210, 0.215], lag=0.006),
        cand(16, [0.204, 0.206, 0.203], lag=0.006),
        cand(362, [0.177, 0.176, 0.180], lag=[0.084, 0.113, 0.112]),
    ]
    model_only = choose(cs, rounds=3, budget_cap=362, capped=True, workload_range=RANGE)
    assert model_only.threshold == 362
    measured = choose(cs, rounds=3, budget_cap=362, capped=True, loop_budget_s=0.1, workload_range=RANGE)
    assert measured.threshold in (8, 16) and measured.best == 16 and measured.over_budget == (362,)
    # The ruled-out candidate bounds the interval like one measured worse: up to the grid point below it
    # (256; nothing between 16 and 362 was measured, so nothing there is excluded).
    assert measured.interval[1] == 256
    assert "past the 100 ms budget rules out 362" in measured.reason
    # None within the budget: nothing to prefer, the model's eligibility stands, and the reason says so.
    slow = [cand(t, c.makespan_s, lag=0.2) for t, c in zip((8, 16, 362), cs)]
    all_over = choose(slow, rounds=3, budget_cap=362, capped=True, loop_budget_s=0.1, workload_range=RANGE)
    assert all_over.threshold == 362 and all_over.over_budget == ()
    assert "every candidate measured past the 100 ms budget" in all_over.reason
    # No budget: lag never rules anything out.
    assert choose(cs, rounds=3, workload_range=RANGE).threshold == 362


def test_intervals_cover_reruns_of_a_noisy_flat_basin():
    """Simulated reruns: a true makespan curve over thresholds, each rerun measuring a few candidates around
    a noisy model proposal. Each rerun's choice must fall in the others' intervals in >= 80% of pairs."""

    def true_makespan(t):
        x = math.log2(max(t, 4)) if t is not None else 10.0  # never = beyond the range
        return 1.0 + 0.02 * (x - 6.5) ** 2  # a flat bottom around T ~ 90, steep at the edges

    rng = random.Random(5)
    runs = []
    for _ in range(6):
        proposal = snap(90 * rng.uniform(0.5, 2.0))
        ts = sorted(
            {0, None, proposal, snap(proposal / 2), snap(proposal * 2)}, key=lambda t: math.inf if t is None else t
        )
        cs = [
            cand(
                t,
                [true_makespan(t) * rng.gauss(1, 0.03) for _ in range(3)],
                lag=0.001 * (t if t is not None else 4096) ** 0.5,
            )
            for t in ts
        ]
        runs.append(choose(cs, rounds=3, workload_range=RANGE))

    def inside(t, interval):
        lo, hi = interval
        key = lambda v: math.inf if v is None else v  # noqa: E731
        return key(lo) <= key(t) <= key(hi)

    pairs = [(a, b) for a, b in itertools.permutations(runs, 2)]
    covered = sum(inside(a.threshold, b.interval) for a, b in pairs)
    assert covered / len(pairs) >= 0.8


def test_few_rounds_give_a_looser_upper_bound_on_the_noise():
    from offload_tuner.calibration._choice import noise_upper_bound

    assert noise_upper_bound(0.1, 3) == pytest.approx(0.1 * (3 / 0.577) ** 0.5, rel=0.02)  # chi2_0.1(3) = 0.584
    assert noise_upper_bound(0.1, 3) > noise_upper_bound(0.1, 12) > noise_upper_bound(0.1, 200) > 0.1
    assert noise_upper_bound(0.1, 0) == pytest.approx(0.3)


def test_a_candidate_splitting_the_stream_like_never_or_always_stands_for_them_in_the_interval():
    """A quick run's stream of 40 calls may hold none above 4096 of a mix up to 5000: 4096 then offloads nothing,
    one measurement for 4096 and never alike, and a rerun whose stream did hold such calls may choose never."""
    cs = [cand(0, [0.70, 0.72, 0.71], offloaded=40), cand(4096, [0.31, 0.32, 0.30], offloaded=0)]
    assert choose(cs, rounds=3, workload_range=(100.0, 5000.0), calls=40).interval == (grid_above(100), None)
    assert choose(cs, rounds=3, workload_range=(100.0, 5000.0)).interval == (grid_above(100), 4096)  # stream unknown
    # Offloading all 40 like "always" does: the interval reaches always.
    cs = [cand(128, [0.30, 0.31, 0.30], offloaded=40), cand(None, [0.70, 0.71, 0.72], offloaded=0)]
    assert choose(cs, rounds=3, workload_range=(100.0, 5000.0), calls=40).interval == (0, grid_below(grid_above(5000)))
    # A candidate that offloads a few calls is not stretched: the stream told it apart from never.
    cs = [cand(0, [0.70, 0.72, 0.71], offloaded=40), cand(4096, [0.31, 0.32, 0.30], offloaded=2)]
    assert choose(cs, rounds=3, workload_range=(100.0, 5000.0), calls=40).interval == (grid_above(100), 4096)


def test_the_lanes_are_compared_through_the_all_inline_run_each_phase_measured():
    from offload_tuner.calibration._choice import thread_lane_wins

    process = [cand(0, [0.9] * 3), cand(4096, [0.8] * 3), cand(None, [1.0] * 3)]
    # The machine ran 20% slower during the thread phase: its never reads 1.2, its best 0.72 (0.60x never).
    threads = [cand(0, [0.80] * 3), cand(2048, [0.72] * 3), cand(None, [1.2] * 3)]
    wins, how = thread_lane_wins(process, 4096, threads, 2048)
    assert wins and "0.60x" in how and "0.80x" in how, "0.72 s > 0.8 s raw, but 0.60x never against 0.80x"
    slower = [cand(2048, [1.1] * 3), cand(None, [1.2] * 3)]
    assert thread_lane_wins(process, 4096, slower, 2048)[0] is False
    assert thread_lane_wins(process, 4096, threads, None) == (
        False,
        "the thread lane's own phase measured never sending a call there as best",
    )
    no_anchor = [cand(0, [0.9] * 3), cand(4096, [0.8] * 3)]
    assert thread_lane_wins(no_anchor, 4096, threads, 2048)[0] is True  # raw: 0.72 s against 0.8 s
    with pytest.raises(ValueError, match="chosen"):
        thread_lane_wins(process, 512, threads, 2048)
    # As fast, but its p99 loop lag 40 ms against 10 ms: past the lag tie (25% + 10 ms at a 100 ms budget).
    laggy = [cand(2048, [0.72] * 3, lag=0.04), cand(None, [1.2] * 3)]
    assert thread_lane_wins(process, 4096, laggy, 2048, 0.1)[0] is False
    assert thread_lane_wins(process, 4096, [cand(2048, [0.72] * 3, lag=0.02), cand(None, [1.2] * 3)], 2048, 0.1)[0]
    # 0.84x never against 0.80x: within a 20% tie band the lanes are as fast as the measurement can tell, and
    # the lane that pickles nothing wins; past the band the process lane keeps it.
    close = [cand(2048, [1.008] * 3), cand(None, [1.2] * 3)]
    assert thread_lane_wins(process, 4096, close, 2048)[0] is False
    assert thread_lane_wins(process, 4096, close, 2048, band=0.2)[0] is True
    assert thread_lane_wins(process, 4096, slower, 2048, band=0.1)[0] is False  # 0.92x against 0.80x x 1.1


def with_latency(c: Candidate, latency: float) -> Candidate:
    return Candidate(c.threshold, c.offloaded, c.makespan_s, c.lag_p99_s, c.cpu_s, (latency,) * len(c.makespan_s))


def test_under_the_latency_objective_the_lanes_are_compared_by_p99_call_latency():
    from offload_tuner.calibration._choice import thread_lane_wins

    # By makespan the thread lane wins (0.60x never against 0.80x); by p99 call latency it loses (0.90x against
    # 0.50x): under the latency objective, which each lane's choice and tie band were made on, the latter decides.
    process = [with_latency(cand(4096, [0.8] * 3), 0.05), with_latency(cand(None, [1.0] * 3), 0.10)]
    threads = [with_latency(cand(2048, [0.72] * 3), 0.09), with_latency(cand(None, [1.2] * 3), 0.10)]
    assert thread_lane_wins(process, 4096, threads, 2048)[0] is True
    wins, how = thread_lane_wins(process, 4096, threads, 2048, objective="latency")
    assert not wins and "0.90x the all-inline p99 call latency in threads" in how and "0.50x" in how
    # Reversed latencies: the thread lane wins by latency although it loses by makespan.
    slower = [with_latency(cand(2048, [1.1] * 3), 0.04), with_latency(cand(None, [1.2] * 3), 0.10)]
    assert thread_lane_wins(process, 4096, slower, 2048)[0] is False
    assert thread_lane_wins(process, 4096, slower, 2048, objective="latency")[0] is True
    # A run without recorded latencies (an older profile's process phase): the makespan decides, as before.
    unrecorded = [cand(4096, [0.8] * 3), cand(None, [1.0] * 3)]
    wins, how = thread_lane_wins(unrecorded, 4096, threads, 2048, objective="latency")
    assert wins and "makespan" in how


def test_under_the_latency_objective_latencies_within_a_millisecond_tie_as_the_latency_rule_ties_them():
    """The helper's case: p99 3.0 ms never in both lanes, 2.0 ms chosen in processes, 2.6 ms in threads. By ratio
    the thread lane loses (0.87x against 0.67x); 0.6 ms apart is within the latency rule's 1 ms tie, so it wins, as
    "as good as the measurement can tell" says. 2 ms apart it still loses, anchored or not."""
    from offload_tuner.calibration._choice import thread_lane_wins

    process = [with_latency(cand(4096, [0.8] * 3), 0.0020), with_latency(cand(None, [1.0] * 3), 0.0030)]
    threads = [with_latency(cand(2048, [0.7] * 3), 0.0026), with_latency(cand(None, [1.0] * 3), 0.0030)]
    assert thread_lane_wins(process, 4096, threads, 2048, band=0.05, objective="latency")[0] is True
    far = [with_latency(cand(2048, [0.7] * 3), 0.0040), with_latency(cand(None, [1.0] * 3), 0.0030)]
    assert thread_lane_wins(process, 4096, far, 2048, band=0.05, objective="latency")[0] is False
    assert thread_lane_wins(process[:1], 4096, threads[:1], 2048, band=0.05, objective="latency")[0] is True
    assert thread_lane_wins(process[:1], 4096, far[:1], 2048, band=0.05, objective="latency")[0] is False
