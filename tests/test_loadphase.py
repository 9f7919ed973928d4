"""The concurrent phase: its pure helpers, and real runs on kernels of controlled cost (generous tolerances,
no wall-time assertions)."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from offload_tuner import recommended_pool
from offload_tuner.calibration._calibrate import EFFORTS, KernelPlan, calibrate
from offload_tuner.calibration._choice import MAX_TIE_BAND, order_key
from offload_tuner.calibration._loadphase import MAX_CALLS, call_count, proposals, round_scales
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs
from offload_tuner.runtime._registry import spec_for
from tests import controlled
from tests.test_policy import power, transport, zero

KNOBS = PolicyKnobs(concurrency=4, workers=2, cores=2)
PLANS = {
    "tests.controlled:spin": KernelPlan(min_size=4, max_size=16384, workload_range=(16, 4096)),
    "tests.controlled:fat_result": KernelPlan(min_size=16, max_size=8192, workload_range=(100, 5000)),
}


# ----------------------------------------------------------------------------------------------- pure


def test_round_scales_remove_what_a_round_shares():
    # The second round ran on a machine twice as slow: after scaling, both rounds agree.
    scales = round_scales([[1.0, 2.0], [2.0, 4.0]])
    assert [1.0 * scales[0], 2.0 * scales[1]] == pytest.approx([2**0.5, 2**0.5])
    assert round_scales([[1.0], [3.0]]) == [1.0, 1.0]  # one candidate: nothing to compare against
    assert round_scales([[1.0, 5.0]]) == [1.0]


def test_each_round_gets_the_same_calls_in_a_fresh_reproducible_order():
    import random

    from offload_tuner.calibration._workload import shuffled_calls

    calls = [((n,), n) for n in range(1, 41)]
    rng_a, rng_b = random.Random(7), random.Random(7)
    first, second = shuffled_calls(calls, rng_a), shuffled_calls(calls, rng_a)
    assert sorted(first) == sorted(second) == calls  # the same calls: a candidate's work never changes
    assert first != second and first != calls  # where the largest calls fall changes round to round
    assert [shuffled_calls(calls, rng_b), shuffled_calls(calls, rng_b)] == [first, second]  # reruns agree
    assert calls == [((n,), n) for n in range(1, 41)]  # the caller's list is left alone


def test_a_run_carries_the_mix_s_own_share_of_work_at_any_count():
    from offload_tuner.calibration._workload import build_calls, mix_sizes

    lo, hi = 8, 512
    expected_n2 = (hi**2 - lo**2) / 2 / math.log(hi / lo)  # E[n^2] of the log-uniform mix: O(n^2) work
    for count in (24, 120):
        sizes = mix_sizes(lo, hi, count)
        assert sizes == sorted(sizes) and lo <= sizes[0] and sizes[-1] <= hi
        assert sum(n * n for n in sizes) / count == pytest.approx(expected_n2, rel=0.05)
        # Half the calls below the mix's median, half above: no seed can tilt a short run.
        assert sum(n < math.sqrt(lo * hi) for n in sizes) == count // 2
    a = build_calls(lambda n: (n,), lambda n: n, (lo, hi), 24, seed=1)
    b = build_calls(lambda n: (n,), lambda n: n, (lo, hi), 24, seed=2)
    assert sorted(n for _, n in a) == sorted(n for _, n in b) == mix_sizes(lo, hi, 24)  # the seed only orders
    assert [n for _, n in a] != [n for _, n in b]
    with pytest.raises(ValueError, match="count"):
        mix_sizes(lo, hi, 0)
    with pytest.raises(ValueError, match="lo <= hi"):
        mix_sizes(hi, lo, 8)
    assert set(mix_sizes(8.5, 9.4, 5)) == {9}  # never outside the range, however it rounds


def test_proposals_put_the_model_first_and_cover_both_extremes():
    got = proposals(300, None, (8, 512))
    assert got[0] == 256  # the model's choice, on the half-octave grid
    assert 0 in got and None in got
    assert {128, 512} <= set(got)  # an octave either side
    assert len(got) == len(set(got))


def test_a_loop_budget_cap_is_proposed_and_never_is_not():
    got = proposals(300, 200, (8, 512))
    assert got[:2] == [256, 181]  # the model's choice, then the cap rounded down to the grid
    assert None not in got


def test_call_count_grows_with_the_run_length_and_stays_bounded():
    costs, tr = KernelCosts(power(1e-7, 2.0), zero(), zero(), zero()), transport(150e-6, 20e-6, 20e-6)
    short = call_count(costs, tr, KNOBS, (8, 512), 0.05)
    long = call_count(costs, tr, KNOBS, (8, 512), 0.5)
    assert 2 * KNOBS.concurrency <= short < long <= MAX_CALLS


def test_a_steady_run_warms_up_six_takes_per_caller_at_most_one_pass_and_is_sized_for_both(monkeypatch):
    from offload_tuner.calibration import _loadphase
    from offload_tuner.calibration._workload import RunStats

    standard, quick = EFFORTS["standard"].load, EFFORTS["quick"].load
    assert standard.steady and not quick.steady
    callers = KNOBS.concurrency
    cap = _loadphase.WARMUP_TAKES_PER_CALLER * callers
    assert standard.warmup(cap - 4, callers) == cap - 4  # a short ring: one whole pass
    assert standard.warmup(3 * cap, callers) == cap  # a long one: the cap
    assert quick.warmup(3 * cap, callers) == 0
    for ring in (cap - 4, cap, 2 * cap, 5 * cap):  # ring() inverts ring + warmup(ring)
        assert standard.ring(ring + standard.warmup(ring, callers), callers) == ring
    seen: list[int] = []

    def fake_run(calls, callers, call, executor=None, *, warmup=0):
        seen.append(warmup)
        return RunStats(1.0, 0.0, 0.0, 0.0, 0.5, 0.5, steady_s=0.5, steady_cpu_s=0.9)

    monkeypatch.setattr(_loadphase, "run_calls", fake_run)
    for count in (24, 64):
        calls = [((n,), n) for n in range(1, count + 1)]
        for rounds, warmup in ((standard, min(count, cap)), (quick, 0)):
            seen.clear()
            runner = _loadphase._Runner(
                None,
                spec_for(controlled.spin),
                calls,
                sorted(n for _, n in calls),
                callers,
                rounds,
                seed=1,
                progress=lambda *a, **k: None,
            )
            runner.measure([0, None])
            assert seen and set(seen) == {warmup}
            # A steady run is judged by its pass (and its CPU), a plain one by the whole run.
            assert {c.makespan for c in runner.candidates()} == {0.5 if rounds.steady else 1.0}

    # Sizing: a run lasts about ``run_s`` warm-up included, so a steady run's ring plus its warm-up holds as
    # many calls as a plain run's.
    def timed_by_count(calls, callers, call, executor=None, *, warmup=0):
        return RunStats(1e-3 * (len(calls) + warmup), 0.0, 0.0, 0.0, 0.0, None)

    monkeypatch.setattr(_loadphase, "run_calls", timed_by_count)
    # The model puts a call near what the fake run measures (1 ms), so no run is too long to size.
    costs, tr = KernelCosts(power(1e-10, 2.0, 5e-4), zero(), zero(), zero()), transport(150e-6, 20e-6, 20e-6)
    for run_s in (0.1, 0.3):
        plain = _loadphase.Rounds(3, 8, run_s, 2.5, calls_per_caller=2)
        steady = _loadphase.Rounds(3, 8, run_s, 2.5, calls_per_caller=_loadphase.STEADY_CALLS_PER_CALLER)
        count = {
            r.steady: len(
                _loadphase._sized_calls(spec_for(controlled.spin), None, costs, tr, KNOBS, (16, 4096), 1, [None, 0], r)
            )
            for r in (plain, steady)
        }
        assert count[True] + steady.warmup(count[True], callers) == pytest.approx(count[False], rel=0.3)
        assert count[True] >= steady.calls_per_caller * callers


def test_sizing_is_skipped_only_where_the_model_says_the_fewest_calls_run_far_too_long(monkeypatch):
    from offload_tuner.calibration import _loadphase
    from offload_tuner.calibration._workload import RunStats

    runs: list[int] = []

    def timed_by_count(calls, callers, call, executor=None, *, warmup=0):
        runs.append(len(calls))
        return RunStats(1e-3 * (len(calls) + warmup), 0.0, 0.0, 0.0, 0.0, None)

    monkeypatch.setattr(_loadphase, "run_calls", timed_by_count)
    tr = transport(150e-6, 20e-6, 20e-6)
    steady = _loadphase.Rounds(3, 8, 0.2, 2.5, calls_per_caller=_loadphase.STEADY_CALLS_PER_CALLER)
    fewest = steady.calls_per_caller * KNOBS.concurrency
    heavy = KernelCosts(power(1e-6, 2.0), zero(), zero(), zero())  # 16 s inline at the top of 16..4096
    calls = _loadphase._sized_calls(spec_for(controlled.spin), None, heavy, tr, KNOBS, (16, 4096), 1, [None, 0], steady)
    assert len(calls) == fewest and runs == []  # nothing measured: no measurement could make the ring shorter
    # At the floor by the model's guess too, but a floor run predicted under twice the target: measured.
    medium = KernelCosts(power(3e-9, 2.0), zero(), zero(), zero())
    assert _loadphase.call_count(medium, tr, KNOBS, (16, 4096), steady.run_s, steady.calls_per_caller) <= 2 * fewest
    _loadphase._sized_calls(spec_for(controlled.spin), None, medium, tr, KNOBS, (16, 4096), 1, [None, 0], steady)
    assert runs == [fewest]
    light = KernelCosts(power(1e-10, 2.0, 5e-4), zero(), zero(), zero())
    calls = _loadphase._sized_calls(spec_for(controlled.spin), None, light, tr, KNOBS, (16, 4096), 1, [None, 0], steady)
    assert len(runs) == 2 and len(calls) > fewest  # sized by what its first run measured


def test_a_follow_up_is_measured_only_where_the_model_says_it_beats_everything_measured():
    from offload_tuner.calibration._choice import Candidate, offload_from, predicted_makespans
    from offload_tuner.calibration._loadphase import worth_measuring
    from offload_tuner.runtime._policy import LoadFactors, predict

    sizes = [16 * 2**i for i in range(9)]  # 16..4096, one call each
    mix = (16.0, 4096.0)
    # Offloading costs the loop 1.3x the compute it saves: the more is kept inline, the faster.
    costs = KernelCosts(power(1e-6, 1.0), power(1.3e-6, 1.0), zero(), zero())
    predictions = [predict(costs, transport(150e-6, 20e-6, 20e-6), KNOBS, n) for n in sizes]
    none = LoadFactors()

    def model(t: int | None) -> float:
        return predicted_makespans(predictions, [offload_from(sizes, t)], KNOBS, none)[0]

    def measured(*pairs: tuple[int | None, float], noise: float = 0.02) -> list[Candidate]:
        return [Candidate(t, 0, (m, m * (1 + noise), m * (1 - noise)), (0.0,) * 3, (1.0,) * 3) for t, m in pairs]

    def gate(proposed, candidates, capped=None):
        return worth_measuring(proposed, candidates, sizes, predictions, KNOBS, none, capped, mix)

    assert model(16) > 1.3 * model(None) and 1.05 < model(2048) / model(2896) < 1.2  # the premise
    # Where nothing was measured, the model's word is enough to look, even where it predicts no gain.
    assert gate([None], measured((16, 1.3))).measured == (None,)
    assert gate([64], measured((16, 1.0), (None, 1.0))).measured == (64,)
    # Already measured as a split of the stream (4097 splits it like never): nothing to run, and it says so.
    follow = gate([None, 4097], measured((16, 1.3), (4097, 1.0)))
    assert follow.measured == () and "like 4097" in dict(follow.skipped)[None]
    assert dict(follow.skipped)[4097] == "measured in the first batch"
    # A step from a measured candidate: measured only if the model predicts a gain beyond the noise band.
    assert gate([2896], measured((2048, 1.0))).measured == (2896,)  # ~6% faster by the model, noise 2%
    follow = gate([2896], measured((2048, 1.0), noise=0.3))  # the band (capped at 20%) swallows it
    assert follow.measured == () and "noise band" in dict(follow.skipped)[2896]
    assert gate([23], measured((16, 1.0), (None, 1.0))).measured == ()  # a step from 16, and slower
    # The loop budget's cap: above it nothing is measured (it can never be chosen); the candidates measured
    # above it do not count as "near" (they cannot be chosen either), so the cap is measured where they are.
    assert gate([256], measured((16, 1.0)), capped=128).skipped[0][1].startswith("above the loop budget's cap")
    assert gate([128], measured((181, 1.0), (0, 1.2)), capped=128).measured == (128,)
    assert gate([128], measured((181, 1.0), (91, 1.2), noise=0.3), capped=128).measured == ()


def test_a_candidate_far_behind_after_the_first_round_runs_no_more(monkeypatch):
    from offload_tuner.calibration import _loadphase
    from offload_tuner.calibration._workload import RunStats

    pace = {0: 1.0, 12: 1.02, 18: 1.6, None: 2.0}  # never is 2x the fastest: past FIRST_ROUND_RACE

    def run(calls, callers, call, executor=None, *, warmup=0):
        offloaded = sum(1 for _, n in calls if call(n))  # the "call" is the candidate's gate (make_call below)
        t = {24: 0, 13: 12, 7: 18, 0: None}[offloaded]
        return RunStats(2 * pace[t], 0, 0, 0, 0, 0, pace[t], 1.0)

    monkeypatch.setattr(_loadphase, "run_calls", run)
    calls = [((n,), n) for n in range(1, 25)]
    runner = _loadphase._Runner(
        None,
        spec_for(controlled.spin),
        calls,
        list(range(1, 25)),
        4,
        _loadphase.Rounds(3, 8, 0.2, 0.0, calls_per_caller=6),
        seed=1,
        progress=lambda *a, **k: None,
        make_call=lambda executor, fn, gate: gate,
    )
    runner.measure([0, 12, 18, None])
    rounds = {c.threshold: len(c.makespan_s) for c in runner.candidates()}
    assert rounds[None] == 1 and pace[None] >= _loadphase.FIRST_ROUND_RACE * pace[0]
    assert rounds[0] == rounds[12] == 3  # near each other: the full minimum
    assert rounds[18] >= 2  # 1.6x: left to the noise-based rule from round 2
    assert _loadphase.FIRST_ROUND_RACE > 1.6


# ------------------------------------------------------------------------------------ measured, real


@pytest.fixture(scope="module")
def profile(pool):
    specs = [spec_for(controlled.spin), spec_for(controlled.fat_result)]
    return calibrate(specs, pool, effort=EFFORTS["quick"], knobs=KNOBS, plans=PLANS)


def test_every_candidate_is_recorded_with_its_rounds(profile):
    for key in PLANS:
        entry = profile["kernels"][key]
        assert entry["status"] == "ok", entry.get("error")
        load = entry["load"]
        thresholds = [c["threshold"] for c in load["candidates"]]
        assert 0 in thresholds or any(c["offloaded"] == load["calls"] for c in load["candidates"])
        assert any(c["offloaded"] == 0 for c in load["candidates"])  # never (or its equivalent)
        for c in load["candidates"]:  # a candidate dropped as clearly worse ran fewer rounds than the rest
            assert 1 <= len(c["makespan_s"]) == len(c["lag_p99_s"]) == len(c["cpu_s"]) <= load["rounds"]
            assert all(v > 0 for v in c["makespan_s"])
        assert any(len(c["makespan_s"]) == load["rounds"] for c in load["candidates"])
        assert thresholds == sorted(thresholds, key=order_key)
        assert load["reason"].startswith("measured under load")
        assert load["warmup_calls"] == (min(load["calls"], 6 * KNOBS.concurrency) if load["steady_pass"] else 0)


def test_the_choice_is_never_beyond_the_noise_of_the_best(profile):
    for key in PLANS:
        entry = profile["kernels"][key]
        load = entry["load"]
        medians = {c["threshold"]: statistics.median(c["makespan_s"]) for c in load["candidates"]}
        best = medians[load["best"]]
        # The best is the fastest candidate the loop budget allows: anything faster was measured past it.
        over = set(load["over_budget"])
        assert all(t in over or m >= best - 1e-12 for t, m in medians.items())
        chosen = load["best"] if entry["threshold"] not in medians else entry["threshold"]
        if load["tied"]:
            assert all(medians[t] <= best * (1 + load["tie_band"]) + 1e-9 for t in load["tied"])
        # Within the noise band; off a cliff's edge, within two standard errors (_choice.CLIFF_STEP_STANDARD_ERRORS).
        reach = (
            load["tie_band"]
            if "cliff" not in load["reason"]
            else max(load["tie_band"], min(MAX_TIE_BAND, 2 * load["tie_band"]))
        )
        assert medians[chosen] <= best * (1 + reach) + 1e-9
        lo, hi = entry["interval"]
        assert order_key(lo) <= order_key(entry["threshold"]) <= order_key(hi)


def test_correcting_the_model_brings_predicted_makespans_to_the_measured_ones(profile):
    # The fit minimises the squared log error of the candidates' makespans (plus a pull towards 1), so on that
    # measure it is never worse than the isolated model. The median relative error (what `show` prints) is
    # not what it minimises: one CI run had it at 16% against the isolated model's lucky 12%.
    def rms_log_error(load, field):
        errors = [math.log(c[field] / statistics.median(c["makespan_s"])) ** 2 for c in load["candidates"]]
        return math.sqrt(sum(errors) / len(errors))

    for key in PLANS:
        load = profile["kernels"][key]["load"]
        assert rms_log_error(load, "predicted_s") <= rms_log_error(load, "isolated_predicted_s") + 1e-9
        assert load["model_error"] < 0.5


def test_a_big_result_of_small_objects_is_not_offloaded_wholesale(profile):
    """Unpickling the result costs the caller about what computing it does: offloading every call must be
    measured slower than running every call inline, and the choice must not offload most calls."""
    load = profile["kernels"]["tests.controlled:fat_result"]["load"]
    by_offloaded = {c["offloaded"]: c for c in load["candidates"]}
    median = lambda c: sorted(c["makespan_s"])[len(c["makespan_s"]) // 2]  # noqa: E731
    assert median(by_offloaded[load["calls"]]) > median(by_offloaded[0])
    threshold = profile["kernels"]["tests.controlled:fat_result"]["threshold"]
    assert threshold is None or threshold > math.sqrt(100 * 5000)  # keeps at least half the mix inline


def test_independent_quick_calibrations_fall_in_each_others_intervals():
    """Honest intervals: each run's threshold lies inside the other runs' intervals in >= 80% of pairs.
    Every run uses a fresh pool, so the executor's drift between pools is part of what is covered."""
    specs = [spec_for(controlled.spin), spec_for(controlled.fat_result)]
    runs = []
    for _ in range(5):  # 40 pairs: with 24, one pair decided a borderline pass (19/24 = 79% in 1 of 9 tries)
        pool = recommended_pool(2)
        try:
            runs.append(calibrate(specs, pool, effort=EFFORTS["quick"], knobs=KNOBS, plans=PLANS))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    inside = total = 0
    for key in PLANS:
        entries = [run["kernels"][key] for run in runs]
        assert all(e["status"] == "ok" for e in entries), [e.get("error") for e in entries]
        for a, b in itertools.permutations(entries, 2):
            lo, hi = b["interval"]
            inside += order_key(lo) <= order_key(a["threshold"]) <= order_key(hi)
            total += 1
    assert inside / total >= 0.8, [
        (key, [(r["kernels"][key]["threshold"], r["kernels"][key]["interval"]) for r in runs]) for key in PLANS
    ]


def test_the_steady_pass_times_each_call_once_and_leaves_the_drain_out():
    import asyncio

    from offload_tuner.calibration._workload import run_calls

    seen: list[int] = []

    async def call(args: tuple, n: int) -> None:
        seen.append(args[0])
        await asyncio.sleep(args[1])

    # 19 short calls, then one long one drawn last: in a plain run it finishes alone, the drain.
    calls = [((i, 0.001), 1) for i in range(19)] + [((19, 0.2), 1)]
    stats = run_calls(calls, 4, call, warmup=4)
    assert seen == list(range(20)) + [0, 1, 2, 3]  # a ring: the warm-up calls run again after the last
    assert stats.makespan_s >= 0.2 and stats.steady_s is not None
    assert stats.steady_s < 0.5 * stats.makespan_s  # the long call's drain is not in the steady pass
    assert stats.steady_cpu_s is not None and stats.steady_cpu_s >= 0

    plain = run_calls(calls, 4, call)
    assert plain.steady_s is None and plain.steady_cpu_s is None


def test_explain_says_how_each_run_was_timed():
    from offload_tuner.inspection._report_load import _steady_pass

    assert (
        _steady_pass({"steady_pass": True, "warmup_calls": 24})
        == ", each timed over a steady pass after 24 warm-up calls"
    )
    assert _steady_pass({"steady_pass": True}) == ", each timed over a steady pass"  # profiles before warmup_calls
    assert _steady_pass({"steady_pass": False, "warmup_calls": 0}) == ""


def test_explain_names_the_proposals_left_unmeasured_and_why():
    from offload_tuner.inspection._report_load import format_load

    def candidate(t):
        return {
            "threshold": t,
            "offloaded": 4,
            "makespan_s": [0.2, 0.21],
            "predicted_s": 0.2,
            "lag_p99_s": [0.01] * 2,
            "cpu_s": [0.3] * 2,
        }

    load = {
        "workload_range": [8, 512],
        "callers": 4,
        "calls": 24,
        "rounds": 2,
        "steady_pass": True,
        "noise": 0.05,
        "tie_band": 0.08,
        "candidates": [candidate(64), candidate(256)],
        "chosen": 64,
        "tied": [64, 256],
        "over_budget": [],
        "factors": {"inline": 1.0, "offload_loop": 1.2, "offload_worker": 1.1},
        "isolated_model_error": 0.3,
        "model_error": 0.05,
        "budget_cap": None,
        "isolated_model_threshold": 90,
        "model_threshold": 181,
        "reason": "flat basin",
        "follow_up": {"proposed": [181, 256], "measured": [], "skipped": [{"threshold": 181, "why": "because"}]},
    }
    assert "not measured: 181, proposed by the corrected model: because" in format_load(load, 64)
    load["follow_up"] = {"proposed": [181], "measured": [181], "skipped": []}
    assert "not measured" not in format_load(load, 64)
    del load["follow_up"]  # profiles from before the gate
    assert "not measured" not in format_load(load, 64)
