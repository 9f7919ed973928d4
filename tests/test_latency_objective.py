"""The latency objective: the choice by p99 call latency on synthetic candidates, the call latency the reference
workload records, the knob in the profile (validated), and calibrate/show/explain end to end."""

from __future__ import annotations

import json
import time

import pytest

from offload_tuner.calibration._candidates import Candidate
from offload_tuner.calibration._choice import choose
from offload_tuner.calibration._latency import LATENCY_TIE_S, choose_for, choose_latency
from offload_tuner.calibration._workload import run_calls
from offload_tuner.inspection._report_choice import choice_lines, objective_text
from offload_tuner.runtime._policy import PolicyKnobs
from offload_tuner.runtime._profile import SCHEMA_VERSION, ProfileError, parse_profile

RANGE = (8.0, 512.0)


def cand(t, makespan, latency, lag=0.01, cpu=0.5, offloaded=0, rounds=3, spread=0.02):
    """A candidate measured ``rounds`` times around its medians (a small, equal spread in every series)."""
    factors = [1 - spread, 1.0, 1 + spread][:rounds]
    return Candidate(
        t,
        offloaded,
        tuple(makespan * f for f in factors),
        (lag,) * rounds,
        (cpu,) * rounds,
        tuple(latency * f for f in factors),
    )


def decide(candidates, **kw):
    kw.setdefault("rounds", 3)
    kw.setdefault("workload_range", RANGE)
    kw.setdefault("loop_budget_s", 0.1)
    return choose_latency(candidates, **kw)


# ----------------------------------------------------------------------------------------- the choice


def test_the_lowest_p99_call_latency_wins_where_throughput_would_choose_otherwise():
    # never: fastest makespan, but every call waits behind the others' inline calls; 128 offloads the large ones.
    cs = [cand(0, 0.30, 0.090), cand(128, 0.24, 0.040), cand(256, 0.21, 0.070), cand(None, 0.20, 0.120)]
    assert choose(cs, rounds=3, workload_range=RANGE, loop_budget_s=0.1).threshold is None
    latency = decide(cs)
    assert latency.threshold == 128 and latency.best == 128 and latency.objective == "latency"
    assert "latency objective" in latency.reason and "1.20x the fastest measured (never)" in latency.reason


def test_p99_latencies_within_the_noise_band_tie_and_the_faster_makespan_decides():
    cs = [cand(64, 0.30, 0.050), cand(128, 0.22, 0.052), cand(None, 0.20, 0.200)]
    choice = decide(cs)
    assert set(choice.tied) == {64, 128}
    assert choice.threshold == 128  # 2 ms apart is within the band; 128 is 27% faster
    assert "fastest makespan" in choice.reason


def test_ties_on_latency_and_makespan_fall_to_the_throughput_objectives_secondary_rules():
    # Equal latency and makespan: the lowest loop lag, then as in _choice (least CPU, fewest offloaded).
    cs = [cand(64, 0.20, 0.05, lag=0.004, offloaded=10), cand(256, 0.20, 0.05, lag=0.060, offloaded=2)]
    assert decide(cs).threshold == 64
    cs = [cand(64, 0.20, 0.05, offloaded=10), cand(256, 0.20, 0.05, offloaded=2)]
    assert decide(cs).threshold == 256


def test_an_absolute_tie_covers_latencies_below_the_timers_jitter():
    cs = [cand(64, 0.30, 0.0002), cand(None, 0.10, 0.0002 + LATENCY_TIE_S * 0.9)]
    assert decide(cs).threshold is None


def test_the_loop_budget_still_rules_out_a_candidate_with_the_lowest_latency():
    cs = [cand(64, 0.30, 0.060, lag=0.02), cand(None, 0.20, 0.030, lag=0.25)]
    choice = decide(cs)
    assert choice.threshold == 64 and choice.over_budget == (None,)
    assert "past the 100 ms budget rules out never" in choice.reason
    capped = decide([cand(64, 0.30, 0.060), cand(256, 0.2, 0.030)], budget_cap=128, capped=True)
    assert capped.threshold == 64


def test_noisy_latencies_widen_the_band_and_the_regret_bound():
    calm = decide([cand(64, 0.2, 0.050), cand(128, 0.2, 0.058)])
    noisy = decide([cand(64, 0.2, 0.050, spread=0.15), cand(128, 0.2, 0.058, spread=0.15)])
    assert calm.tied == (64,) and set(noisy.tied) == {64, 128}
    assert noisy.band > calm.band and noisy.regret > calm.regret


def test_the_interval_spans_what_a_rerun_may_choose_by_latency():
    cs = [cand(32, 0.3, 0.200), cand(64, 0.25, 0.050), cand(128, 0.22, 0.051), cand(None, 0.2, 0.300)]
    lo, hi = decide(cs).interval
    assert lo is not None and 32 < lo <= 64
    assert hi is not None and 128 <= hi <= 512


def test_candidates_without_call_latencies_cannot_be_chosen_by_latency():
    old = Candidate(64, 3, (0.2, 0.2), (0.01, 0.01), (0.5, 0.5))
    with pytest.raises(ValueError, match="call latencies"):
        decide([old, cand(None, 0.2, 0.05)])
    with pytest.raises(ValueError, match="at least one"):
        decide([])


def test_choose_for_dispatches_by_objective_and_refuses_an_unknown_one():
    cs = [cand(128, 0.24, 0.040), cand(None, 0.20, 0.120)]
    how = {"rounds": 3, "workload_range": RANGE, "loop_budget_s": 0.1}
    assert choose_for("throughput", cs, **how) == choose(cs, **how)
    assert choose_for("latency", cs, **how).threshold == 128
    with pytest.raises(ValueError, match="objective"):
        choose_for("makespan", cs, **how)


def test_a_candidates_call_latencies_round_trip_and_old_records_read_without_them():
    c = cand(64, 0.2, 0.05)
    assert Candidate.from_json(c.to_json()) == c
    old = {"threshold": 64, "offloaded": 1, "makespan_s": [0.2], "lag_p99_s": [0.0], "cpu_s": [0.1]}
    assert Candidate.from_json(old).latency_p99 is None and "latency_p99_s" not in Candidate.from_json(old).to_json()
    with pytest.raises(ValueError, match="one call latency per round"):
        Candidate(64, 1, (0.2, 0.2), (0.0, 0.0), (0.1, 0.1), (0.05,))


# ------------------------------------------------------------------------------- the measured latency


def test_a_calls_latency_includes_waiting_behind_another_callers_inline_call():
    block_s = 0.02

    async def inline(args, n):
        time.sleep(block_s)  # an inline call: the loop is blocked

    stats = run_calls([((), 1)] * 4, 2, inline)
    # Both callers are ready at the start; the second waits for the first's call, then runs its own.
    assert stats.call_p99_s >= 2 * block_s
    assert stats.call_p99_s < stats.makespan_s


# ------------------------------------------------------------------------------------ knob and profile


def test_the_objective_knob_is_validated_and_round_trips_through_the_profile_policy():
    knobs = PolicyKnobs(concurrency=4, workers=1, cores=2, objective="latency")
    assert knobs.to_json()["objective"] == "latency" and PolicyKnobs.from_json(knobs.to_json()) == knobs
    assert PolicyKnobs.from_json({"concurrency": 4, "workers": 1, "cores": 2}).objective == "throughput"
    with pytest.raises(ValueError, match="objective"):
        PolicyKnobs(workers=1, cores=2, objective="fast")


@pytest.mark.parametrize("policy, message", [({"objective": "p99"}, "objective must be one of"), ([], '"policy"')])
def test_a_profile_with_a_bad_objective_is_refused_naming_the_field(policy, message):
    data = {"schema": SCHEMA_VERSION, "executor": {"kind": "process"}, "kernels": {}, "policy": policy}
    with pytest.raises(ProfileError, match=message):
        parse_profile(json.dumps(data), "x.json")


def test_profiles_with_either_objective_or_none_load():
    for policy in ({"objective": "latency"}, {"objective": "throughput"}, {"concurrency": 4}):
        data = {"schema": SCHEMA_VERSION, "executor": {"kind": "process"}, "kernels": {}, "policy": policy}
        parse_profile(json.dumps(data), "x.json")


def test_show_and_explain_say_which_objective_decided():
    assert objective_text({"policy": {"objective": "latency"}}).startswith("objective: latency")
    assert objective_text({"policy": {}}).startswith("objective: throughput")
    load = {"objective": "latency", "candidates": [cand(64, 0.2, 0.05).to_json(), cand(None, 0.1, 0.2).to_json()]}
    lines = choice_lines(load, 64, lambda t: "never" if t is None else str(t), lambda s: f"{s * 1e3:.0f} ms")
    assert any("decided by the latency objective" in line and "64 50 ms, never 200 ms" in line for line in lines)
    assert not choice_lines({"objective": "throughput", "candidates": []}, 64, str, str)


def test_calibrate_with_the_latency_objective_records_and_reports_it(tmp_path, capsys):
    from offload_tuner.inspection._cli import EXIT_OK, main

    out = tmp_path / "p.json"
    kernel = "tests.controlled:spin"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"schema": 1, "kernels": {kernel: {"min_size": 4, "max_size": 16384}}}))
    args = ["calibrate", kernel, "--effort", "quick", "--workers", "2", "--plan", str(plan), "--out", str(out)]
    assert main([*args, "--objective", "latency", "--quiet"]) == EXIT_OK
    data = json.loads(out.read_text())
    assert data["policy"]["objective"] == "latency"
    load = data["kernels"][kernel]["load"]
    assert load["objective"] == "latency" and load["reason"].startswith("latency objective")
    assert all(len(c["latency_p99_s"]) == len(c["makespan_s"]) for c in load["candidates"])
    assert "objective: latency" in capsys.readouterr().out
    assert main(["show", str(out)]) == EXIT_OK
    assert "objective: latency" in capsys.readouterr().out
    assert main(["explain", kernel, "64", "--profile", str(out)]) == EXIT_OK
    assert "decided by the latency objective" in capsys.readouterr().out
