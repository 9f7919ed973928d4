"""Issue 29, acceptance 3's general fix: beyond the calibrated top, where the measurement could not decide, the
model's best estimate does. A kernel whose measured threshold offloads nothing past the top records an
extrapolated offload size where the fitted model under load predicts a stream of such calls completes at least 1.25x
faster shared with the pool than inline; the runtime offloads from there as it does from the guard, and says
"extrapolated". Synthetic models, no timing: a linear kernel calibrated on 1-256 whose shared-stream gain passes the
margin at 302, and one whose offloaded cost grows as n^2.5 (none)."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

import offload_tuner
from offload_tuner import OffloadTunerWarning
from offload_tuner.calibration._calibrate import _extrapolation, _guard
from offload_tuner.runtime._costmodel import CostModel
from offload_tuner.runtime._entries import Origin
from offload_tuner.runtime._extrapolate import EXTRAPOLATION_MARGIN, extrapolated_offload, shared_stream_gain
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, predict
from offload_tuner.runtime._profile import ProfileError, validate_profile
from offload_tuner.runtime._registry import spec_for
from offload_tuner.runtime.feedback._drift import extrapolation_checks
from offload_tuner.runtime.feedback._retune import Traffic, retuned_profile, traffic
from offload_tuner.runtime.feedback._statsfile import StatsError, read_stats, write_stats
from tests.support import total, write_profile_json

MEASURED = (1.0, 256.0)
TOP = 256
KNOBS = PolicyKnobs(concurrency=4, workers=2, cores=2, loop_budget_s=0.1)
TRANSPORT = TransportModel(2e-3, 1e-9, 6e-4, 0.0, 6e-4, 0.0)
"""A 600 us caller-side fixed cost per offloaded call: at the calibrated top (1 ms inline) sharing calls with the
pool gains less than the margin; by 4x the top it gains about 1.5x."""


def power(a: float, b: float) -> CostModel:
    return CostModel("power_offset", {"a": a, "b": b, "c": 0.0}, MEASURED, 0.0, 20, True)


LINEAR = KernelCosts(power(4e-6, 1.0), power(1e-8, 1.0), power(2e-6, 1.0), power(8.0, 1.0))
"""Inline 4 us per element; offloaded, the worker's unpickling and pickling grow as n too."""
STEEPER = dataclasses.replace(LINEAR, worker_serial=power(2e-12, 2.5))
"""Offloaded worker time grows as n^2.5: sharing pays around the top, less and less beyond it."""
KEY = spec_for(total).key
S = extrapolated_offload(LINEAR, TRANSPORT, KNOBS, MEASURED, None, None)[0]  # type: ignore[index]


def gain(costs: KernelCosts, n: int) -> float:
    return shared_stream_gain(predict(costs, TRANSPORT, KNOBS, n), KNOBS)


def test_a_never_kernel_whose_shared_stream_pays_past_the_top_gets_the_size_where_it_starts():
    found = extrapolated_offload(LINEAR, TRANSPORT, KNOBS, MEASURED, None, None)
    assert found is not None
    size, at = found
    assert TOP < size < 4 * TOP
    assert gain(LINEAR, size - 1) < EXTRAPOLATION_MARGIN <= gain(LINEAR, size) == at
    assert gain(LINEAR, TOP) < EXTRAPOLATION_MARGIN  # the premise: inside the range it would not pass the margin
    # The per-size stream view (offloading every call of a size) does not see it: it would leave them inline.
    p = predict(LINEAR, TRANSPORT, KNOBS, 4 * TOP)
    assert p.offload_period_s > p.inline_period_s / EXTRAPOLATION_MARGIN


def test_a_model_whose_offload_cost_grows_faster_gets_no_size():
    assert gain(STEEPER, 4 * TOP) > EXTRAPOLATION_MARGIN > gain(STEEPER, 2**20)  # pays near the top, not far past
    assert extrapolated_offload(STEEPER, TRANSPORT, KNOBS, MEASURED, None, None) is None


def test_a_threshold_inside_the_range_or_below_the_size_found_is_left_alone():
    assert extrapolated_offload(LINEAR, TRANSPORT, KNOBS, MEASURED, 100, None) is None
    assert extrapolated_offload(LINEAR, TRANSPORT, KNOBS, MEASURED, S, None) is None
    assert extrapolated_offload(LINEAR, TRANSPORT, KNOBS, MEASURED, 4 * S, None) == (S, gain(LINEAR, S))
    assert extrapolated_offload(LINEAR, TRANSPORT, KNOBS, MEASURED, None, S) is None  # the guard decides from there


def test_offloading_that_only_costs_more_gains_nothing():
    dear = dataclasses.replace(LINEAR, caller_serial=power(8e-6, 1.0))  # the loop blocked longer offloaded
    assert gain(dear, 4 * TOP) == 1.0
    assert extrapolated_offload(dear, TRANSPORT, KNOBS, MEASURED, None, None) is None


def _extrapolated(costs, transport, knobs, entry, t, tied=()):
    return _extrapolation(costs, transport, knobs, entry, t, tied)["extrapolated_offload"]


def test_calibration_records_it_beside_the_guard():
    entry = {"calibrated_range": list(MEASURED), "guard": _guard(LINEAR, TRANSPORT, KNOBS, list(MEASURED))}
    assert _extrapolation(LINEAR, TRANSPORT, KNOBS, entry, None) == {
        "extrapolated_offload": {"size": S, "gain": round(gain(LINEAR, S), 3)},
        "extrapolation_withheld": None,
    }
    assert _extrapolated(LINEAR, TRANSPORT, KNOBS, entry, 128) is None


CHEAP = TransportModel(2e-4, 1e-9, 2e-5, 0.0, 2e-5, 0.0)
"""A 20 us caller-side fixed cost: with it the model predicts offloading pays already at the calibrated top."""


def test_a_model_the_measurement_contradicted_at_the_top_is_not_trusted_past_it():
    entry = {"calibrated_range": list(MEASURED), "guard": _guard(LINEAR, CHEAP, KNOBS, list(MEASURED))}
    at_top = shared_stream_gain(predict(LINEAR, CHEAP, KNOBS, TOP), KNOBS)
    assert at_top >= EXTRAPOLATION_MARGIN  # the premise: the model says offloading pays at the top
    # "never" measured best, alone or tied only with thresholds past the top: every offloading one lost.
    for tied in ((), (None,), (None, 512)):
        fields = _extrapolation(LINEAR, CHEAP, KNOBS, entry, None, tied)
        assert fields["extrapolated_offload"] is None
        assert fields["extrapolation_withheld"].startswith(f"at the calibrated top {TOP} the model under load")
        assert f"pays {at_top:.2f}x" in fields["extrapolation_withheld"]
    # Tied with a threshold offloading within the range: the measurement could not tell them apart, no contradiction.
    tied = _extrapolation(LINEAR, CHEAP, KNOBS, entry, None, (None, 128))
    assert tied["extrapolated_offload"]["size"] == TOP + 1 and tied["extrapolation_withheld"] is None
    # A model that agrees with the measurement at the top (LINEAR under TRANSPORT) keeps its size, tie or not.
    agreeing = {"calibrated_range": list(MEASURED), "guard": _guard(LINEAR, TRANSPORT, KNOBS, list(MEASURED))}
    assert _extrapolated(LINEAR, TRANSPORT, KNOBS, agreeing, None, ()) == {"size": S, "gain": round(gain(LINEAR, S), 3)}


def withheld_profile(tmp_path, kind: str):
    """A "never" profile whose model pays at the top under CHEAP: calibration withheld its extrapolated size."""
    path = profile(tmp_path, None, kind=kind)
    data = json.loads(path.read_text())
    data["transport"] = {"model": CHEAP.to_json()}
    entry = data["kernels"][KEY]
    entry.update(_extrapolation(LINEAR, CHEAP, KNOBS, entry, None), guard=_guard(LINEAR, CHEAP, KNOBS, list(MEASURED)))
    path.write_text(json.dumps(data))
    return path


def test_show_and_explain_say_why_it_was_withheld(tmp_path, capsys):
    from offload_tuner.inspection._cli import main

    path = withheld_profile(tmp_path, "process")
    assert main(["show", str(path)]) == 0
    assert f"{KEY}: no extrapolated offload size: at the calibrated top {TOP}" in capsys.readouterr().out
    assert main(["explain", KEY, str(4 * TOP), "--profile", str(path)]) == 0
    assert "the model is not trusted where the measurement contradicted it" in capsys.readouterr().out


def test_a_withheld_size_leaves_calls_past_the_top_to_the_threshold(tmp_path):
    at, guarded = decisions(withheld_profile(tmp_path, "thread"), 4 * TOP, 25_000)  # the guard: 25000 here
    assert at.origin is Origin.PROFILE and not at.offload and "extrapolated: offloading" not in at.reason
    assert guarded.offload and "guard: inline from size 25000" in guarded.reason  # the loop budget still holds


def test_a_threshold_the_shared_stream_chose_brings_its_own_extrapolated_size():
    from offload_tuner.calibration._calibrate import _shared_update
    from offload_tuner.calibration._choice import choose
    from offload_tuner.calibration._shared import SharedChoice
    from tests.test_choice import cand

    entry = {"calibrated_range": list(MEASURED), "guard": _guard(LINEAR, TRANSPORT, KNOBS, list(MEASURED))}
    entry.update(costs=LINEAR.to_json(), extrapolated_offload=None)  # alone it offloaded from 128

    def shared(never_best: bool) -> SharedChoice:
        runs = [cand(128, [1.0 if never_best else 0.5] * 3), cand(None, [0.5 if never_best else 1.0] * 3)]
        choice = choose(runs, rounds=3, workload_range=MEASURED)
        return SharedChoice(KEY, "process", 128, choice, runs, 1.0)

    now_never = _shared_update(entry, shared(True), TRANSPORT, KNOBS)
    assert now_never["threshold"] is None and now_never["extrapolated_offload"]["size"] == S
    entry["extrapolated_offload"] = now_never["extrapolated_offload"]
    assert _shared_update(entry, shared(False), TRANSPORT, KNOBS)["extrapolated_offload"] is None


# ------------------------------------------------------------------------------------------- the runtime


def profile(tmp_path, threshold: int | None, extrapolated: object = "computed", kind: str = "thread"):
    path = write_profile_json(tmp_path / "p.json", {KEY: threshold}, executor_kind=kind)
    data = json.loads(path.read_text())
    entry = data["kernels"][KEY]
    entry.update(costs=LINEAR.to_json(), calibrated_range=list(MEASURED), workload_range=list(MEASURED))
    entry["guard"] = _guard(LINEAR, TRANSPORT, KNOBS, list(MEASURED))
    if extrapolated == "computed":
        entry["extrapolated_offload"] = _extrapolated(LINEAR, TRANSPORT, KNOBS, entry, threshold)
    elif extrapolated != "missing":
        entry["extrapolated_offload"] = extrapolated
    data.update(policy=KNOBS.to_json(), transport={"model": TRANSPORT.to_json()})
    path.write_text(json.dumps(data))
    return path


def decisions(path, *sizes: int) -> list[offload_tuner.Decision]:
    with ThreadPoolExecutor(1) as pool:
        offload_tuner.set_executor(pool)
        offload_tuner.load_profile(path)
        return [offload_tuner.decide(total, [0] * n) for n in sizes]


def test_a_never_profile_offloads_a_call_at_4x_the_top_and_says_extrapolated(tmp_path):
    inside, below, at = decisions(profile(tmp_path, None), TOP, S - 1, 4 * TOP)
    assert at.offload and at.origin is Origin.PROFILE and at.threshold == S
    assert at.reason.startswith(f"extrapolated: offloading from size {S}, beyond the calibrated top {TOP}")
    assert f"size {4 * TOP} >= extrapolated offload size {S}" in at.reason
    assert not inside.offload and not below.offload and "extrapolated" in below.reason


def test_an_older_profile_without_it_keeps_every_call_past_the_top_inline_up_to_the_guard(tmp_path):
    for extrapolated in ("missing", None):
        (at,) = decisions(profile(tmp_path, None, extrapolated), 4 * TOP)
        assert not at.offload and "extrapolated: offloading" not in at.reason and at.threshold != S


def test_a_threshold_inside_the_range_is_unaffected(tmp_path):
    small, at = decisions(profile(tmp_path, 100, extrapolated={"size": S, "gain": 1.5}), 50, 4 * TOP)
    assert not small.offload and at.offload and at.threshold == 100 and "extrapolated" not in at.reason


def test_an_adapted_threshold_was_weighed_over_production_and_is_not_overridden(tmp_path):
    from offload_tuner.runtime import _state

    with ThreadPoolExecutor(1) as pool:
        offload_tuner.set_executor(pool)
        loaded = offload_tuner.load_profile(profile(tmp_path, None))
        _state.swap(adapted=_state.Adapted(loaded, {KEY: (None, "adapted: test")}))
        at = offload_tuner.decide(total, [0] * (4 * TOP))
    assert at.origin == "adapted" and not at.offload


@pytest.mark.parametrize(
    "section, field",
    [
        ("big", '"extrapolated_offload" must be an object or null'),
        ({"size": 0, "gain": 1.5}, "extrapolated_offload size must be an integer"),
        ({"size": 300.5, "gain": 1.5}, "extrapolated_offload size must be an integer"),
        ({"size": 300, "gain": 0.9}, "extrapolated_offload gain must be a finite number >= 1"),
        ({"size": 300, "gain": float("nan")}, "extrapolated_offload gain must be a finite number >= 1"),
        ({"size": 300}, "extrapolated_offload gain must be a finite number >= 1"),
        ({"size": 256, "gain": 1.5}, "extrapolated_offload size 256 must lie beyond the calibrated top 256"),
    ],
)
def test_a_malformed_field_is_refused_naming_the_kernel_and_field(section, field):
    entry = {"threshold": None, "extrapolated_offload": section, "calibrated_range": [1, 256]}
    data = {"schema": 3, "kernels": {"m:k": entry}}
    with pytest.raises(ProfileError, match="kernel 'm:k'") as err:
        validate_profile(data, "p.json")
    assert field in str(err.value)


def test_show_and_explain_say_it(tmp_path, capsys):
    from offload_tuner.inspection._cli import main

    path = profile(tmp_path, None, kind="process")
    assert main(["show", str(path)]) == 0
    assert f"{KEY}: extrapolated: offloading from size {S}, beyond the calibrated top {TOP}" in capsys.readouterr().out
    assert main(["explain", KEY, str(4 * TOP), "--profile", str(path)]) == 0
    assert "where the measured threshold would run calls inline" in capsys.readouterr().out


def test_retune_drops_it_with_the_threshold_it_replaced(tmp_path):
    from offload_tuner.runtime.feedback._retune import Retuned

    data = json.loads(profile(tmp_path, None).read_text())
    r = Retuned(KEY, None, 512, 100.0, {}, False, 0.0, LINEAR)
    assert "extrapolated_offload" not in retuned_profile(data, [r], "s.json", "now")["kernels"][KEY]


# -------------------------------------------------------------------------------- statistics and drift


def run(path, *sizes: int) -> dict:
    with ThreadPoolExecutor(1) as pool:
        offload_tuner.set_executor(pool)
        offload_tuner.load_profile(path)
        for n in sizes:
            offload_tuner.run_kernel_sync(total, [0] * n)
        (section,) = offload_tuner.stats()["processes"].values()
    return section["kernels"][KEY]


def test_stats_count_the_calls_it_decided_and_drift_prints_them(tmp_path, capsys):
    from offload_tuner.inspection._cli import main

    path = profile(tmp_path, None)
    kernel = run(path, 10, S - 1, 4 * TOP, 4 * TOP)
    assert kernel["extrapolated"] == {"size": S, "threshold": None, "calls": 2, "exact": True}
    assert "guarded" not in kernel
    stats = tmp_path / "stats.json"
    write_stats(stats)
    assert traffic(read_stats(stats))[KEY].extrapolated == 2
    assert main(["drift", str(path), "--stats", str(stats)]) == 0
    assert "extrapolated: decided 2 of the 2 offloaded calls" in capsys.readouterr().out


def test_a_malformed_extrapolated_stats_field_is_refused_naming_it(tmp_path):
    kernel = {"calls": {"inline": {}, "offload": {}}, "samples": {}, "extrapolated": {"size": 0, "calls": 1}}
    section = {"pid": 1, "started": 1.0, "updated": 2.0, "sample_every": 64, "kernels": {"m:k": kernel}}
    stats = tmp_path / "s.json"
    stats.write_text(json.dumps({"schema": "offload-tuner-stats/1", "host": "h", "processes": {"1@1": section}}))
    with pytest.raises(StatsError, match="extrapolated.size"):
        read_stats(stats)


FAR = [4 * TOP + 50 * i for i in range(10)]


def timed(loop: float = 1.0, latency: float = 1.0) -> Traffic:
    """Ten offloaded calls past the extrapolated size, timed at ``loop`` and ``latency`` times the model's."""
    p = {n: predict(LINEAR, TRANSPORT, KNOBS, n) for n in FAR}
    return Traffic(
        offload={1024: len(FAR)},
        samples={
            "inline": [],
            "loop": [(n, loop * p[n].offload_loop_s) for n in FAR],
            "latency": [(n, latency * p[n].offload_latency_s) for n in FAR],
        },
    )


def test_drift_checks_the_extrapolation_once_its_calls_are_timed(tmp_path):
    data = json.loads(profile(tmp_path, None).read_text())
    (check,) = extrapolation_checks(data, {KEY: timed()})
    assert check.holds is True and check.size == S and check.timed == len(FAR)
    assert check.gain == pytest.approx(gain(LINEAR, sorted(FAR)[len(FAR) // 2]), rel=0.02)
    (slow,) = extrapolation_checks(data, {KEY: timed(loop=5.0, latency=5.0)})  # the pool dearer than the model said
    assert slow.holds is False and slow.gain is not None and slow.gain <= 1.05
    assert "does not hold" in slow.sentence and "workload=" in slow.sentence
    (few,) = extrapolation_checks(data, {KEY: dataclasses.replace(timed(), samples={"loop": [(FAR[0], 1e-3)]})})
    assert few.holds is None
    assert extrapolation_checks(json.loads(profile(tmp_path, 100).read_text()), {KEY: timed()}) == []
    # A size within a mix measured past it (an older profile) is ignored by the runtime: drift leaves it alone too.
    assert min(FAR) > S  # calls past that mix's top, which the size no longer decides
    data["kernels"][KEY]["workload_range"] = [1, S]
    assert extrapolation_checks(data, {KEY: timed()}) == []


def test_drift_exits_1_when_it_does_not_hold(tmp_path, capsys):
    from offload_tuner.inspection._cli import main

    path = profile(tmp_path, None)
    t = timed(loop=5.0, latency=5.0)
    kernel = {
        "calls": {"inline": {}, "offload": {"1024": len(FAR)}},
        "samples": {kind: [[1.0, n, s] for n, s in rows] for kind, rows in t.samples.items()},
    }
    section = {"pid": 1, "started": 1.0, "updated": 2.0, "sample_every": 64, "kernels": {KEY: kernel}}
    stats = tmp_path / "s.json"
    stats.write_text(json.dumps({"schema": "offload-tuner-stats/1", "host": "h", "processes": {"1@1.000": section}}))
    assert main(["drift", str(path), "--stats", str(stats)]) == 1
    out = capsys.readouterr().out
    assert f"{KEY}: RECALIBRATE" in out and "! the extrapolated offload size" in out


def test_between_the_size_and_a_threshold_above_the_top_the_extrapolation_decides(tmp_path):
    threshold = 4 * S
    between, past = decisions(profile(tmp_path, threshold), 2 * S, 5 * S)
    assert between.offload and between.threshold == S and between.reason.startswith("extrapolated: offloading")
    assert past.offload and past.reason.startswith(f"profile: size {5 * S} >= threshold {threshold}")


def test_a_mix_measured_past_the_ladder_is_not_extrapolated_over():
    """A ladder cut short (calibrated 1-256) under a stated mix measured under load up to 2048: the threshold chosen
    there (1448) is a measurement, so no extrapolated size may land below the mix's top and override it. The
    control: the same entry with the mix within the ladder gets the model's size (302, below 1448)."""
    within = {"calibrated_range": list(MEASURED), "workload_range": [1, 256], "guard": None}
    assert _extrapolated(LINEAR, TRANSPORT, KNOBS, within, 1448, ()) == {"size": S, "gain": round(gain(LINEAR, S), 3)}
    past = {**within, "workload_range": [1, 2048]}
    fields = _extrapolation(LINEAR, TRANSPORT, KNOBS, past, 1448, ())
    assert fields["extrapolated_offload"] is None or fields["extrapolated_offload"]["size"] > 2048
    # A profile written before the mix's top counted: the size is ignored with one warning, the profile still loads.
    entry = {"threshold": 1448, "extrapolated_offload": {"size": S, "gain": 1.3}, **past}
    with pytest.warns(OffloadTunerWarning, match=f"extrapolated offload size {S} lies within the mix"):
        loaded = validate_profile({"schema": 3, "kernels": {"m:k": entry}}, "p.json")
    assert loaded.kernels["m:k"].extrapolated is None and loaded.kernels["m:k"].threshold == 1448
