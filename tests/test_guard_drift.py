"""Issue 29 item 3: ``drift`` checks the guard's extrapolation once production timed the calls it offloaded past the
calibrated top. The O(n^2) kernel of :mod:`tests.test_guard` (calibrated on 1-256, inline past the 100 ms budget from
about 1000, "never" in the profile), with synthetic statistics: the model's own timings, an inline cost 0.3x the
extrapolation, and an offloaded call blocking the loop longer than inline would."""

from __future__ import annotations

import json
import warnings

import pytest

import offload_tuner
from offload_tuner.runtime._policy import guard_size, predict
from offload_tuner.runtime._registry import spec_for
from offload_tuner.runtime._stats import KernelStats
from offload_tuner.runtime.feedback._drift import DriftCheck, guard_checks
from offload_tuner.runtime.feedback._retune import Traffic
from tests.support import total
from tests.test_guard import KEY, KNOBS, LINEAR, MEASURED, TOP, TRANSPORT, A, profile

GUARD = guard_size(LINEAR, TRANSPORT, KNOBS, MEASURED)[0]  # type: ignore[index]
FAR = [GUARD + 100 * i for i in range(1, 11)]
"""Ten sizes the guard decided, past the calibrated top."""
BETWEEN = [TOP + 60 * i for i in range(1, 11)]
"""Ten sizes between the top and the guard: run inline, so they time the inline extrapolation."""


def loop_s(n: int) -> float:
    return predict(LINEAR, TRANSPORT, KNOBS, n).offload_loop_s


def traffic(loop=loop_s, inline=lambda n: A * n * n, far=FAR, between=BETWEEN) -> Traffic:
    return Traffic(
        inline={256: len(between)},
        offload={1024: len(far)},
        samples={
            "inline": [(n, inline(n)) for n in between],
            "loop": [(n, loop(n)) for n in far],
            "latency": [],
        },
    )


def data(tmp_path, threshold=None) -> dict:
    return json.loads(profile(tmp_path, threshold).read_text())


def test_the_extrapolation_holds_when_production_times_what_the_model_said(tmp_path):
    (check,) = guard_checks(data(tmp_path), {KEY: traffic()})
    assert check.holds is True and check.guard == GUARD and check.timed == len(FAR)
    assert check.sentence.startswith(f"the guard (inline from size {GUARD}, beyond the calibrated top {TOP}) holds")
    assert "1.00x the extrapolation" in check.sentence and "10 inline calls timed past the top" in check.sentence
    assert check.corrected == GUARD


def test_without_inline_timings_past_the_top_it_says_the_size_rests_on_the_extrapolation(tmp_path):
    (check,) = guard_checks(data(tmp_path), {KEY: traffic(between=[])})
    assert check.holds is True and "rests on the extrapolation still" in check.sentence and check.corrected is None


def test_too_few_timed_calls_give_no_verdict(tmp_path):
    (check,) = guard_checks(data(tmp_path), {KEY: traffic(far=FAR[:3])})
    assert check.holds is None and "3 timed offloaded call(s)" in check.sentence and "8 needed" in check.sentence


def test_no_check_before_any_call_the_guard_decided_is_timed(tmp_path):
    below = [n for n in BETWEEN if n < GUARD]
    assert guard_checks(data(tmp_path), {KEY: traffic(far=below)}) == []  # offloaded below the guard: not its calls
    assert guard_checks(data(tmp_path), {KEY: traffic(far=[])}) == []


def test_no_check_where_the_threshold_decides_every_offloaded_call(tmp_path):
    assert guard_checks(data(tmp_path, threshold=100), {KEY: traffic()}) == []


def test_calls_past_a_larger_threshold_are_the_thresholds_not_the_guards(tmp_path):
    threshold = FAR[4]
    (check,) = guard_checks(data(tmp_path, threshold=threshold), {KEY: traffic(far=FAR + FAR[:4])})
    assert check.timed == 8  # the four sizes below the threshold, each twice


def test_an_inline_cost_below_the_extrapolation_moves_the_guard_and_says_where(tmp_path):
    (check,) = guard_checks(data(tmp_path), {KEY: traffic(inline=lambda n: 0.3 * A * n * n)})
    assert check.holds is False and "does not hold" in check.sentence and "0.30x the extrapolation" in check.sentence
    # inline 0.3 A n^2 passes 100 ms at n = 1000 / sqrt(0.3) ~ 1826
    assert check.corrected is not None and 1800 <= check.corrected <= 1850
    assert f"inline passes the budget from about size {check.corrected}" in check.sentence
    assert "workload=" in check.sentence


def test_offloading_that_does_not_spare_the_loop_breaks_the_guard(tmp_path):
    (check,) = guard_checks(data(tmp_path), {KEY: traffic(loop=lambda n: 1.2 * A * n * n, between=[])})
    assert check.holds is False and "offloading did not spare the loop" in check.sentence


def stats_file(path, t: Traffic):
    kernel = {
        "calls": {
            "inline": {str(k): v for k, v in t.inline.items()},
            "offload": {str(k): v for k, v in t.offload.items()},
        },
        "samples": {kind: [[1.0, n, s] for n, s in rows] for kind, rows in t.samples.items()},
    }
    section = {"pid": 1, "started": 1.0, "updated": 2.0, "sample_every": 64, "kernels": {KEY: kernel}}
    path.write_text(json.dumps({"schema": "offload-tuner-stats/1", "host": "h", "processes": {"1@1.000": section}}))
    return path


def test_drift_prints_the_verdict_and_exits_1_when_the_guard_does_not_hold(tmp_path, capsys):
    from offload_tuner.inspection._cli import main

    path = profile(tmp_path, None)
    assert main(["drift", str(path), "--stats", str(stats_file(tmp_path / "ok.json", traffic()))]) == 0
    out = capsys.readouterr().out
    assert f"the guard (inline from size {GUARD}, beyond the calibrated top {TOP}) holds" in out
    assert f"{KEY}: ok" in out

    broken = stats_file(tmp_path / "broken.json", traffic(loop=lambda n: 1.2 * A * n * n, between=[]))
    assert main(["drift", str(path), "--stats", str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"{KEY}: RECALIBRATE" in out and "! the guard" in out and "did not spare the loop" in out
    assert "the loop budget's guard rests on an extrapolation past the calibrated top" in out


def test_the_runtime_says_it_once_when_the_guard_does_not_hold(tmp_path):
    offload_tuner.load_profile(profile(tmp_path, None))
    stats = KernelStats(spec_for(total))  # type: ignore[arg-type]
    for n in FAR:
        stats.record("loop", n, 1.2 * A * n * n)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DriftCheck().samples_due(stats)
        DriftCheck().samples_due(stats)
    said = [str(w.message) for w in caught if "guard (inline from size" in str(w.message)]
    assert len(said) == 1 and "did not spare the loop" in said[0] and KEY in said[0]


@pytest.mark.parametrize("factor", [0.9, 1.2])
def test_timings_within_the_drift_band_hold(tmp_path, factor):
    (check,) = guard_checks(data(tmp_path), {KEY: traffic(inline=lambda n: factor * A * n * n)})
    assert check.holds is True
