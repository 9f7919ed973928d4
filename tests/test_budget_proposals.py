"""Every proposal keeps the loop budget: `retune` and an online adaptation step never propose a threshold that runs
inline a size of the mix predicted to block the loop past the profile's budget (issue 29, item 4). Synthetic
models, no timing: an O(n^2) kernel whose inline time crosses the 100 ms budget at size 151, on one core, where
offloading only adds CPU, so the makespan alone wants every call of a 64-255 mix inline."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

import offload_tuner
from offload_tuner.runtime import _stats
from offload_tuner.runtime._costmodel import CostModel
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, budget_threshold, predict
from offload_tuner.runtime._registry import spec_for
from offload_tuner.runtime.feedback import _adapt
from offload_tuner.runtime.feedback._retune import KernelModel, Traffic, retune, retune_kernel, retuned_profile
from tests.support import total, write_profile_json

RANGE = (1.0, 100_000.0)
BUDGET_S = 0.1
S = 151
"""The budget size: inline from here the model predicts more than ``BUDGET_S`` (a * 151^2 = 101 ms)."""
A = BUDGET_S / 150**2


def power(a: float, b: float) -> CostModel:
    return CostModel("power_offset", {"a": a, "b": b, "c": 0.0}, RANGE, 0.0, 20, True)


COSTS = KernelCosts(power(A, 2.0), power(0.2 * A, 2.0), power(0.2 * A, 2.0), power(100.0, 1.0))
TRANSPORT = TransportModel(2e-4, 1e-9, 2e-5, 0.0, 2e-5, 0.0)
KNOBS = PolicyKnobs(concurrency=4, workers=1, cores=1, loop_budget_s=BUDGET_S)
OFF = dataclasses.replace(KNOBS, loop_budget_s=None)
NEAR = {64: 100, 128: 100}
"""Sizes 64-255: just below the budget size and above it."""


def timed(mix: dict[int, int], knobs: PolicyKnobs = KNOBS) -> Traffic:
    """The mix, with inline samples timed as the model says (a kernel behaving as calibrated)."""
    t = Traffic(inline=dict(mix))
    for floor in mix:
        for i in range(8):
            n = floor + i * floor // 8
            t.samples["inline"].append((n, predict(COSTS, TRANSPORT, knobs, n).inline_s))
    return t


def test_the_synthetic_model_puts_the_budget_size_where_the_tests_expect_it():
    assert budget_threshold(COSTS, TRANSPORT, KNOBS, (64.0, 255.0)) == S
    assert predict(COSTS, TRANSPORT, KNOBS, S - 1).inline_s <= BUDGET_S < predict(COSTS, TRANSPORT, KNOBS, S).inline_s


@pytest.mark.parametrize("current", [None, 190, 1000])
def test_retune_keeps_a_threshold_within_the_budget_and_says_the_budget_decided(current):
    """The issue's case: calibrated past what the served mix needs, the makespan alone keeps every call inline."""
    model = KernelModel("k", COSTS, current, (16.0, 700.0))
    r = retune_kernel(model, TRANSPORT, KNOBS, timed(NEAR), current)
    assert r.new is not None and r.new <= S
    assert r.budget_size == S
    assert r.budget is not None and r.budget.startswith(f"kept within the loop budget: inline from size {S} ")
    assert "> budget 100 ms" in r.budget


@pytest.mark.parametrize("current", [None, 190, 1000])
def test_without_a_budget_retune_keeps_the_makespans_larger_choice(current):
    """The control: the same statistics and models with the budget off keep sizes past 151 inline."""
    model = KernelModel("k", COSTS, current, (16.0, 700.0))
    r = retune_kernel(model, TRANSPORT, OFF, timed(NEAR, OFF), current)
    assert r.new is None or r.new > S
    assert r.budget is None and r.budget_size is None


def test_calibrated_at_16_and_served_past_the_budget_size_retune_stops_at_it():
    """The issue's case: calibrated at 16, served 64-255; the makespan alone runs every call inline (never)."""
    model = KernelModel("k", COSTS, 16, (16.0, 700.0))
    assert retune_kernel(model, TRANSPORT, OFF, timed(NEAR, OFF), 16).new is None
    r = retune_kernel(model, TRANSPORT, KNOBS, timed(NEAR), 16)
    assert r.new == S and r.budget is not None and r.budget.startswith("kept within the loop budget")


def test_a_mix_within_the_budget_retunes_as_without_one():
    small = {16: 100, 32: 100}  # sizes 16-63: inline at most 18 ms
    model = KernelModel("k", COSTS, 16, (16.0, 700.0))
    r = retune_kernel(model, TRANSPORT, KNOBS, timed(small), 16)
    assert r.budget is None and r.budget_size is None
    assert r.new == retune_kernel(model, TRANSPORT, OFF, timed(small, OFF), 16).new


def profile_data(threshold: int | None, knobs: PolicyKnobs = KNOBS) -> dict:
    return {
        "executor": {"kind": "thread"},
        "policy": knobs.to_json(),
        "transport": {"model": TRANSPORT.to_json()},
        "kernels": {
            KEY: {"threshold": threshold, "status": "ok", "costs": COSTS.to_json(), "workload_range": [16.0, 700.0]}
        },
    }


KEY = spec_for(total).key


def test_retune_of_a_profile_records_why_the_budget_decided():
    data = profile_data(190)
    (r,) = retune(data, {KEY: timed(NEAR)})
    assert r.new is not None and r.new <= S
    written = retuned_profile(data, [r], "stats.json", "now")["kernels"][KEY]
    assert written["threshold"] == r.new and written["retuned"]["budget"] == r.budget


def install(tmp_path, pool, threshold: int | None, knobs: PolicyKnobs) -> None:
    path = write_profile_json(tmp_path / "p.json", {KEY: threshold}, executor_kind="thread")
    written = json.loads(path.read_text())
    data = profile_data(threshold, knobs)
    written["kernels"][KEY].update({k: v for k, v in data["kernels"][KEY].items() if k != "threshold"})
    written.update({k: data[k] for k in ("policy", "transport")})
    path.write_text(json.dumps(written))
    offload_tuner.set_executor(pool)
    offload_tuner.load_profile(path)


def one_step(sizes: list[int], threshold: int | None, knobs: PolicyKnobs) -> list[_adapt.Adapted]:
    """One window of these calls, counted and timed as the model says under ``threshold``; the step's changes."""
    stats = _stats.stats_for(total)
    _adapt._adapter.step(0.0)  # the first look opens a window
    for n in sizes:
        p = predict(COSTS, TRANSPORT, knobs, n)
        b = _stats.bucket_of(n)
        if threshold is not None and n >= threshold:
            stats.offload[b] += 1
            stats.record("loop", n, p.offload_loop_s)
        else:
            stats.inline[b] += 1
            stats.record("inline", n, p.inline_s)
    return _adapt._adapter.step(1.0)


SPREAD = [int(64 * 4 ** ((i + 0.5) / 300)) for i in range(300)]  # 64-255, log-even
WIDE = [int(64 * 16 ** ((i + 0.5) / 300)) for i in range(300)]  # 64-1023: a 2x step from 600 is still past 151


@pytest.mark.parametrize("sizes, current", [(SPREAD, None), (SPREAD, 190), (WIDE, 600)])
def test_an_adaptation_step_keeps_a_threshold_within_the_budget(tmp_path, sizes, current):
    with ThreadPoolExecutor(1) as pool:
        install(tmp_path, pool, current, KNOBS)
        (change,) = one_step(sizes, current, KNOBS)
        decision = offload_tuner.decide(total, [0])
    assert change.threshold is not None and change.threshold <= S, change
    assert decision.threshold == change.threshold
    assert change.phase == "accepted" and "no trial: the threshold in force is past the loop budget" in change.why
    assert f"kept within the loop budget: inline from size {S} " in decision.reason


@pytest.mark.parametrize("sizes, current", [(SPREAD, None), (SPREAD, 190), (WIDE, 600)])
def test_without_a_budget_an_adaptation_step_stays_above_the_budget_size(tmp_path, sizes, current):
    """The control: the budget off, the step keeps (or tries) a threshold that runs sizes past 151 inline."""
    with ThreadPoolExecutor(1) as pool:
        install(tmp_path, pool, current, OFF)
        changes = one_step(sizes, current, OFF)
        threshold = offload_tuner.decide(total, [0]).threshold
    assert threshold is None or threshold > S, changes
    assert all("loop budget" not in c.why for c in changes)


def retune_cli(tmp_path, threshold: int | None, knobs: PolicyKnobs = KNOBS) -> int:
    """``offload-tuner retune`` run on a profile at ``threshold`` and the stats of the NEAR mix, as files."""
    from offload_tuner.inspection._cli import main
    from offload_tuner.runtime._host import host_fingerprint
    from offload_tuner.runtime.feedback._statsfile import STATS_SCHEMA

    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"schema": 3, "host": host_fingerprint(), **profile_data(threshold, knobs)}))
    t = timed(NEAR, knobs)
    kernels = {
        KEY: {
            "calls": {"inline": {str(k): v for k, v in t.inline.items()}, "offload": {}},
            "samples": {
                kind: [[1000.0 + i, n, s] for i, (n, s) in enumerate(rows)] for kind, rows in t.samples.items()
            },
        }
    }
    process = {"pid": 1, "started": 1.0, "updated": 2.0, "sample_every": 64, "kernels": kernels}
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"schema": STATS_SCHEMA, "host": "h", "processes": {"1@1.0": process}}))
    return main(["retune", str(profile), "--stats", str(stats)])


def test_the_retune_command_prints_why_the_budget_decided(tmp_path, capsys):
    assert retune_cli(tmp_path, 190) == 0
    out = capsys.readouterr().out
    assert f"{KEY}: 190 -> " in out and "  kept within the loop budget: inline from size" in out
