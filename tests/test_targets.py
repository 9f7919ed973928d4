"""Calibration targets through the CLI: a module yields the kernels registered under its names, wherever
their functions are defined, and a target that yields none is an error naming it (exit 4), not silence."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

from offload_tuner.inspection._cli import EXIT_NO_KERNELS, EXIT_OK, main


@pytest.fixture
def service(tmp_path, monkeypatch) -> dict[str, str]:
    """A third-party module with a plain function, and a service module that registers it as a kernel
    (``cluster = kernel(...)(thirdparty.cluster)``) next to one kernel of its own. Unique names: modules
    stay imported for the rest of the session."""
    tag = uuid.uuid4().hex[:8]
    names = {"thirdparty": f"thirdparty_{tag}", "service": f"service_{tag}", "plain": f"plain_{tag}"}
    (tmp_path / f"{names['plain']}.py").write_text(
        "from offload_tuner import kernel\n\ndef helper(xs):\n    return xs\n"
    )
    (tmp_path / f"{names['thirdparty']}.py").write_text(
        textwrap.dedent("""
        def make(n):
            return (list(range(n)),)

        def cluster(xs):
            return sorted(x % 7 for x in xs)
    """)
    )
    (tmp_path / f"{names['service']}.py").write_text(
        textwrap.dedent(f"""
        import {names["thirdparty"]} as thirdparty
        from offload_tuner import kernel

        cluster = kernel(size=len, sample=thirdparty.make)(thirdparty.cluster)

        @kernel(sample=thirdparty.make)
        def local(xs):
            return [2 * x for x in xs]

        NOT_A_KERNEL = [1, 2, 3]  # unhashable attributes must not trip the scan
        helper = {{"a": 1}}
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # workers are started after this: they import by name too
    return names


def test_a_module_target_yields_kernels_registered_there_from_other_modules(service, tmp_path, capsys):
    out = tmp_path / "profile.json"
    code = main(["calibrate", service["service"], "--effort", "quick", "--workers", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    expected = {f"{service['thirdparty']}:cluster", f"{service['service']}:local"}
    assert set(json.loads(out.read_text())["kernels"]) == expected
    listed = next(line for line in captured.err.splitlines() if line.startswith("kernels: "))
    assert set(listed.removeprefix("kernels: ").split(", ")) == expected  # said before measuring


def test_a_target_that_yields_no_kernel_exits_4_naming_it(service, tmp_path, capsys):
    """The issue's case: two targets, one of which registers nothing, once calibrated silently."""
    out = tmp_path / "profile.json"
    code = main(["calibrate", service["service"], service["plain"], "--effort", "quick", "--out", str(out), "-q"])
    assert code == EXIT_NO_KERNELS
    assert f"target {service['plain']!r} yields no kernels" in capsys.readouterr().err
    assert not out.exists()


def test_an_empty_file_target_exits_4_naming_it(tmp_path, capsys):
    empty = tmp_path / f"empty_{uuid.uuid4().hex[:8]}.py"
    empty.write_text("from offload_tuner import kernel\nVALUE = 1\n")
    assert (
        main(["calibrate", str(empty), "--effort", "quick", "--out", str(tmp_path / "p.json"), "-q"]) == EXIT_NO_KERNELS
    )
    assert f"target {str(empty)!r} yields no kernels" in capsys.readouterr().err


def test_the_module_that_defines_a_kernel_registered_elsewhere_yields_it_too(service, capsys):
    from offload_tuner.calibration._targets import resolve_targets

    resolve_targets([service["service"]])  # registers thirdparty.cluster
    assert [spec.key for spec in resolve_targets([service["thirdparty"]])] == [f"{service['thirdparty']}:cluster"]


def test_a_kernel_filter_that_matches_nothing_exits_4(service, tmp_path, capsys):
    code = main(
        [
            "calibrate",
            service["service"],
            "--kernel",
            "absent",
            "--effort",
            "quick",
            "--out",
            str(tmp_path / "p.json"),
            "-q",
        ]
    )
    assert code == EXIT_NO_KERNELS
    assert "no kernel named absent" in capsys.readouterr().err


def test_the_bundled_target_is_the_installed_kernels_package(tmp_path, capsys, monkeypatch):
    """No TARGET: the plan shipped in offload_tuner_kernels names the bundled kernels by their installed name."""
    from offload_tuner.calibration._targets import BUNDLED_TARGET, bundled_plan, resolve_targets

    plan = json.loads(bundled_plan().read_text(encoding="utf-8"))
    root = Path(__file__).resolve().parent.parent
    assert plan == json.loads((root / "calibration" / "plan.json").read_text())
    assert plan["targets"] == [BUNDLED_TARGET] == ["offload_tuner_kernels"]
    keys = {spec.key for spec in resolve_targets([])}
    assert keys == set(plan["kernels"])
