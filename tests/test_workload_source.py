"""Where a kernel's mix comes from: the plan's workload_range, else @kernel(workload=...), else assumed (the
measured range), recorded in the profile, shown by calibrate/show/explain and checked by drift."""

from __future__ import annotations

import json

import pytest

from offload_tuner import kernel
from offload_tuner.calibration._settings import KernelPlan, stated_mix
from offload_tuner.inspection._cli import EXIT_OK, main
from offload_tuner.inspection._report import format_mixes, mix_text
from offload_tuner.runtime._registry import spec_for
from tests import controlled
from tests.test_retune import KEY, LOG_UNIFORM, profile_data, write

SPIN = "tests.controlled:spin"
ECHO = "tests.controlled:echo"
STATED = "tests.test_workload_source:stated_spin"


@kernel(size=lambda data: len(data) // controlled.ELEMENT_BYTES, sample=controlled._payload, workload=(64, 2048))
def stated_spin(data: bytes) -> int:
    return controlled.spin(data)


# ------------------------------------------------------------------------------------------- precedence


def test_the_plan_overrides_the_decorator_which_overrides_the_assumed_range():
    with_mix = KernelPlan(min_size=4, workload_range=(10, 20))
    assert stated_mix(with_mix, (64, 2048)) == (with_mix, "plan")
    plan, source = stated_mix(KernelPlan(min_size=4), (64, 2048))
    assert source == "kernel" and plan.workload_range == (64, 2048) and plan.min_size == 4
    assert stated_mix(KernelPlan(min_size=4), None) == (KernelPlan(min_size=4), "assumed")
    assert stated_mix(None, None) == (KernelPlan(), "assumed")
    assert stated_mix(None, (3, 3))[0].workload_range == (3, 3)


def test_the_decorator_stores_the_mix_on_the_spec():
    assert spec_for(stated_spin).workload == (64, 2048)
    assert spec_for(controlled.spin).workload is None


@pytest.mark.parametrize(
    ("workload", "says"),
    [
        ((0, 10), "positive"),
        ((100, 10), "lo 100 is above hi 10"),
        ((1, 2, 3), "two sizes"),
        (5, "two sizes"),
        ("ab", "two sizes"),
        ((1.5, 10), "not an integer"),
        ((-1, 10), "negative"),
        ((True, 10), "not an integer"),
    ],
)
def test_a_bad_decorator_mix_is_refused_naming_the_problem(workload, says):
    with pytest.raises(ValueError, match="kernel\\(workload=...\\)") as info:
        kernel(workload=workload)
    assert says in str(info.value)


# --------------------------------------------------------------------------------- calibrate, show, explain


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """spin with the plan's mix, stated_spin with its decorator's (its ladder capped below the mix's top by the
    plan's max_size), echo with neither."""
    folder = tmp_path_factory.mktemp("mix")
    out, plan = folder / "profile.json", folder / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "schema": 1,
                "kernels": {
                    SPIN: {"min_size": 4, "max_size": 4096, "workload_range": [1024, 4096]},
                    STATED: {"min_size": 4, "max_size": 1024},
                    ECHO: {"min_size": 4, "max_size": 4096},
                },
            }
        )
    )
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            ["calibrate", SPIN, STATED, ECHO, "--effort", "quick", "--workers", "2", "--plan", str(plan)]
            + ["--out", str(out), "--quiet"]
        )
    assert code == EXIT_OK
    return out, printed.getvalue()


def test_calibrate_records_where_each_mix_came_from(calibrated):
    kernels = json.loads(calibrated[0].read_text())["kernels"]
    assert kernels[SPIN]["workload_source"] == "plan" and kernels[SPIN]["workload_range"] == [1024, 4096]
    assert kernels[STATED]["workload_source"] == "kernel" and kernels[STATED]["workload_range"] == [64, 2048]
    assert kernels[ECHO]["workload_source"] == "assumed"
    assert kernels[ECHO]["workload_range"] == kernels[ECHO]["calibrated_range"]


def test_a_stated_mix_past_the_ladder_says_why(calibrated):
    kernels = json.loads(calibrated[0].read_text())["kernels"]
    short = kernels[STATED]["ladder_short"]
    assert short["measured_top"] <= 1024 < short["mix_top"] == 2048 and short["why"]
    assert "ladder_short" not in kernels[SPIN] or kernels[SPIN]["ladder_short"]["measured_top"] < 4096
    assert "ladder_short" not in kernels[ECHO]  # no stated mix: nothing to reach
    out = calibrated[1]
    assert f"the ladder measured up to {short['measured_top']:g}, not the mix's top 2048" in out


def test_calibrate_prints_the_assumed_range_and_how_to_state_it(calibrated):
    out = calibrated[1]
    lo, hi = json.loads(calibrated[0].read_text())["kernels"][ECHO]["workload_range"]
    assert f"the threshold assumes production calls span {lo:g}..{hi:g}" in out
    assert "@kernel(workload=(lo, hi))" in out and "workload_range" in out
    assert out.count("the threshold assumes") == 1  # spin's and stated_spin's mixes were stated


def test_show_and_explain_say_the_mix_and_its_source(calibrated, capsys):
    out_path = calibrated[0]
    capsys.readouterr()
    assert main(["show", str(out_path)]) == EXIT_OK
    shown = capsys.readouterr().out
    assert f"{STATED}: 64..2048 (stated by @kernel(workload=...))" in shown
    assert f"{SPIN}: 1024..4096 (stated by the plan's workload_range)" in shown
    assert f"{ECHO}: " in shown and "assumed: the measured range" in shown
    assert main(["explain", STATED, "100", "--profile", str(out_path)]) == EXIT_OK
    assert "workload 64..2048 (stated by @kernel(workload=...))" in capsys.readouterr().out


def test_an_old_profile_without_the_source_reads_as_before():
    entry = {"workload_range": [8, 512]}
    assert mix_text(entry) == "8..512 (source not recorded)"
    assert "the threshold assumes" not in format_mixes({"kernels": {"k": entry}}, advise=True)
    assert mix_text({}) is None and format_mixes({"kernels": {"k": {}}}) == ""


# ------------------------------------------------------------------------------------------------ drift


def _profile_with_source(tmp_path, profile, source):
    data = profile_data()
    if source is not None:
        data["kernels"][KEY]["workload_source"] = source
    profile.write_text(json.dumps(data))


@pytest.mark.parametrize(("source", "warned"), [("assumed", True), ("plan", False), ("kernel", False), (None, False)])
def test_drift_says_when_most_calls_fall_outside_an_assumed_mix(tmp_path, capsys, source, warned):
    # profile_data's mix is 256..65536; these calls are mostly below it (64, 128: whole octaves outside)
    mix = {64: 300, 128: 300, 1024: 100}
    profile, stats = write(tmp_path, mix, samples=200)
    _profile_with_source(tmp_path, profile, source)
    main(["drift", str(profile), "--stats", str(stats)])
    out = capsys.readouterr().out
    assert ("fall outside the mix calibration assumed (256..65536" in out) is warned
    if warned:
        assert "86% of the 700 calls" in out and "@kernel(workload=(lo, hi))" in out


def test_drift_is_quiet_when_the_calls_stay_mostly_inside_an_assumed_mix(tmp_path, capsys):
    profile, stats = write(tmp_path, LOG_UNIFORM, samples=200)
    _profile_with_source(tmp_path, profile, "assumed")
    assert main(["drift", str(profile), "--stats", str(stats)]) == EXIT_OK
    assert "fall outside" not in capsys.readouterr().out
    # half outside is not "mostly": a bucket straddling the edge (128..255 against 200) counts as inside
    profile, stats = write(tmp_path, {64: 100, 128: 50, 1024: 50}, samples=200)
    data = profile_data()
    data["kernels"][KEY].update(workload_source="assumed", workload_range=[200, 65536])
    profile.write_text(json.dumps(data))
    main(["drift", str(profile), "--stats", str(stats)])
    assert "fall outside" not in capsys.readouterr().out
