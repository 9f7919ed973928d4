"""Figures of a profile: `offload-tuner plot`, failed kernels, and the comparison of two profiles."""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from offload_tuner.inspection._cli import EXIT_OK, EXIT_PROFILE, EXIT_USAGE, main
from offload_tuner.inspection._plot import (
    comparison_figure,
    comparison_table,
    kernel_figure,
    overview_figure,
    png_name,
)
from offload_tuner.runtime._profile import write_profile

REFERENCE = Path(__file__).resolve().parent.parent / "calibration" / "reference" / "vm.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def reference() -> dict:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def assert_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    height, width = matplotlib.image.imread(path).shape[:2]
    assert 500 <= width <= 3000 and 150 <= height <= 2000, (path, width, height)


def test_plot_writes_a_png_per_kernel_and_the_overview_for_a_profile_from_another_host(tmp_path, capsys):
    data = reference()
    with_costs = [key for key, entry in data["kernels"].items() if "costs" in entry]
    assert len(with_costs) >= 2
    out = tmp_path / "plots"
    assert main(["plot", str(REFERENCE), "--out", str(out)]) == EXIT_OK  # host "vm": plotting does not check it
    expected = {png_name(key) for key in with_costs} | {"overview.png"}
    assert len(expected) == len(with_costs) + 1  # distinct, safe names
    assert {p.name for p in out.iterdir()} == expected
    assert sorted(capsys.readouterr().out.split()) == sorted(str(out / name) for name in expected)
    for path in out.iterdir():
        assert_png(path)


def test_plot_reads_the_configured_profile_by_default(tmp_path, monkeypatch, capsys):
    data = reference()
    first = next(key for key, entry in data["kernels"].items() if "costs" in entry)
    data["kernels"] = {first: data["kernels"][first]}
    write_profile(tmp_path / "p.json", data)
    monkeypatch.setenv("OFFLOAD_TUNER_PROFILE", str(tmp_path / "p.json"))
    assert main(["plot", "--out", str(tmp_path / "out")]) == EXIT_OK
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([png_name(first), "overview.png"])


def test_plot_exit_codes_for_an_unreadable_profile_and_a_missing_matplotlib(tmp_path, monkeypatch, capsys):
    assert main(["plot", str(tmp_path / "missing.json"), "--out", str(tmp_path / "out")]) == EXIT_PROFILE
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["plot", str(tmp_path / "bad.json"), "--out", str(tmp_path / "out")]) == EXIT_PROFILE
    monkeypatch.delitem(sys.modules, "offload_tuner.inspection._plot")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ModuleNotFoundError
    assert main(["plot", str(REFERENCE), "--out", str(tmp_path / "out")]) == EXIT_USAGE
    assert "pip install -e '.[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_failed_kernel_does_not_crash_plotting(tmp_path, capsys):
    data = reference()
    keys = [key for key, entry in data["kernels"].items() if "costs" in entry][:2]
    ok_key, failed_key = keys
    data["kernels"] = {
        ok_key: data["kernels"][ok_key],
        failed_key: {
            "threshold": None,
            "status": "failed",
            "code_fingerprint": None,
            "error": "cannot build inputs: ValueError('boom')",
        },
    }
    write_profile(tmp_path / "p.json", data)
    assert main(["plot", str(tmp_path / "p.json"), "--out", str(tmp_path / "out")]) == EXIT_OK
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([png_name(ok_key), "overview.png"])
    assert_png(tmp_path / "out" / "overview.png")
    placeholder = kernel_figure(data, failed_key)  # a figure stating the error, not an exception
    assert "boom" in " ".join(t.get_text() for ax in placeholder.axes for t in ax.texts)
    overview = overview_figure(data)
    assert any("calibration failed" in t.get_text() for t in overview.axes[0].texts)
    row = {r["kernel"]: r for r in comparison_table(reference(), data)}[failed_key]
    assert row["note"] == "failed in b" and row["threshold_ratio"] is None and row["intervals_overlap"] is None
    comparison_figure(reference(), data)


def _scale_compute(model: dict, factor: float) -> None:
    params = model["params"]
    if model["form"] == "loglog_linear_interp":
        params["log_y"] = [y + math.log(factor) for y in params["log_y"]]
    else:
        for name in ("a", "c"):
            if name in params:
                params[name] *= factor


def test_comparison_table_gives_threshold_and_compute_ratios():
    a = reference()
    b = copy.deepcopy(a)
    positive = [k for k, e in a["kernels"].items() if "costs" in e and e["threshold"]]
    never = [k for k, e in a["kernels"].items() if "costs" in e and e["threshold"] is None]
    assert positive
    for key in positive:
        entry = b["kernels"][key]
        entry["threshold"] *= 3
        entry["interval"] = [None if v is None else v * 3 for v in entry["interval"]]  # None: "never"
    slower = positive[0]
    _scale_compute(b["kernels"][slower]["costs"]["compute"], 2.0)

    rows = {r["kernel"]: r for r in comparison_table(a, b)}
    assert list(rows) == list(a["kernels"])
    for key in positive:
        lo, hi = a["kernels"][key]["interval"]
        assert rows[key]["threshold_ratio"] == pytest.approx(3.0)
        assert rows[key]["intervals_overlap"] == (hi is None or 3 * lo <= hi)  # [lo, hi] against [3 lo, 3 hi]
        assert rows[key]["compute_ratio"] == pytest.approx(2.0 if key == slower else 1.0)
        assert rows[key]["compute_sizes"] == sorted(float(n) for n in a["kernels"][key]["samples"]["size"])
    for key in never:
        assert rows[key]["threshold_ratio"] is None and rows[key]["note"] == "never in both"
        assert rows[key]["intervals_overlap"] is True

    same = comparison_table(a, a)
    assert all(r["intervals_overlap"] is not False for r in same)
    assert all(r["threshold_ratio"] in (None, 1.0) for r in same)
    assert all(r["compute_ratio"] == pytest.approx(1.0) for r in same if r["compute_ratio"] is not None)
    assert len(comparison_figure(a, b).axes) == 2
