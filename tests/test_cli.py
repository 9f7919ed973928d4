"""The offload-tuner command: calibrate (exit codes, output), show, explain, check."""

from __future__ import annotations

import json

import pytest

from offload_tuner.inspection._cli import (
    EXIT_FAILURES,
    EXIT_NO_KERNELS,
    EXIT_OK,
    EXIT_PROFILE,
    EXIT_TARGET,
    EXIT_WRITE,
    main,
)

SPIN = "tests.controlled:spin"


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    out, plan = folder / "profile.json", folder / "plan.json"
    # spin's mix is all compute-heavy calls (1-16 ms each): offloading them to 2 workers clearly pays.
    plan.write_text(
        json.dumps(
            {
                "schema": 1,
                "kernels": {
                    SPIN: {"min_size": 4, "max_size": 16384, "workload_range": [1024, 16384], "compare_with": 256}
                },
            }
        )
    )
    code = main(
        [
            "calibrate",
            "tests.controlled:spin",
            "tests.controlled:echo",
            "--effort",
            "quick",
            "--workers",
            "2",
            "--plan",
            str(plan),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == EXIT_OK
    return out


def test_calibrate_writes_a_profile_and_prints_the_table(profile_path, capsys):
    data = json.loads(profile_path.read_text())
    assert set(data["kernels"]) == {SPIN, "tests.controlled:echo"}
    assert data["kernels"]["tests.controlled:echo"]["threshold"] is None
    assert data["policy"]["concurrency"] == 4 and data["policy"]["workers"] == 2


def test_compare_with_reaches_the_profile_entry_only_where_the_plan_sets_it(profile_path, capsys):
    from offload_tuner.runtime._profile import read_profile

    data = json.loads(profile_path.read_text())
    assert data["kernels"][SPIN]["compare_with"] == 256
    assert "compare_with" not in data["kernels"]["tests.controlled:echo"]  # not in the plan: nothing to compare
    assert read_profile(profile_path).kernels[SPIN].data["compare_with"] == 256
    assert main(["explain", "spin", "4096", "--profile", str(profile_path)]) == EXIT_OK
    assert "compared with 256" in capsys.readouterr().out


def test_kernel_plans_take_the_plan_wide_compare_with_unless_the_kernel_sets_its_own():
    from offload_tuner.inspection._cmd_calibrate import _kernel_plans

    plans = _kernel_plans(
        {
            "schema": 1,
            "compare_with": 256,
            "kernels": {"a:x": {}, "a:y": {"compare_with": 64}, "a:z": {"compare_with": None}},
        }
    )
    assert [plans[k].compare_with for k in ("a:x", "a:y", "a:z")] == [256, 64, None]
    assert _kernel_plans({"schema": 1, "kernels": {"a:x": {}}})["a:x"].compare_with is None  # off by default


@pytest.mark.parametrize(
    "plan, message",
    [
        ({"compare_with": 0}, "compare_with must be a size > 0"),
        ({"compare_with": -256}, "compare_with must be a size > 0"),
        ({"compare_with": "256"}, "compare_with must be a number"),
        ({"compare_with": True}, "compare_with must be a number"),
        ({"kernels": {SPIN: {"compare_with": [256]}}}, f"kernel {SPIN}: compare_with must be a number"),
    ],
)
def test_a_bad_compare_with_in_the_plan_stops_before_measuring(tmp_path, plan, message):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"schema": 1, **plan}))
    with pytest.raises(SystemExit) as stop:
        main(["calibrate", SPIN, "--plan", str(path), "--out", str(tmp_path / "p.json"), "--quiet"])
    assert message in str(stop.value) and str(path) in str(stop.value)
    assert not (tmp_path / "p.json").exists()


def test_calibrate_records_failures_and_exits_1(tmp_path, capsys):
    out = tmp_path / "p.json"
    code = main(
        [
            "calibrate",
            "tests.controlled",
            "--kernel",
            "bad_sample",
            "--kernel",
            "spin",
            "--effort",
            "quick",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == EXIT_FAILURES
    data = json.loads(out.read_text())
    assert data["kernels"]["tests.controlled:bad_sample"]["status"] == "failed"
    assert data["kernels"][SPIN]["status"] == "ok"
    assert "bad_sample failed" in captured.err and "cannot build inputs" in captured.err
    assert "kernel" in captured.out and "threshold" in captured.out  # the table header


@pytest.mark.parametrize(
    "target, code, message",
    [
        ("no_such_module_anywhere", EXIT_TARGET, "not importable"),
        ("tests.controlled:nope", EXIT_TARGET, "no attribute"),
        ("tests.controlled:noop", EXIT_NO_KERNELS, "'tests.controlled:noop' is not registered"),
        ("missing_file.py", EXIT_TARGET, "no such file"),
        ("json", EXIT_NO_KERNELS, "target 'json' yields no kernels"),
    ],
)
def test_calibrate_target_errors_have_clear_messages_and_codes(tmp_path, capsys, target, code, message):
    assert main(["calibrate", target, "--out", str(tmp_path / "p.json"), "--quiet"]) == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_calibrate_a_kernel_file_by_path(tmp_path, capsys):
    source = tmp_path / "my_kernels.py"
    source.write_text(
        "from offload_tuner import kernel\n"
        "@kernel(sample=lambda n: (list(range(n)),))\n"
        "def double_all(xs):\n"
        "    return [2 * x for x in xs]\n"
    )
    out = tmp_path / "p.json"
    assert main(["calibrate", str(source), "--effort", "quick", "--out", str(out), "--quiet"]) == EXIT_OK
    assert "my_kernels:double_all" in json.loads(out.read_text())["kernels"]


def test_unwritable_output_keeps_nothing_and_exits_5(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["calibrate", SPIN, "--effort", "quick", "--out", str(blocker / "p.json"), "--quiet"])
    assert code == EXIT_WRITE
    assert "cannot write the profile" in capsys.readouterr().err


def test_show_prints_a_table_and_json(profile_path, capsys):
    assert main(["show", str(profile_path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert SPIN in out and "never" in out and "interval" in out
    assert main(["show", str(profile_path), "--json"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)["rows"]
    by_kernel = {r["kernel"]: r for r in rows}
    assert by_kernel["tests.controlled:echo"]["threshold"] is None
    stored = json.loads(profile_path.read_text())["kernels"][SPIN]
    assert by_kernel[SPIN]["threshold"] == stored["threshold"]
    assert by_kernel[SPIN]["candidates_measured"] == len(stored["load"]["candidates"]) >= 2
    assert by_kernel[SPIN]["reason"].startswith("measured under load")


def test_show_reports_an_unreadable_profile(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["show", str(bad)]) == EXIT_PROFILE
    assert "invalid JSON" in capsys.readouterr().err


def test_explain_agrees_with_the_threshold_on_both_sides(profile_path, capsys):
    threshold = json.loads(profile_path.read_text())["kernels"][SPIN]["threshold"]
    if threshold is None:
        # A quick effort's 25 ms ring can measure never within the noise of offloading (about 1 run in 10 here):
        # explain must then say never, and keep the mix's top inline.
        assert main(["explain", SPIN, "16384", "--profile", str(profile_path)]) == EXIT_OK
        out = capsys.readouterr().out
        assert "why never:" in out and "decision: INLINE" in out and "offloading never pays" in out
        return
    assert main(["explain", SPIN, str(threshold), "--profile", str(profile_path)]) == EXIT_OK
    above = capsys.readouterr().out
    assert "decision: OFFLOAD" in above and "inline:" in above and "offloaded:" in above
    assert "under load (4 callers" in above and "load factors" in above and f"why {threshold}:" in above
    assert main(["explain", "spin", str(max(0, threshold - 1)), "--profile", str(profile_path)]) == EXIT_OK
    assert "decision: INLINE" in capsys.readouterr().out


def test_explain_unknown_kernel(profile_path, capsys):
    assert main(["explain", "nothing", "5", "--profile", str(profile_path)]) != EXIT_OK
    assert "not in" in capsys.readouterr().err


def test_check_passes_a_fresh_profile_and_flags_problems(profile_path, tmp_path, capsys):
    assert main(["check", str(profile_path)]) == EXIT_OK
    data = json.loads(profile_path.read_text())
    data["host"]["cpu_model"] = "Elsewhere CPU"  # the hostname is not compared by default (test_host)
    data["kernels"][SPIN]["code_fingerprint"] = "sha256:old"
    data["kernels"][SPIN]["costs"]["compute"]["form"] = "cubic-spline"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["check", str(bad)]) == EXIT_FAILURES
    out = capsys.readouterr().out
    assert "host differs: cpu_model" in out and "OFFLOAD_TUNER_HOST_CHECK=hardware" in out
    assert "code changed since calibration" in out
    assert "cost models unreadable" in out and "cubic-spline" in out
