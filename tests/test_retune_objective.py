"""Retune and online adaptation do not undo a latency calibration: a profile whose thresholds were chosen by p99
call latency (``policy.objective``) keeps them against a makespan proposal, which says nothing about that tail;
only the loop budget moves them, and the result says what the makespan proposed. Synthetic models, no timing
(those of ``test_budget_proposals``: an O(n^2) kernel on one core whose makespan alone wants a 64-255 mix inline)."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import offload_tuner
from offload_tuner.runtime._profile import validate_profile
from offload_tuner.runtime.feedback._retune import LATENCY_HELD, KernelModel, retune, retune_kernel, retuned_profile
from tests.support import total
from tests.test_budget_proposals import (
    COSTS,
    KEY,
    KNOBS,
    NEAR,
    OFF,
    SPREAD,
    TRANSPORT,
    S,
    install,
    one_step,
    profile_data,
    retune_cli,
    timed,
)

LATENCY_OFF = dataclasses.replace(OFF, objective="latency")
LATENCY = dataclasses.replace(KNOBS, objective="latency")


def test_a_latency_profile_keeps_its_threshold_against_the_makespans_proposal():
    model = KernelModel("k", COSTS, 16, (16.0, 700.0))
    throughput = retune_kernel(model, TRANSPORT, OFF, timed(NEAR, OFF), 16)
    assert throughput.new is None and throughput.held is None  # the control: the makespan runs it all inline
    r = retune_kernel(model, TRANSPORT, LATENCY_OFF, timed(NEAR, LATENCY_OFF), 16)
    assert (r.new, r.proposed, r.held) == (16, None, LATENCY_HELD)
    assert r.gain == 0.0


def test_the_loop_budget_still_moves_a_latency_profiles_threshold():
    model = KernelModel("k", COSTS, 1000, (16.0, 700.0))
    r = retune_kernel(model, TRANSPORT, LATENCY, timed(NEAR, LATENCY), 1000)
    assert r.new is not None and r.new <= S and r.budget_size == S
    assert r.budget is not None and r.budget.startswith("kept within the loop budget")


def test_a_proposal_equal_to_the_threshold_in_force_says_nothing_held():
    small = {16: 100, 32: 100}
    model = KernelModel("k", COSTS, 16, (16.0, 700.0))
    kept = retune_kernel(model, TRANSPORT, OFF, timed(small, OFF), 16).new
    r = retune_kernel(KernelModel("k", COSTS, kept, (16.0, 700.0)), TRANSPORT, LATENCY_OFF, timed(small), kept)
    assert r.new == kept and r.held is None


def test_an_adaptation_step_moves_a_throughput_profile(tmp_path):
    """The control for the next test: the same calls under the throughput objective try a larger threshold."""
    with ThreadPoolExecutor(1) as pool:
        install(tmp_path, pool, 16, OFF)
        moved = one_step(SPREAD, 16, OFF)
    assert moved and moved[0].threshold != 16


def test_an_adaptation_step_leaves_a_latency_profile_alone(tmp_path):
    with ThreadPoolExecutor(1) as pool:
        install(tmp_path, pool, 16, LATENCY_OFF)
        assert one_step(SPREAD, 16, LATENCY_OFF) == []
        assert offload_tuner.decide(total, [0] * 100).threshold == 16


def test_the_retune_command_says_what_it_held(tmp_path, capsys):
    assert retune_cli(tmp_path, 16, LATENCY_OFF) == 0
    out = capsys.readouterr().out
    assert f"{KEY}: 16 -> 16 " in out and f"  the makespan model proposed never; {LATENCY_HELD}" in out


def test_a_retuned_latency_profile_records_what_was_held_and_keeps_its_measured_records():
    data = profile_data(16, LATENCY_OFF)
    data["kernels"][KEY].update(interval=[8, 32], extrapolated_offload={"size": 5000, "gain": 1.4})
    (r,) = retune(data, {KEY: timed(NEAR, LATENCY_OFF)})
    out = retuned_profile(data, [r], "stats.json", "now")
    entry = out["kernels"][KEY]
    assert entry["threshold"] == 16 and entry["retuned"]["held"] == {"proposed": None, "why": LATENCY_HELD}
    assert entry["interval"] == [8, 32] and entry["extrapolated_offload"] == {"size": 5000, "gain": 1.4}
    validate_profile({"schema": 3, **out}, "retuned.json")  # still a valid profile


def test_a_latency_threshold_within_the_budget_is_not_said_to_be_budget_bound():
    """The makespan's proposal (never) is past the budget, but the threshold in force is not: the budget did not
    move it, so the result carries no budget sentence (the CLI would print it as the reason)."""
    model = KernelModel("k", COSTS, 16, (16.0, 700.0))
    throughput = retune_kernel(model, TRANSPORT, KNOBS, timed(NEAR, KNOBS), 16)
    assert throughput.budget is not None  # the control: the makespan's choice is capped by the budget
    r = retune_kernel(model, TRANSPORT, LATENCY, timed(NEAR, LATENCY), 16)
    assert (r.new, r.held) == (16, LATENCY_HELD)
    assert r.budget is None


def test_a_held_shared_threshold_is_not_recorded_as_retuned():
    data = profile_data(16, LATENCY_OFF)
    data["kernels"][KEY]["shared"] = {"lane": "process", "threshold": 16}
    (r,) = retune(data, {KEY: timed(NEAR, LATENCY_OFF)})
    out = retuned_profile(data, [r], "stats.json", "now")
    assert out["kernels"][KEY]["shared"] == {"lane": "process", "threshold": 16}


def test_a_latency_threshold_the_makespan_agrees_with_keeps_its_measured_records_too():
    """Whether the makespan happens to propose the threshold in force (nothing held) must not decide what a latency
    profile keeps: the threshold is as measured either way, and so are its interval, extrapolated size and shared
    choice. The control: a throughput profile's retune weighs production's mix and drops them."""
    small = {16: 100, 32: 100}
    kept = retune_kernel(KernelModel("k", COSTS, 16, (16.0, 700.0)), TRANSPORT, OFF, timed(small, OFF), 16).new
    records = {
        "interval": [8, 32],
        "extrapolated_offload": {"size": 5000, "gain": 1.4},
        "shared": {"lane": "process", "threshold": kept},
    }
    for knobs, keeps in ((LATENCY_OFF, True), (OFF, False)):
        data = profile_data(kept, knobs)
        data["kernels"][KEY].update(json.loads(json.dumps(records)))
        (r,) = retune(data, {KEY: timed(small, knobs)})
        assert r.new == kept and r.held is None
        entry = retuned_profile(data, [r], "stats.json", "now")["kernels"][KEY]
        assert all((entry.get(field) == value) is keeps for field, value in records.items()), (knobs.objective, entry)
