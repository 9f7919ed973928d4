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


# ------------------------------------------------------------------------ the constant to compare with


def _labels(fig) -> list[str]:
    """Every legend label and every line label of a figure (labels starting with "_" are hidden)."""
    labels = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            labels += [t.get_text() for t in legend.get_texts()]
        labels += ax.get_legend_handles_labels()[1]
    return labels


def _figures(data: dict) -> dict:
    from offload_tuner.inspection._plot import threshold_vs_budget_figure

    key = next(k for k, e in data["kernels"].items() if "costs" in e and e["threshold"])
    return {
        "kernel": kernel_figure(data, key),
        "overview": overview_figure(data),
        "comparison": comparison_figure(data, data),
        "what-if": threshold_vs_budget_figure(data, [0.01, 0.1]),
    }


def _old_lines(fig) -> list:
    """Lines and line collections drawn in the colour of the constant to compare with."""
    from matplotlib.colors import to_rgba

    from offload_tuner.inspection._plot_common import _COLORS

    old = to_rgba(_COLORS["old"])
    found = []
    for ax in fig.axes:
        for line in ax.get_lines():
            if to_rgba(line.get_color()) == old:
                found.append(line)
        for collection in ax.collections:
            colors = collection.get_edgecolor() if hasattr(collection, "get_edgecolor") else []
            if len(colors) and all(tuple(c) == old for c in colors):
                found.append(collection)
    return found


def test_a_profile_without_compare_with_draws_no_old_constant():
    data = reference()
    assert not any("compare_with" in e for e in data["kernels"].values())  # a profile from before the field
    for name, fig in _figures(data).items():
        assert not [label for label in _labels(fig) if "old constant" in label], name
        assert _old_lines(fig) == [], name


def test_compare_with_in_the_profile_draws_the_constant_on_every_figure():
    data = reference()
    for entry in data["kernels"].values():
        entry["compare_with"] = 300
    for name, fig in _figures(data).items():
        assert "old constant 300" in _labels(fig), name
        assert _old_lines(fig), name


def test_kernels_with_different_constants_each_get_theirs():
    data = reference()
    keys = list(data["kernels"])
    data["kernels"][keys[0]]["compare_with"] = 100
    data["kernels"][keys[1]]["compare_with"] = 2000
    fig = overview_figure(data)
    labels = _labels(fig)
    assert "old constant 100" in labels and "old constant 2000" in labels
    ticks = _old_lines(fig)
    assert len(ticks) == 2  # one per kernel that has one, on its own row; no line across the others
    rows = sorted(tuple(seg[:, 1]) for c in ticks for seg in c.get_segments())
    assert rows == [(-0.4, 0.4), (0.6, 1.4)]


@pytest.mark.parametrize("bad", [0, -256, "256", True, float("inf")])
def test_plot_rejects_a_bad_compare_with_naming_the_kernel(tmp_path, capsys, bad):
    data = reference()
    key = next(k for k, e in data["kernels"].items() if "costs" in e)
    data["kernels"][key]["compare_with"] = bad
    with pytest.raises(ValueError, match=f"kernel {key}: compare_with must be"):
        kernel_figure(data, key)
    if bad == float("inf"):
        return  # a profile file cannot hold it (JSON has no infinity)
    write_profile(tmp_path / "p.json", data)
    assert main(["plot", str(tmp_path / "p.json"), "--out", str(tmp_path / "out")]) == EXIT_PROFILE
    err = capsys.readouterr().err
    assert f"kernel {key}: compare_with must be" in err and repr(bad) in err
