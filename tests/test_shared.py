"""The shared-stream phase: its pure helpers, and one real calibration of two controlled kernels sharing a loop
(generous tolerances, no wall-time assertions)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
from concurrent.futures import ThreadPoolExecutor

import pytest

import offload_tuner
from offload_tuner.calibration._calibrate import EFFORTS, KernelPlan, _shared_phase, calibrate
from offload_tuner.calibration._shared import (
    MAX_CALLS,
    QUICK_STEPS,
    Member,
    composite_call,
    member_from_entry,
    shared_candidates,
    stream_counts,
    unrated,
    weighting,
)
from offload_tuner.calibration._workload import mix_sizes
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs
from offload_tuner.runtime._registry import spec_for
from tests import controlled
from tests.test_policy import power, transport, zero

KNOBS = PolicyKnobs(concurrency=4, workers=2, cores=2)


def member(lane: str, t: int | None, lo: float = 8, hi: float = 512, inline=lambda n: 1e-6 * n, floor=None) -> Member:
    return Member(spec_for(controlled.spin), lane, t, (lo, hi), inline, floor)


# ----------------------------------------------------------------------------------------------- pure


def test_under_the_latency_objective_the_candidates_span_the_whole_mix_every_octave():
    from offload_tuner.calibration._shared import GRID_STEPS, shared_steps

    assert shared_steps("throughput", True) == GRID_STEPS and shared_steps("throughput", False) == QUICK_STEPS
    assert shared_candidates(member("process", None, 64, 16384), shared_steps("latency", True)) == [
        None,
        64,
        128,
        256,
        512,
        1024,
        2048,
        4096,
        8192,
        16384,
    ]
    assert shared_candidates(member("process", 181), shared_steps("latency", False)) == [181, 11, 45]  # 2 octaves
    capped = Member(spec_for(controlled.spin), "process", 91, (8, 512), abs, budget_cap=128)
    assert shared_candidates(capped, shared_steps("latency", True)) == [91, 11, 23, 45]  # never above the cap


def test_candidates_are_two_octaves_either_side_inside_the_mix():
    assert shared_candidates(member("process", 181)) == [181, 45, 91, 362]  # 724 is past the mix's top
    assert shared_candidates(member("process", None)) == [None, 128, 256, 512]  # "never": from the top down
    assert shared_candidates(member("process", 0)) == [0, 8, 16, 32]  # "always": from the bottom up
    # A threshold below the mix offloads all of it: the grid starts from the mix's low end.
    assert shared_candidates(member("thread", 512, 1024, 262144)) == [512, 1024, 2048, 4096]
    # A thread lane never goes below the sizes that held the GIL.
    assert shared_candidates(member("thread", 2048, 1024, 262144, floor=2048)) == [2048, 4096, 8192]


def test_each_kernel_brings_about_the_same_inline_work_to_the_stream():
    cheap = member("process", 64, 8, 512, inline=lambda n: 1e-6 * n)
    heavy = member("process", 64, 8, 512, inline=lambda n: 1e-7 * n * n)
    counts = stream_counts([cheap, heavy], 0.05, 4)
    work = [
        count * statistics.fmean(m.inline_s(n) for n in mix_sizes(8, 512, 48))
        for m, count in zip((cheap, heavy), counts)
    ]
    assert counts[0] > 10 * counts[1]
    assert work[0] == pytest.approx(0.025, rel=0.15) and work[1] == pytest.approx(0.025, rel=0.15)
    assert stream_counts([cheap, heavy], 1e-6, 4) == [4, 4]  # the floor holds however little work
    assert stream_counts([cheap, heavy], 100.0, 4) == [600, 600]  # and so does the cap


def test_stated_rates_set_the_proportions_of_the_stream_within_its_inline_work():
    cheap = dataclasses.replace(member("process", 64, 8, 512, inline=lambda n: 1e-6 * n), rate=10.0)
    heavy = dataclasses.replace(member("process", 64, 8, 512, inline=lambda n: 1e-7 * n * n), rate=1.0)
    assert weighting([cheap, heavy]) == "rate"
    counts = stream_counts([cheap, heavy], 0.05, 4)
    assert counts[0] == pytest.approx(10 * counts[1], rel=0.05)  # the service's proportions, not equal work
    work = sum(
        count * statistics.fmean(m.inline_s(n) for n in mix_sizes(8, 512, 48))
        for m, count in zip((cheap, heavy), counts)
    )
    assert work == pytest.approx(0.05, rel=0.05)  # the run's inline work is what it was
    assert stream_counts([cheap, heavy], 1e-3, 4)[1] == 4  # a rare kernel keeps the floor: candidates must differ
    # A rate on some members only: equal inline work, as without rates.
    unstated = dataclasses.replace(heavy, rate=None)
    assert weighting([cheap, unstated]) == "inline work"
    assert stream_counts([cheap, unstated], 0.05, 4) == stream_counts(
        [dataclasses.replace(cheap, rate=None), unstated], 0.05, 4
    )
    assert unrated([cheap, unstated]) == [unstated.spec.key]  # and the calibration says which state none
    assert unrated([cheap, heavy]) == [] and unrated([dataclasses.replace(cheap, rate=None), unstated]) == []


def test_rates_past_the_call_cap_scale_down_together():
    """A run long enough to want more than ``MAX_CALLS`` of the frequent kernel keeps the stated proportions: all
    counts shrink together instead of the frequent one alone being clipped."""
    cheap = dataclasses.replace(member("process", 64, 8, 512, inline=lambda n: 1e-6 * n), rate=10.0)
    heavy = dataclasses.replace(member("process", 64, 8, 512, inline=lambda n: 1e-7 * n * n), rate=1.0)
    counts = stream_counts([cheap, heavy], 5.0, 4)
    assert counts[0] == MAX_CALLS
    assert counts[0] == pytest.approx(10 * counts[1], rel=0.05)


def test_a_kernel_plan_refuses_a_rate_that_is_not_a_positive_number():
    for rate in (0, -1.0, float("inf"), float("nan"), True, "often"):
        with pytest.raises(ValueError, match="KernelPlan.rate must be a number > 0"):
            KernelPlan(rate=rate)  # type: ignore[arg-type]
    assert KernelPlan(rate=2).rate == 2


def test_a_member_takes_the_lane_the_runtime_uses():
    spec = spec_for(controlled.spin)
    base = {"status": "ok", "workload_range": [16, 4096], "load": {}, "threshold": 256}
    assert member_from_entry(spec, base, abs).lane == "process"
    assert member_from_entry(spec, base, abs).threshold == 256
    threaded = member_from_entry(spec, {**base, "thread": {"threshold": 64, "floor": 32}}, abs)
    assert (threaded.lane, threaded.threshold, threaded.floor) == ("thread", 64, 32)
    assert member_from_entry(spec, {**base, "thread": {"threshold": None}}, abs).lane == "process"
    assert member_from_entry(spec, {**base, "status": "untrusted"}, abs) is None  # the runtime ignores it
    assert member_from_entry(spec, {"status": "failed"}, abs) is None
    assert member_from_entry(spec, {**base, "rate": 2.5}, abs).rate == 2.5  # the plan's rate, as the entry records it
    assert member_from_entry(spec, {**base, "thread": {"threshold": 64}, "rate": 2.5}, abs).rate == 2.5


class Recording(ThreadPoolExecutor):
    """A real executor (threads) that remembers what it was given: a process lane's calls arrive pickled."""

    def __init__(self) -> None:
        super().__init__(1)
        self.submitted: list[str] = []

    def submit(self, fn, /, *args, **kwargs):
        self.submitted.append(fn.__name__)
        return super().submit(fn, *args, **kwargs)


def test_the_tested_kernel_follows_the_candidate_and_the_others_their_threshold_on_their_lane():
    spin, fat = spec_for(controlled.spin), spec_for(controlled.fat_result)
    members = [Member(spin, "process", 32, (16, 4096), abs), Member(fat, "thread", None, (100, 5000), abs)]
    seen: list[int] = []

    def gate(n: int) -> bool:  # the candidate: fat_result offloaded from 50 (its own threshold says never)
        seen.append(n)
        return n >= 50

    pools = {"process": Recording(), "thread": Recording()}
    try:
        call = composite_call(members, pools, fat.key, gate)
        items = [
            ((spin.key, spin.sample(16)), 16),
            ((spin.key, spin.sample(64)), 64),
            ((fat.key, fat.sample(100)), 100),
            ((fat.key, fat.sample(7)), 7),
        ]
        results = asyncio.run(_run_all(call, items))
    finally:
        for pool in pools.values():
            pool.shutdown()
    assert seen == [100, 7]  # only the tested kernel's calls meet the candidate's gate
    assert pools["process"].submitted == ["invoke_packet"]  # spin at 64 (its threshold 32), packaged (_packaging)
    assert pools["thread"].submitted == ["fat_result"]  # fat_result at 100, on its thread lane, as is
    assert results == [
        controlled.spin(*spin.sample(16)),
        controlled.spin(*spin.sample(64)),
        controlled.fat_result(100),
        controlled.fat_result(7),
    ]


async def _run_all(call, items):
    return [await call(*item) for item in items]


def _entry(threshold, *, thread=None, status="ok", cap=None):
    costs = KernelCosts(power(1e-7, 2.0), zero(), zero(), zero())
    entry = {
        "status": status,
        "workload_range": [16, 4096],
        "calibrated_range": [16, 4096],
        "guard": None,
        "threshold": threshold,
        "interval": [threshold, threshold],
        "costs": costs.to_json(),
        "load": {"reason": "alone's reason", "budget_cap": cap},
    }
    if thread is not None:
        entry["thread"] = {"threshold": thread, "interval": [thread, thread], "reason": "alone's thread reason"}
    return entry


def _result(fn, entry):
    from offload_tuner.calibration._calibrate import KernelResult

    return KernelResult(
        spec_for(fn), entry, costs=KernelCosts.from_json(entry["costs"]) if entry["status"] == "ok" else None
    )


def _choice(t, interval):
    from offload_tuner.calibration._choice import Choice

    return Choice(t, t, (t,), interval, 0.05, 0.1, "measured under load: the fastest candidate")


def test_the_shared_choices_replace_each_lane_s_threshold_and_keep_the_alone_ones(monkeypatch):
    from offload_tuner.calibration import _shared
    from offload_tuner.calibration._choice import Candidate

    kernels = {"tests.controlled:spin": _entry(256), "tests.controlled:fat_result": _entry(None, thread=512)}
    results = [
        _result(controlled.spin, kernels["tests.controlled:spin"]),
        _result(controlled.fat_result, kernels["tests.controlled:fat_result"]),
    ]
    seen = {}

    def fake_measure(members, pools, knobs, *, rounds, progress, siblings=None, limit_s=60.0):
        assert siblings is None  # one process: no sibling runs the stream
        seen["lanes"] = [(m.spec.key, m.lane, m.threshold) for m in members]
        measured = [Candidate(90, 3, (1.0, 1.1), (0.01, 0.01), (1.0, 1.0))]
        return (
            [
                _shared.SharedChoice(members[0].spec.key, "process", 256, _choice(90, (64, 128)), measured, 1.0),
                _shared.SharedChoice(members[1].spec.key, "thread", 512, _choice(2048, (1024, 4096)), measured, 1.0),
            ],
            [((members[i % 2].spec.key, ()), 8) for i in range(40)],
        )

    monkeypatch.setattr(_shared, "measure_shared", fake_measure)
    section = _shared_phase(
        results, kernels, None, transport(150e-6, 20e-6, 20e-6), KNOBS, EFFORTS["quick"], lambda *a, **k: None
    )
    assert seen["lanes"] == [("tests.controlled:spin", "process", 256), ("tests.controlled:fat_result", "thread", 512)]
    by_kernel = dict.fromkeys(kernels, 20)
    assert section == {
        "kernels": list(kernels),
        "calls": 40,
        "weighted_by": "inline work",  # no kernel states a rate
        "calls_by_kernel": by_kernel,
        "processes": 1,
        "duration_s": section["duration_s"],
    }
    spin, fat = kernels["tests.controlled:spin"], kernels["tests.controlled:fat_result"]
    assert (spin["threshold"], spin["interval"], spin["shared"]["alone"]) == (90, [64, 128], 256)
    assert (spin["shared"]["weighted_by"], spin["shared"]["own_calls"]) == ("inline work", 20)
    assert spin["at_threshold"]["inline_s"] > 0 and spin["shared"]["alone_reason"] == "alone's reason"
    assert spin["extrapolated_offload"] is None  # 90 offloads from within the range
    assert (fat["threshold"], fat["thread"]["threshold"], fat["thread"]["interval"]) == (None, 2048, [1024, 4096])
    assert fat["shared"]["alone_reason"] == "alone's thread reason" and "512 alone" in fat["thread"]["reason"]


def test_a_shared_stream_that_fails_leaves_every_alone_threshold(monkeypatch):
    from offload_tuner.calibration import _shared

    def broken(*args, **kwargs):
        raise RuntimeError("pool broke")

    monkeypatch.setattr(_shared, "measure_shared", broken)
    kernels = {"tests.controlled:spin": _entry(256), "tests.controlled:fat_result": _entry(None, thread=512)}
    before = json.dumps(kernels)
    events = []
    results = [
        _result(controlled.spin, kernels["tests.controlled:spin"]),
        _result(controlled.fat_result, kernels["tests.controlled:fat_result"]),
    ]
    section = _shared_phase(results, kernels, None, None, KNOBS, EFFORTS["quick"], lambda e, **k: events.append((e, k)))
    assert "RuntimeError: pool broke" in section["error"] and json.dumps(kernels) == before
    assert events[-1][0] == "shared_failed" and "pool broke" in events[-1][1]["error"]


def test_fewer_than_two_calibrated_kernels_leave_every_threshold_alone():
    kernels = {"tests.controlled:spin": _entry(256), "tests.controlled:fat_result": _entry(None, status="failed")}
    results = [
        _result(controlled.spin, kernels["tests.controlled:spin"]),
        _result(controlled.fat_result, kernels["tests.controlled:fat_result"]),
    ]
    before = json.dumps(kernels)
    section = _shared_phase(results, kernels, None, None, KNOBS, EFFORTS["quick"], lambda *a, **k: None)
    assert section["kernels"] == ["tests.controlled:spin"] and "1 calibrated" in section["error"]
    assert json.dumps(kernels) == before


def test_the_loop_budget_s_cap_bounds_a_process_lane_s_candidates():
    capped = Member(spec_for(controlled.spin), "process", 181, (8, 512), abs, budget_cap=181)
    assert shared_candidates(capped) == [181, 45, 91]


# ------------------------------------------------------------------------------------ measured, real


PLANS = {
    "tests.controlled:spin": KernelPlan(min_size=4, max_size=16384, workload_range=(16, 4096), rate=3.0),
    "tests.controlled:fat_result": KernelPlan(min_size=16, max_size=8192, workload_range=(100, 5000), rate=1.0),
}
"""Rates stated: the stream holds three calls of spin for one of fat_result (floors aside)."""


@pytest.fixture(scope="module")
def shared_profile(pool):
    specs = [spec_for(controlled.spin), spec_for(controlled.fat_result)]
    return calibrate(specs, pool, effort=EFFORTS["quick"], knobs=KNOBS, plans=PLANS, shared=True)


def test_a_shared_calibration_tunes_each_kernel_on_the_stream_and_keeps_its_alone_choice(shared_profile):
    section = shared_profile["shared"]
    assert "error" not in section, section.get("error")
    assert section["kernels"] == list(PLANS) and section["calls"] >= 2 * 2
    assert section["weighted_by"] == "rate" and sum(section["calls_by_kernel"].values()) == section["calls"]
    assert [shared_profile["kernels"][key]["rate"] for key in PLANS] == [3.0, 1.0]  # recorded per entry
    for key in PLANS:
        entry = shared_profile["kernels"][key]
        shared = entry["shared"]
        lane_threshold = entry["thread"]["threshold"] if shared["lane"] == "thread" else entry["threshold"]
        assert lane_threshold == shared["threshold"]  # the runtime reads the shared choice
        # Measured: the grid around the alone choice (one octave either way at quick effort), nothing else.
        lane_cap = entry["load"].get("budget_cap") if shared["lane"] == "process" else None
        alone = Member(
            spec_for(controlled.spin),
            shared["lane"],
            shared["alone"],
            tuple(entry["workload_range"]),
            abs,
            (entry.get("thread") or {}).get("floor"),
            lane_cap,
        )
        measured = [c["threshold"] for c in shared["candidates"]]
        assert set(measured) <= set(shared_candidates(alone, QUICK_STEPS)) and len(measured) >= 2
        for c in shared["candidates"]:
            assert len(c["makespan_s"]) >= 2 and all(v > 0 for v in c["makespan_s"])
        assert shared["reason"].startswith("measured under load")


def test_a_shared_profile_loads_explains_and_round_trips_as_json(shared_profile, pool, tmp_path, capsys):
    from offload_tuner.inspection._cli import main
    from offload_tuner.inspection._report import format_threshold

    path = tmp_path / "shared.json"
    path.write_text(json.dumps(shared_profile))
    offload_tuner.load_profile(path)
    offload_tuner.set_executor(pool)
    key = "tests.controlled:fat_result"
    entry = shared_profile["kernels"][key]
    assert entry["shared"]["lane"] == "process"  # pure Python: it holds the GIL, no thread lane
    assert entry["threshold"] == entry["shared"]["threshold"]
    # The runtime serves the shared threshold, lowered to the loop-budget guard where the profile found one.
    guard = (entry.get("guard") or {}).get("size")
    served = [t for t in (entry["threshold"], guard) if t is not None]
    assert offload_tuner.decide(controlled.fat_result, 5000).threshold == (min(served) if served else None)
    assert main(["explain", key, "1000", "--profile", str(path)]) == 0
    out = capsys.readouterr().out
    assert "on the shared stream (2 kernels" in out and "weighted by the plan's rates" in out
    assert f"alone {format_threshold(entry['shared']['alone'])}, shared {format_threshold(entry['threshold'])}" in out
    assert main(["show", str(path)]) == 0  # the table reads it too
    assert main(["check", str(path)]) == 0  # every threshold inside its interval, the rest as calibrated


@pytest.mark.parametrize("rate", [0, -1, "often", True, float("inf")])
def test_a_plan_s_rate_must_be_a_positive_number(tmp_path, rate):
    from offload_tuner.inspection._cli import main

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"schema": 1, "kernels": {"tests.controlled:spin": {"rate": rate}}}))
    with pytest.raises(SystemExit, match="kernel tests.controlled:spin: rate must be a number > 0"):
        main(["calibrate", "tests.controlled:spin", "--plan", str(plan), "--out", str(tmp_path / "p.json"), "-q"])
    assert not (tmp_path / "p.json").exists()


def test_a_plan_s_rate_reaches_the_kernel_plan():
    from offload_tuner.inspection._cmd_calibrate import _kernel_plans

    plans = _kernel_plans({"kernels": {"m:k": {"rate": 3}, "m:j": {}}})
    assert plans["m:k"].rate == 3.0 and plans["m:j"].rate is None


def test_a_plan_s_shared_must_be_a_boolean(tmp_path):
    from offload_tuner.inspection._cli import main

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"schema": 1, "shared": "yes"}))
    with pytest.raises(SystemExit, match='"shared" must be true or false'):
        main(["calibrate", "tests.controlled:spin", "--plan", str(plan), "--out", str(tmp_path / "p.json"), "-q"])
    assert not (tmp_path / "p.json").exists()


def test_a_partial_set_of_rates_is_named_in_the_profile(monkeypatch):
    """Rates on some kernels only are ignored (equal inline work, as without any), and the profile's shared section
    names the kernels that lack one, so the reader knows why the plan's rates did not weigh the stream."""
    from offload_tuner.calibration import _shared
    from offload_tuner.calibration._choice import Candidate

    kernels = {"tests.controlled:spin": _entry(256), "tests.controlled:fat_result": _entry(None, thread=512)}
    kernels["tests.controlled:spin"]["rate"] = 2.5
    results = [_result(getattr(controlled, key.split(":")[1]), entry) for key, entry in kernels.items()]

    def fake_measure(members, pools, knobs, *, rounds, progress, siblings=None, limit_s=60.0):
        measured = [Candidate(90, 3, (1.0, 1.1), (0.01, 0.01), (1.0, 1.0))]
        return (
            [
                _shared.SharedChoice(m.spec.key, m.lane, m.threshold, _choice(256, (64, 512)), measured, 1.0)
                for m in members
            ],
            [((members[i % 2].spec.key, ()), 8) for i in range(40)],
        )

    monkeypatch.setattr(_shared, "measure_shared", fake_measure)
    events = []
    section = _shared_phase(
        results,
        kernels,
        None,
        transport(150e-6, 20e-6, 20e-6),
        KNOBS,
        EFFORTS["quick"],
        lambda e, **k: events.append((e, k)),
    )
    assert section["weighted_by"] == "inline work" and section["unrated"] == ["tests.controlled:fat_result"]
    assert ("shared", "inline work", ["tests.controlled:fat_result"]) in [
        (e, k.get("weighted_by"), k.get("unrated")) for e, k in events
    ]
    json.dumps(section)  # profile data
