"""Online adaptation: thresholds re-derived in-process from synthetic statistics, the hysteresis, the
exploration share, and that adaptation never fails a call."""

from __future__ import annotations

import json
import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

import offload_tuner
from offload_tuner.runtime import _stats
from offload_tuner.runtime._policy import predict
from offload_tuner.runtime._registry import spec_for
from offload_tuner.runtime.feedback import _adapt
from offload_tuner.runtime.feedback._adapt import (
    COOLDOWN_WINDOWS,
    EXTENDED_PAIRS,
    MAX_STEP,
    MAX_TRIAL_WINDOWS,
    MIN_NEW_CALLS,
    TRIAL_PAIRS,
    TRIAL_WINDOWS,
    limited,
)
from tests.support import total, write_profile_json
from tests.test_retune import COSTS, KNOBS, TRANSPORT, WORKLOAD, profile_data

KEY = spec_for(total).key


def install_profile(tmp_path, pool, **override) -> int:
    """The synthetic profile of test_retune, for `total` (size = len), on a thread pool; its threshold."""
    data = profile_data()
    entry = {**data["kernels"].pop(next(iter(data["kernels"]))), **override}
    path = write_profile_json(tmp_path / "p.json", {KEY: entry["threshold"]}, executor_kind="thread")
    written = json.loads(path.read_text())
    written["kernels"][KEY].update({k: v for k, v in entry.items() if k != "threshold"})
    written.update({k: data[k] for k in ("policy", "transport")})
    path.write_text(json.dumps(written))
    offload_tuner.set_executor(pool)
    offload_tuner.load_profile(path)
    return entry["threshold"]


def feed(sizes: list[int], threshold: int, inline_factor: float = 1.0, loop_factor: float = 1.0) -> None:
    """Count these calls of `total` as the runtime would at ``threshold`` and time each as the model says,
    scaled: the statistics a service with that kernel would gather."""
    stats = _stats.stats_for(total)
    for n in sizes:
        b = _stats.bucket_of(n)
        p = predict(COSTS, TRANSPORT, KNOBS, n)
        if n >= threshold:
            stats.offload[b] += 1
            stats.record("loop", n, p.offload_loop_s * loop_factor)
        else:
            stats.inline[b] += 1
            stats.record("inline", n, p.inline_s * inline_factor)


def log_spread(lo: int, hi: int, count: int) -> list[int]:
    return [int(lo * (hi / lo) ** ((i + 0.5) / count)) for i in range(count)]


@pytest.mark.parametrize(
    "current, proposal, expected",
    [
        (1000, 100, 500),
        (1000, 700, 700),
        (1000, 5000, 2000),
        (1000, 0, 500),
        (0, 50, 2),
        (1, 0, 0),
        (1000, None, 2000),  # towards never, 2x at a time...
        (40_000, None, None),  # ...and never once past every size seen (top 65536)
        (None, 100, 32768),
        (None, 50_000, 50_000),  # from never: the top half of the sizes seen first
        (None, None, None),
        (None, 65536, None),
        (200_000, 100, 32768),
        (200_000, 50_000, 50_000),  # above every size seen: from the top, as from never
        (200_000, 200_000, 200_000),
        (200_000, None, 200_000),
        (None, 70_000, None),  # the same decisions: no step
        (1000, 1000, 1000),
    ],
)
def test_a_step_moves_a_threshold_at_most_twofold(current, proposal, expected):
    assert limited(current, proposal, 65536) == expected


def in_force() -> int | None:
    return offload_tuner.decide(total, [0]).threshold


def run_windows(mix: list[int], windows: int, pace, inline_factor: float = 1.0) -> list[int | None]:
    """``windows`` windows of the calls ``mix``, each counted and timed under the threshold in force, each lasting
    ``pace(threshold)`` seconds per call: the world's answer to every trial. The thresholds in force after each."""
    now = 1000.0
    _stats.stats_for(total)  # the kernel's statistics exist (its first call would create them)
    _adapt._adapter.step(now)  # the first look opens a window
    out = []
    for _ in range(windows):
        threshold = in_force()
        feed(mix, 1 << 62 if threshold is None else threshold, inline_factor)
        now += pace(threshold) * len(mix)
        _adapt._adapter.step(now)
        out.append(in_force())
    return out


def offloading_pays(threshold: int | None) -> float:
    """A world where every halving of the threshold serves the work 10% faster."""
    return 1.0 if threshold is None else 0.9 ** -math.log2(max(1, threshold) / 65536)


def offloading_hurts(threshold: int | None) -> float:
    return 1.0 / offloading_pays(threshold)


FULL = log_spread(*map(int, WORKLOAD), 400)


def test_a_proposal_is_tried_window_by_window_and_kept_when_measured_faster(tmp_path):
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        path = run_windows(FULL, TRIAL_WINDOWS, offloading_pays, inline_factor=3.0)
    candidate = path[0]
    assert t0 / MAX_STEP <= candidate < t0, "a kernel 3x slower inline than its model: offload more, 2x at most"
    assert path[:-1] == [candidate, t0] * TRIAL_PAIRS, "the arms alternate, the incumbent's window last"
    assert path[-1] == candidate, "measured faster in every pair: kept"
    reason = offload_tuner.decide(total, [0]).reason
    assert reason.startswith("adapted at") and "(accepted)" in reason and f"-> {candidate} (profile: {t0})" in reason
    assert "pace" in reason and "inline x3.00" in reason


def test_a_proposal_measured_slower_is_dropped_and_not_tried_again_for_a_while(tmp_path):
    """The model says offload more (inline looks 3x slower); under this load offloading more is slower."""
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        path = run_windows(FULL, TRIAL_WINDOWS + COOLDOWN_WINDOWS, offloading_hurts, inline_factor=3.0)
    assert path[0] != t0, "a trial ran"
    assert path[TRIAL_WINDOWS - 1 :] == [t0] * (COOLDOWN_WINDOWS + 1), "the incumbent stays; no trial in the cool-down"
    reason = offload_tuner.decide(total, [0]).reason
    assert "(rejected)" in reason and "kept:" in reason


def noisy(pace, slow_windows: set[int], factor: float = 1.6):
    """``pace`` with these windows (0-based, counted from the trial's first) ``factor`` slower: a hiccup."""
    windows = iter(range(1000))
    return lambda t: pace(t) * (factor if next(windows) in slow_windows else 1.0)


def test_a_better_candidate_that_lost_one_pair_to_a_hiccup_gets_more_pairs_and_is_kept(tmp_path):
    """The candidate's second window (trial window 4) hit a hiccup: better by the median, not in every pair."""
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        path = run_windows(FULL, MAX_TRIAL_WINDOWS, noisy(offloading_pays, {3}), inline_factor=3.0)
    candidate = path[0]
    assert path[:-1] == [candidate, t0] * EXTENDED_PAIRS, "the trial went on, the arms still alternating"
    assert path[-1] == candidate
    reason = offload_tuner.decide(total, [0]).reason
    assert "(accepted)" in reason and f"median of {EXTENDED_PAIRS} paired windows" in reason and "slower in 1" in reason


def test_an_extended_trial_that_keeps_losing_pairs_is_dropped(tmp_path):
    """Two hiccups in the candidate's windows: two losses of seven are one too many."""
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        path = run_windows(FULL, MAX_TRIAL_WINDOWS + 1, noisy(offloading_pays, {3, 9}), inline_factor=3.0)
    assert path[TRIAL_WINDOWS - 1] == path[0] != t0, "extended after the first look"
    assert path[MAX_TRIAL_WINDOWS - 1 :] == [t0, t0], "dropped at the second look, then the cool-down"
    assert "(rejected)" in offload_tuner.decide(total, [0]).reason


def test_a_tie_keeps_the_incumbent(tmp_path):
    """A lightly loaded service serves its work at the pace it arrives, whatever the threshold."""
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        path = run_windows(FULL, TRIAL_WINDOWS, lambda t: 1.0, inline_factor=3.0)
    assert path[0] != t0 and path[-1] == t0
    assert "(rejected)" in offload_tuner.decide(total, [0]).reason


def test_a_steady_trend_does_not_pass_for_a_gain(tmp_path):
    """Traffic ramping up: every window serves its work 4% faster than the one before, whatever the threshold."""
    windows = iter(range(1000))
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        path = run_windows(FULL, TRIAL_WINDOWS, lambda t: 0.96 ** next(windows), inline_factor=3.0)
    assert path[0] != t0 and path[-1] == t0


def test_accepted_trials_follow_a_kernel_that_got_slower_step_by_step(tmp_path):
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        path = run_windows(FULL, 4 * TRIAL_WINDOWS, offloading_pays, inline_factor=3.0)
    accepted = path[TRIAL_WINDOWS - 1 :: TRIAL_WINDOWS]
    assert accepted[0] < t0 and accepted == sorted(accepted, reverse=True) and len(set(accepted)) >= 2
    assert all(b >= a / MAX_STEP for a, b in zip([t0] + accepted, accepted))


def test_a_kernel_calibrated_never_to_pay_tries_offloading_its_largest_calls_once_it_got_slower(tmp_path):
    with ThreadPoolExecutor(1) as pool:
        assert install_profile(tmp_path, pool, threshold=None) is None
        path = run_windows(FULL, TRIAL_WINDOWS, offloading_pays, inline_factor=4.0)
    assert path[-1] is not None and WORKLOAD[1] / MAX_STEP <= path[-1] < 2 * WORKLOAD[1]
    assert offload_tuner.decide(total, list(range(70_000))).offload
    assert "threshold never -> " in offload_tuner.decide(total, [0]).reason


def test_a_kernel_that_behaves_as_calibrated_is_left_alone(tmp_path):
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        assert run_windows(FULL, 6, offloading_pays) == [t0] * 6
        assert offload_tuner.decide(total, [0]).reason.startswith("profile")


def test_a_window_needs_enough_new_calls(tmp_path):
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)  # offloaded calls timed as modelled, inline ones 3x: a busy loop
        _stats.stats_for(total)
        _adapt._adapter.step(0.0)
        feed(log_spread(*map(int, WORKLOAD), MIN_NEW_CALLS - 1), t0, inline_factor=3.0)
        assert _adapt._adapter.step(1.0) == []
        feed([int(WORKLOAD[0])], t0, inline_factor=3.0)  # the MIN_NEW_CALLS-th
        assert [c.phase for c in _adapt._adapter.step(2.0)] == ["trying"]
        offload_tuner.adapt(None, min_calls=10)  # a service that wants faster windows on fewer calls
        feed(log_spread(*map(int, WORKLOAD), 10), t0, inline_factor=3.0)
        assert len(_adapt._adapter.step(3.0)) == 1


def test_a_mix_in_the_lowest_decade_reaches_what_retune_says_for_it_when_the_load_agrees(tmp_path):
    """Every call in the lowest decade of the calibrated range, timed as calibrated (the retune case)."""
    from offload_tuner.runtime.feedback._retune import Traffic, kernel_models, retune_kernel

    lo = int(WORKLOAD[0])
    mix = log_spread(lo, 10 * lo, 400)
    buckets: dict[int, int] = {}
    for n in mix:
        buckets[_stats.bucket_floor(_stats.bucket_of(n))] = buckets.get(_stats.bucket_floor(_stats.bucket_of(n)), 0) + 1
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        transport, knobs, models = kernel_models(json.loads((tmp_path / "p.json").read_text()))
        target = retune_kernel(models[KEY], transport, knobs, Traffic(inline=buckets), t0).new
        assert target is not None and target < t0 / 4, "the synthetic model must want a much lower threshold"
        path = run_windows(mix, 8 * TRIAL_WINDOWS, offloading_pays)
    assert abs(path[-1] - target) <= 0.25 * target, path


def test_stopping_ends_a_trial_and_keeps_what_was_accepted(tmp_path):
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        path = run_windows(FULL, TRIAL_WINDOWS + 1, offloading_pays, inline_factor=3.0)
        accepted, trying = path[TRIAL_WINDOWS - 1], path[-1]
        assert accepted < t0 and trying < accepted, "a second trial is under way"
        offload_tuner.adapt(True, every_s=3600)
        _adapt.pause()  # a pause (benchmarks) keeps the trial going...
        assert in_force() == trying
        offload_tuner.adapt(True, every_s=3600)
        assert in_force() == trying
        offload_tuner.adapt(False)  # ...stopping ends it
        assert in_force() == accepted


def test_a_new_profile_starts_afresh(tmp_path):
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        assert run_windows(FULL, TRIAL_WINDOWS, offloading_pays, inline_factor=3.0)[-1] != t0
        offload_tuner.load_profile(tmp_path / "p.json")  # loaded again: its own thresholds
        assert in_force() == t0


def test_exploration_runs_a_capped_share_of_calls_near_the_threshold_the_other_way(tmp_path):
    offload_tuner.sample_every(1)  # every call timed: the cap, not the sampling, bounds exploration
    stats = _stats.stats_for(total)
    with ThreadPoolExecutor(2) as pool:
        t0 = install_profile(tmp_path, pool)
        offload_tuner.adapt(True, every_s=3600)  # exploration on; no step will run during the test
        explored = []
        for n, calls in ((t0 // 2, 3000), (t0 * 2, 3000), (t0 // 8, 1000), (t0 * 8, 1000)):
            before, loop_before = stats.explored, stats.samples["loop"].filled
            for _ in range(calls):
                assert offload_tuner.run_kernel_sync(total, list(range(n))) == n * (n - 1) // 2
            explored.append(stats.explored - before)
            if n < t0:  # every call decided inline: a loop sample can only come from an explored call
                assert stats.samples["loop"].filled - loop_before == explored[-1]
    cap = math.ceil(3000 / _stats.EXPLORE_EVERY_AT_LEAST)
    assert 0 < explored[0] <= cap and 0 < explored[1] <= cap
    assert explored[2:] == [0, 0], "sizes more than 4x from the threshold are never explored"
    counts = offload_tuner.stats()["processes"]
    (section,) = counts.values()
    assert section["kernels"][KEY]["explored"] == sum(explored)
    assert sum(section["kernels"][KEY]["calls"]["offload"].values()) == 4000, "counted as decided"


def test_exploration_is_off_unless_adapting(tmp_path):
    offload_tuner.sample_every(1)
    stats = _stats.stats_for(total)
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)
        for _ in range(500):
            offload_tuner.run_kernel_sync(total, list(range(t0 // 2)))
    assert stats.explored == 0 and len(stats.samples["loop"]) == 0 and len(stats.samples["inline"]) > 0


def test_kernels_the_profile_does_not_decide_are_not_explored(tmp_path):
    """A fallback threshold (here: the kernel's code changed since calibration) is not adapted: no exploring."""
    offload_tuner.sample_every(1)
    stats = _stats.stats_for(total)
    with ThreadPoolExecutor(1) as pool:
        install_profile(tmp_path, pool)
        data = json.loads((tmp_path / "p.json").read_text())
        data["kernels"][KEY]["code_fingerprint"] = "another version"
        (tmp_path / "q.json").write_text(json.dumps(data))
        offload_tuner.load_profile(tmp_path / "q.json")
        offload_tuner.adapt(True, every_s=3600)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(500):
                offload_tuner.run_kernel_sync(total, list(range(10)))
    assert stats.explored == 0


def test_a_failing_window_is_reported_once_and_the_threshold_stays(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ArithmeticError("synthetic failure")

    monkeypatch.setattr(_adapt, "retune_kernel", broken)
    with ThreadPoolExecutor(1) as pool, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = install_profile(tmp_path, pool)
        assert run_windows(FULL, 5, offloading_pays, inline_factor=3.0) == [t0] * 5
        assert offload_tuner.run_kernel_sync(total, list(range(10))) == 45
    failed = [str(w.message) for w in caught if "adaptation failed" in str(w.message)]
    assert len(failed) == 1 and "ArithmeticError: synthetic failure" in failed[0] and KEY in failed[0]


def test_reset_stats_opens_a_new_window_instead_of_reading_negative_counts(tmp_path):
    with ThreadPoolExecutor(1) as pool:
        t0 = install_profile(tmp_path, pool)  # offloaded calls timed as modelled, inline ones 3x: a busy loop
        _stats.stats_for(total)
        _adapt._adapter.step(0.0)
        feed(FULL, t0, inline_factor=3.0)
        assert [c.phase for c in _adapt._adapter.step(1.0)] == ["trying"]  # a window closed, a trial began
        offload_tuner.reset_stats()
        feed(FULL[:MIN_NEW_CALLS], t0, inline_factor=3.0)
        assert _adapt._adapter.step(2.0) == []  # counts went back: the window opens again
        feed(FULL[:MIN_NEW_CALLS], t0, inline_factor=3.0)
        assert [c.phase for c in _adapt._adapter.step(3.0)] == ["trying"]  # and closes on new calls


def test_adapt_reports_its_state_and_refuses_a_bad_interval():
    assert offload_tuner.adapt() is False
    assert offload_tuner.adapt(True, every_s=60) is False
    assert offload_tuner.adapt() is True
    assert offload_tuner.adapt(False) is True
    with pytest.raises(ValueError, match="every_s > 0"):
        offload_tuner.adapt(True, every_s=0)
    with pytest.raises(ValueError, match="finite"):
        offload_tuner.adapt(True, every_s=float("inf"))
    with pytest.raises(ValueError, match="min_calls >= 1"):
        offload_tuner.adapt(True, min_calls=0)
    assert offload_tuner.adapt() is False


@pytest.mark.parametrize(
    "value, on, warns",
    [("1", True, False), ("2.5", True, False), ("0", False, False), ("often", False, True), ("inf", False, True)],
)
def test_adaptation_starts_from_the_environment(value, on, warns):
    import os
    import subprocess
    import sys

    code = (
        "import warnings; warnings.simplefilter('always'); import offload_tuner; from tests.support import total; "
        "offload_tuner.run_kernel_sync(total, [1]); print(offload_tuner.adapt())"
    )
    env = {**os.environ, "OFFLOAD_TUNER_ADAPT": value, "OFFLOAD_TUNER_PROFILE": "/nonexistent/p.json"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == str(on)
    assert (f"OFFLOAD_TUNER_ADAPT={value!r}" in out.stderr) == warns
