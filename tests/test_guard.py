"""The loop budget at every size (issue 29, item 3): each profile entry records a guard size from which inline calls
are predicted to block the loop past the budget while offloading blocks it less, searched beyond the measured range
and marked extrapolated there; the runtime offloads from it whatever the threshold. Synthetic models, no timing: an
O(n^2) kernel calibrated on sizes 1-256 whose inline time crosses the 100 ms budget near size 1000."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

import offload_tuner
from offload_tuner.calibration._calibrate import _guard
from offload_tuner.runtime._costmodel import CostModel
from offload_tuner.runtime._entries import Origin
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, guard_size, predict
from offload_tuner.runtime._profile import ProfileError, validate_profile
from offload_tuner.runtime._registry import spec_for
from tests.support import total, write_profile_json

MEASURED = (1.0, 256.0)
TOP = 256
BUDGET_S = 0.1
A = BUDGET_S / 1000**2
"""Inline ``A * n^2``: 100 ms at size 1000, four times the calibrated top."""


def power(a: float, b: float) -> CostModel:
    return CostModel("power_offset", {"a": a, "b": b, "c": 0.0}, MEASURED, 0.0, 20, True)


def costs(loop: CostModel) -> KernelCosts:
    """The O(n^2) kernel whose offloaded call blocks the loop ``loop(n)`` (pickling on the caller)."""
    return KernelCosts(power(A, 2.0), loop, power(1e-6, 1.0), power(8.0, 1.0))


LINEAR = costs(power(1e-6, 1.0))
"""Offloaded loop time grows as n: 1 ms at size 1000."""
STEEPER = costs(power(1e-12, 3.0))
"""Offloaded loop time grows as n^3: below the inline time up to n = 100,000, past it beyond."""
TRANSPORT = TransportModel(2e-4, 1e-9, 2e-5, 0.0, 2e-5, 0.0)
KNOBS = PolicyKnobs(concurrency=4, workers=1, cores=1, loop_budget_s=BUDGET_S)
OFF = dataclasses.replace(KNOBS, loop_budget_s=None)
KEY = spec_for(total).key


def test_a_kernel_whose_inline_time_grows_faster_gets_an_extrapolated_guard():
    found = guard_size(LINEAR, TRANSPORT, KNOBS, MEASURED)
    assert found is not None
    size, extrapolated = found
    assert extrapolated and size > TOP
    before, at = predict(LINEAR, TRANSPORT, KNOBS, size - 1), predict(LINEAR, TRANSPORT, KNOBS, size)
    assert before.inline_s <= BUDGET_S < at.inline_s and at.offload_loop_s < at.inline_s


def test_a_guard_inside_the_measured_range_is_not_marked_extrapolated():
    size, extrapolated = guard_size(LINEAR, TRANSPORT, KNOBS, (1.0, 4096.0)) or (None, None)
    assert size == guard_size(LINEAR, TRANSPORT, KNOBS, MEASURED)[0]  # type: ignore[index]
    assert extrapolated is False


def test_a_kernel_whose_offloaded_loop_time_grows_faster_gets_no_guard():
    """Past the budget from about 1000 up, offloading blocks the loop less only up to 100,000: sending its large
    calls away would block the loop more, so no guard."""
    assert predict(STEEPER, TRANSPORT, KNOBS, 2000).offload_loop_s < predict(STEEPER, TRANSPORT, KNOBS, 2000).inline_s
    assert guard_size(STEEPER, TRANSPORT, KNOBS, MEASURED) is None
    assert _guard(STEEPER, TRANSPORT, KNOBS, [1.0, 256.0]) is None


def test_with_the_budget_off_there_is_no_guard():
    assert guard_size(LINEAR, TRANSPORT, OFF, MEASURED) is None


def test_calibration_records_the_guard_as_profile_data():
    size, _ = guard_size(LINEAR, TRANSPORT, KNOBS, MEASURED)  # type: ignore[misc]
    assert _guard(LINEAR, TRANSPORT, KNOBS, [1.0, 256.0]) == {"size": size, "extrapolated": True}


def profile(tmp_path, threshold: int | None, guard: dict | str | None = "computed", kind: str = "thread"):
    """A profile for ``total`` with the synthetic models, its threshold and guard (``"computed"``: guard_size's)."""
    path = write_profile_json(tmp_path / "p.json", {KEY: threshold}, executor_kind=kind)
    data = json.loads(path.read_text())
    entry = data["kernels"][KEY]
    entry.update(costs=LINEAR.to_json(), calibrated_range=list(MEASURED), workload_range=list(MEASURED))
    if guard == "computed":
        entry["guard"] = _guard(LINEAR, TRANSPORT, KNOBS, list(MEASURED))
    elif guard != "missing":
        entry["guard"] = guard
    data.update(policy=KNOBS.to_json(), transport={"model": TRANSPORT.to_json()})
    path.write_text(json.dumps(data))
    return path


def decisions(path, *sizes: int) -> list[offload_tuner.Decision]:
    with ThreadPoolExecutor(1) as pool:
        offload_tuner.set_executor(pool)
        offload_tuner.load_profile(path)
        return [offload_tuner.decide(total, [0] * n) for n in sizes]


def test_a_never_profile_offloads_a_call_at_8x_the_calibrated_top_and_says_extrapolated(tmp_path):
    size, _ = guard_size(LINEAR, TRANSPORT, KNOBS, MEASURED)  # type: ignore[misc]
    far = 8 * TOP
    p = predict(LINEAR, TRANSPORT, KNOBS, far)
    assert p.inline_s > BUDGET_S > p.offload_loop_s  # the acceptance's premise
    below, at = decisions(profile(tmp_path, None), size - 1, far)
    assert at.offload and at.origin is Origin.PROFILE
    assert at.reason.startswith(f"guard: inline from size {size} is predicted to block the loop past the budget")
    assert f"extrapolated beyond the calibrated top {TOP}" in at.reason and f"size {far} >= guard {size}" in at.reason
    assert not below.offload and below.threshold == size


def test_without_a_guard_a_never_profile_keeps_every_call_inline(tmp_path):
    for guard in ("missing", None):
        (at,) = decisions(profile(tmp_path, None, guard), 8 * TOP)
        assert not at.offload and at.threshold is None and "guard" not in at.reason


def test_the_guard_decides_only_between_itself_and_a_larger_threshold(tmp_path):
    size, _ = guard_size(LINEAR, TRANSPORT, KNOBS, MEASURED)  # type: ignore[misc]
    small, between, past = decisions(profile(tmp_path, 4 * size), 10, 2 * size, 5 * size)
    assert not small.offload and between.offload and past.offload
    assert between.reason.startswith("guard:") and past.reason.startswith("profile: size")
    (low,) = decisions(profile(tmp_path, 100), 2 * size)  # a threshold below the guard: the profile decides
    assert low.offload and low.threshold == 100 and "guard" not in low.reason


@pytest.mark.parametrize(
    "guard, field",
    [
        ("big", '"guard" must be an object or null'),
        ({"size": 0, "extrapolated": True}, "guard size must be an integer"),
        ({"size": True, "extrapolated": True}, "guard size must be an integer"),
        ({"size": 12.5, "extrapolated": False}, "guard size must be an integer"),
        ({"extrapolated": False}, "guard size must be an integer"),
        ({"size": 100, "extrapolated": "yes"}, "guard extrapolated must be true or false"),
        ({"size": 100}, "guard extrapolated must be true or false"),
    ],
)
def test_a_malformed_guard_is_refused_naming_the_kernel_and_field(guard, field):
    data = {"schema": 3, "kernels": {"m:k": {"threshold": None, "guard": guard}}}
    with pytest.raises(ProfileError, match="kernel 'm:k'") as err:
        validate_profile(data, "p.json")
    assert field in str(err.value)


def test_show_and_explain_mention_the_guard(tmp_path, capsys):
    from offload_tuner.inspection._cli import main

    size, _ = guard_size(LINEAR, TRANSPORT, KNOBS, MEASURED)  # type: ignore[misc]
    path = profile(tmp_path, None, kind="process")
    assert main(["show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert f"{KEY}: guard: inline from size {size} " in shown and "extrapolated beyond the calibrated top 256" in shown
    assert main(["explain", KEY, str(8 * TOP), "--profile", str(path)]) == 0
    explained = capsys.readouterr().out
    assert (
        f"guard: inline from size {size} " in explained and "offloaded from there whatever the threshold" in explained
    )


# ------------------------------------------------------------------ the co-hosted benchmark's mix-range case


def test_the_mixrange_case_serves_assumed_mixes_up_to_5x_their_calibrated_top():
    from benchmarks.workload import MIXRANGE_FACTOR, Workload, mixrange_workloads

    kernels = {
        "a:assumed": {"status": "ok", "workload_source": "assumed", "calibrated_range": [4.0, 256.0]},
        "a:stated": {"status": "ok", "workload_source": "plan", "calibrated_range": [4.0, 256.0]},
        "a:failed": {"status": "failed", "workload_source": "assumed", "calibrated_range": [4.0, 256.0]},
    }
    assert MIXRANGE_FACTOR == 5
    assert mixrange_workloads({"kernels": kernels}) == [Workload("a:assumed", 4, 1280)]


def entry(**policies: tuple[float, float]) -> dict:
    """A benchmark entry whose summary holds (normalised makespan, p99 lag) per policy."""
    return {"summary": {n: {"makespan_s": m, "lag_p99_s": lag} for n, (m, lag) in policies.items()}, "same_as": {}}


def test_the_mixrange_oracle_is_the_best_static_within_the_budget():
    from benchmarks.workload import mixrange_verdicts, within_budget

    e = entry(
        tuned=(1.05, 0.02), never=(0.9, 0.6), **{"T=64": (1.0, 0.01), "T=512": (0.95, 0.3), "always": (1.2, 0.01)}
    )
    e["within_budget"] = w = within_budget(e, 0.1)
    assert w["oracle"] == "T=64" and w["statics_within"] == ["T=64", "always"]  # never and T=512 pass the budget
    assert w["tuned_vs_oracle"] == pytest.approx(1.05)
    v = mixrange_verdicts(e)
    assert v["tuned_lag_within_budget"] and v["makespan_within_1.10x"]


def test_the_mixrange_verdicts_fail_a_tuned_policy_past_the_budget_or_slow_and_judge_the_confirmation():
    from benchmarks.workload import mixrange_verdicts, within_budget

    e = entry(tuned=(1.0, 0.5), never=(1.0, 0.5), **{"T=64": (1.0, 0.01)})
    e["within_budget"] = within_budget(e, 0.1)
    assert mixrange_verdicts(e)["tuned_lag_within_budget"] is False
    e = entry(tuned=(1.0, 0.05), **{"T=64": (1.0, 0.01)})
    e["within_budget"] = within_budget(e, 0.1)
    e["within_budget"]["confirmation"] = {"ratio": 1.2, "tuned_lag_p99_s": 0.05}
    assert mixrange_verdicts(e)["makespan_within_1.10x"] is False
    e = entry(tuned=(1.0, 0.5), never=(1.0, 0.5))  # no static keeps the budget: nothing to hold tuned to
    e["within_budget"] = within_budget(e, 0.1)
    assert mixrange_verdicts(e) == {
        "some_static_within_budget": False,
        "tuned_lag_within_budget": None,
        "makespan_within_1.10x": None,
    }
