"""``show``, ``explain`` and the kernel figure say which transport a kernel's offloaded calls use (issue 28): buffers
through shared memory from a size, or in band; old profiles (no shared-memory section, no ``oob_*`` fields) say in
band. ``check`` removes the segments of processes that are gone and says how many. Profiles are built from the
reference profile in the test: nothing is calibrated."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from offload_tuner.inspection._cli import EXIT_OK, main
from offload_tuner.inspection._report import (
    format_bytes,
    format_transports,
    host_transport_text,
    kernel_transport,
    summary_rows,
    transport_line,
)
from offload_tuner.runtime import _shm
from offload_tuner.runtime._host import host_identity
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, predict

REFERENCE = Path(__file__).resolve().parent.parent / "calibration" / "reference" / "vm.json"
SPIKES = "offload_tuner_kernels.numeric:detect_spikes"
CLUSTER = "offload_tuner_kernels.clustering:cluster_observations"
SHM_FROM = 16384


@pytest.fixture(autouse=True)
def no_shm_override(monkeypatch):
    """No ``OFFLOAD_TUNER_SHM`` from the environment; the transport's settings restored after (explain loads the
    profile, which sets them)."""
    monkeypatch.delenv("OFFLOAD_TUNER_SHM", raising=False)
    for name in ("enabled", "min_bytes", "directory"):
        monkeypatch.setattr(_shm.settings, name, getattr(_shm.settings, name))


def old_profile() -> dict:
    """A profile written before the shared-memory transport: no section, no ``oob_*`` fields."""
    data = json.loads(REFERENCE.read_text(encoding="utf-8"))
    assert "shared_memory" not in data["transport"]
    assert not any("oob_bytes" in e.get("costs", {}) for e in data["kernels"].values())
    return data


def shm_profile(min_bytes: int | None = 65536, source: str = "calibrated", oob_from: float | None = SHM_FROM) -> dict:
    """The reference profile as a calibration with the transport writes it: detect_spikes' buffers (8 bytes per
    element) through shared memory from ``oob_from``, ~300 bytes in band; the other kernels without buffers."""
    data = old_profile()
    data["transport"]["shared_memory"] = {
        "min_bytes": min_bytes,
        "source": source,
        "bytes": [65536, 1048576],
        "round_trip_s": [5e-4, 1e-3],
        "caller_cpu_s": [8e-5, 8e-5],
        "worker_cpu_s": [2e-4, 4e-4],
    }
    data["transport"]["model"].update(
        oob_round_trip_per_byte_s=5e-10,
        oob_caller_per_byte_s=1e-11,
        oob_worker_per_byte_s=2e-10,
        oob_round_trip_s=2e-4,
        oob_caller_s=0.0,
        oob_worker_s=8e-5,
    )
    costs = data["kernels"][SPIKES]["costs"]
    lo, hi = costs["nbytes"]["size_range"]
    costs["oob_bytes"] = {
        "form": "power",
        "params": {"a": 8.0, "b": 1.0},
        "size_range": [lo, hi],
        "cv_error": 0.001,
        "n_samples": 13,
        "trusted": True,
    }
    costs["nbytes"] = {**costs["oob_bytes"], "form": "constant", "params": {"c": 300.0}}
    costs["oob_from"] = oob_from
    return data


def write(tmp_path: Path, data: dict) -> Path:
    """The profile on disk with this host's identity, so that ``explain`` may load it."""
    data = copy.deepcopy(data)
    data["host"] = host_identity()
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------------------------------ pure: show's lines


def test_a_kernel_with_buffers_uses_shared_memory_from_its_size_the_others_go_in_band():
    data = shm_profile()
    spikes = kernel_transport(data, data["kernels"][SPIKES])
    assert spikes.shared_from == SHM_FROM and spikes.text == f"shared memory from size {SHM_FROM}"
    assert "131.1 kB at size 16384" in spikes.note  # the buffer model at the switch: 8 bytes x 16384
    cluster = kernel_transport(data, data["kernels"][CLUSTER])
    assert (
        cluster.shared_from is None and cluster.text == "in band" and cluster.note == "no buffers to send out of band"
    )
    text = host_transport_text(data)
    assert text.startswith("shared memory: buffers of 65536 bytes (65.5 kB) and more (calibrated)")
    assert "per MB in band" in text  # the loop thread's cost per MB both ways, from the model


@pytest.mark.parametrize(
    "min_bytes, source, oob_from, host_says, kernel_says",
    [
        (None, "calibrated", None, "never cheaper than in band", "shared memory never pays on this host"),
        (None, "off", None, "off at calibration", "the transport was off at calibration"),
        (1 << 40, "environment", None, "(set by OFFLOAD_TUNER_SHM at calibration)", "never reach the shared-memory"),
    ],
)
def test_in_band_says_why(min_bytes, source, oob_from, host_says, kernel_says):
    data = shm_profile(min_bytes, source, oob_from)
    assert host_says in host_transport_text(data)
    spikes = kernel_transport(data, data["kernels"][SPIKES])
    assert spikes.text == "in band" and kernel_says in spikes.note


def test_a_switch_past_the_measured_sizes_is_marked_extrapolated():
    data = shm_profile(oob_from=2**22)
    spikes = kernel_transport(data, data["kernels"][SPIKES])
    assert (
        spikes.text == f"shared memory from size {2**22}"
        and "extrapolated, past the measured top 524288" in spikes.note
    )


def test_an_old_profile_says_in_band_everywhere_and_what_the_runtime_does_by_default():
    data = old_profile()
    assert {kernel_transport(data, e).text for e in data["kernels"].values()} == {"in band"}
    text = host_transport_text(data)
    assert "not recorded (the profile predates the shared-memory transport)" in text
    assert f"{_shm.DEFAULT_MIN_BYTES} bytes" in text  # the runtime's default still applies to such a profile
    lines = format_transports(data).splitlines()
    assert lines[0].startswith("transport (process pool): shared memory: not recorded")
    assert f"  {SPIKES}: in band (the profile predates the shared-memory transport)" in lines
    rows = {r["kernel"]: r for r in summary_rows(data)}
    assert rows[SPIKES]["transport"] == "in band" and rows[SPIKES]["shared_memory_from"] is None


def test_the_environment_override_is_said(monkeypatch):
    monkeypatch.setenv("OFFLOAD_TUNER_SHM", "off")
    assert "OFFLOAD_TUNER_SHM=off in this environment overrides the profile" in host_transport_text(shm_profile())


def test_format_bytes():
    assert [format_bytes(v) for v in (-5, 0, 999, 1000, 65536, 2_500_000, 3e9)] == [
        "0 B",
        "0 B",
        "999 B",
        "1.0 kB",
        "65.5 kB",
        "2.5 MB",
        "3.0 GB",
    ]


# ------------------------------------------------------------------------------------------ pure: explain's line


def test_explain_line_below_and_above_the_switch_matches_the_cost_models():
    data = shm_profile()
    entry = data["kernels"][SPIKES]
    below = transport_line(data, entry, 4096)
    assert below.startswith("transport: in band, 33.1 kB pickled through the pool's pipe (32.8 kB of it buffers;")
    assert f"buffers go through shared memory from size {SHM_FROM}" in below
    above = transport_line(data, entry, 131072)
    assert above.startswith(
        f"transport: out of band, 1.0 MB of buffers through shared memory (from size {SHM_FROM}) + 300 B in band"
    )
    assert above.endswith("the offloaded figures above include its cost")
    # the figures explain prints are predict()'s, which prices out-of-band bytes with the oob_* slopes: cheaper
    # for the loop than the same bytes in band
    costs, transport = KernelCosts.from_json(entry["costs"]), TransportModel.from_json(data["transport"]["model"])
    knobs = PolicyKnobs.from_json(data["policy"])
    in_band = KernelCosts.from_json({**entry["costs"], "oob_from": None})
    assert (
        predict(costs, transport, knobs, 131072).offload_loop_s
        < predict(in_band, transport, knobs, 131072).offload_loop_s
    )


def test_explain_line_of_an_old_profile_says_in_band():
    data = old_profile()
    line = transport_line(data, data["kernels"][SPIKES], 131072)
    assert line.startswith("transport: in band, 1.1 MB pickled through the pool's pipe")
    assert "the profile predates the shared-memory transport" in line


# ------------------------------------------------------------------------------------------ the commands


def test_show_prints_the_transport_section_and_json(tmp_path, capsys):
    path = write(tmp_path, shm_profile())
    assert main(["show", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "transport (process pool): shared memory: buffers of 65536 bytes (65.5 kB) and more (calibrated)" in out
    assert f"  {SPIKES}: shared memory from size {SHM_FROM} (its buffers, 131.1 kB at size {SHM_FROM}," in out
    assert f"  {CLUSTER}: in band (no buffers to send out of band)" in out
    assert main(["show", str(path), "--json"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["shared_memory"] == {"min_bytes": 65536, "source": "calibrated"}
    rows = {r["kernel"]: r for r in shown["rows"]}
    assert rows[SPIKES]["transport"] == f"shared memory from size {SHM_FROM}"
    assert rows[SPIKES]["shared_memory_from"] == SHM_FROM and rows[CLUSTER]["transport"] == "in band"


def test_show_of_an_old_profile(tmp_path, capsys):
    path = write(tmp_path, old_profile())
    assert main(["show", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"  {SPIKES}: in band (the profile predates the shared-memory transport)" in out
    assert main(["show", str(path), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["shared_memory"] is None


@pytest.mark.parametrize(
    "data, size, expected",
    [
        (
            shm_profile(),
            131072,
            f"transport: out of band, 1.0 MB of buffers through shared memory (from size {SHM_FROM})",
        ),
        (shm_profile(), 4096, "transport: in band, 33.1 kB pickled through the pool's pipe"),
        (old_profile(), 4096, "the profile predates the shared-memory transport"),
    ],
)
def test_explain_says_how_the_call_travels(tmp_path, capsys, data, size, expected):
    path = write(tmp_path, data)
    assert main(["explain", SPIKES, str(size), "--profile", str(path)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    offloaded = next(i for i, line in enumerate(lines) if line.startswith("  offloaded:"))
    assert expected in lines[offloaded + 1] and lines[offloaded + 1].startswith("  transport: ")


# ------------------------------------------------------------------------------------------ the figure


def _legend_labels(fig) -> list[str]:
    return [label for ax in fig.axes for label in ax.get_legend_handles_labels()[1]]


def test_the_kernel_figure_marks_the_switch_to_shared_memory():
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_rgba

    from offload_tuner.inspection._plot import kernel_figure
    from offload_tuner.inspection._plot_common import _COLORS

    fig = kernel_figure(shm_profile(), SPIKES)
    assert f"transport: shared memory from size {SHM_FROM}" in fig.get_suptitle()
    assert any(
        label.startswith(f"buffers through shared memory from size {SHM_FROM}\n") for label in _legend_labels(fig)
    )
    lines = [
        line
        for line in fig.axes[0].get_lines()
        if to_rgba(line.get_color()) == to_rgba(_COLORS["shared_memory"]) and list(line.get_xdata()) == [SHM_FROM] * 2
    ]
    assert len(lines) == 1  # a vertical line at the switch, on the main panel
    far = kernel_figure(shm_profile(oob_from=2**40), SPIKES)
    assert any("(beyond the plotted sizes)" in label for label in _legend_labels(far))


@pytest.mark.parametrize("data", [old_profile(), shm_profile(None, "calibrated", None)], ids=["old", "never"])
def test_the_kernel_figure_says_in_band_without_a_switch(data):
    pytest.importorskip("matplotlib")
    from offload_tuner.inspection._plot import kernel_figure

    for key in (SPIKES, CLUSTER):
        fig = kernel_figure(data, key)
        assert fig.get_suptitle().endswith("transport: in band")
        labels = _legend_labels(fig)
        assert any(label.startswith("transport: in band (") for label in labels)
        assert not any("buffers through shared memory" in label for label in labels)


def test_plot_writes_the_figures_of_a_profile_with_the_transport(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = write(tmp_path, shm_profile())
    assert main(["plot", str(path), "--out", str(tmp_path / "out")]) == EXIT_OK
    assert (tmp_path / "out" / "offload_tuner_kernels.numeric-detect_spikes.png").stat().st_size > 0


# ------------------------------------------------------------------------------------------ check


def test_check_removes_the_segments_of_a_process_that_is_gone_and_says_how_many(tmp_path, capsys):
    if not _shm.available(_shm.SHM_DIR):
        pytest.skip(f"{_shm.SHM_DIR} is not usable here")
    dead = 4_000_000_000 + os.getpid()  # past any pid_max: no such process
    names = [f"{_shm.PREFIX}{dead}-12345-{seq}{side}" for seq, side in ((0, "a"), (0, "r"), (1, "a"))]
    owner = f"{_shm.PREFIX}{dead}-12345-owner"
    for name in [*names, owner]:
        Path(_shm.SHM_DIR, name).write_bytes(b"x" * 64)
    try:
        path = write(tmp_path, old_profile())
        main(["check", str(path)])  # whatever it finds in the profile (code fingerprints), it sweeps
        out = capsys.readouterr().out
        assert not any(Path(_shm.SHM_DIR, name).exists() for name in [*names, owner])
        line = next(line for line in out.splitlines() if "orphaned shared-memory segment" in line)
        assert line.startswith(f"{_shm.SHM_DIR}: removed ")
        removed = int(line.split("removed ")[1].split()[0])
        assert removed >= len(names)  # ours, and any another dead process left
        assert "owner lock file(s)" in line
    finally:
        for name in [*names, owner]:
            Path(_shm.SHM_DIR, name).unlink(missing_ok=True)
