"""examples/service.py in its short mode: it runs, prints both modes side by side, and its counts add up.
Timings from a short run mean nothing and are not checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from offload_tuner_kernels.clustering import cluster_campaigns, cluster_observations
from tests.support import write_profile_json

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "service.py"
CALLS = 4
KERNELS = ("cluster_observations", "cluster_campaigns")
CELL = re.compile(r"(\d+) calls: (\d+) inline, (\d+) offloaded \(([^)]*)\)")


def run_example(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OFFLOAD_TUNER_PROFILE": str(tmp_path / "none-here.json")}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--calls", str(CALLS), "--max-size", "64", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def cells(stdout: str) -> dict[str, list[tuple[int, int, int, str]]]:
    rows = {}
    for line in stdout.splitlines():
        name = line.split(" ", 1)[0]
        if name in KERNELS:
            rows[name] = [(int(c), int(i), int(o), label) for c, i, o, label in CELL.findall(line)]
    return rows


@pytest.mark.slow
def test_old_constant_and_profile_side_by_side(tmp_path):
    profile = write_profile_json(
        tmp_path / "profile.json",
        {
            f"{cluster_observations.__module__}:cluster_observations": 16,
            f"{cluster_campaigns.__module__}:cluster_campaigns": 0,
        },
    )
    run = run_example(tmp_path, "--profile", str(profile))
    assert run.returncode == 0, run.stderr
    header = next(line for line in run.stdout.splitlines() if "[old constant]" in line)
    assert "[profile]" in header
    rows = cells(run.stdout)
    assert set(rows) == set(KERNELS)
    for (calls, inline, offloaded, label), (t_calls, t_inline, t_offloaded, _t_label) in rows.values():
        assert calls == t_calls == CALLS
        assert inline + offloaded == calls and t_inline + t_offloaded == calls
        assert offloaded == 0  # sizes <= 64: the old constant 256 offloads none
        assert label == "offload_if=len >= 256"
    assert rows["cluster_campaigns"][1][2:] == (CALLS, "threshold 0")  # the profile offloads every call
    assert rows["cluster_observations"][1][3] == "threshold 16"
    assert re.search(r"^loop lag p99 +[\d.]+ ms .* +[\d.]+ ms ", run.stdout, flags=re.M)
    assert re.search(r"^wall time +[\d.]+ s +[\d.]+ s$", run.stdout, flags=re.M)
    # The old call sites override a trusted entry: said once per kernel, pointing at the call site.
    overrides = [line for line in run.stderr.splitlines() if "ProfileOverriddenWarning:" in line]
    assert len(overrides) == 2 and all(line.startswith(f"{EXAMPLE}:") for line in overrides)


@pytest.mark.slow
def test_without_a_profile_only_the_old_constant_runs_and_it_says_how_to_get_one(tmp_path):
    run = run_example(tmp_path)
    assert run.returncode == 0, run.stderr
    assert "[old constant]" in run.stdout and "[profile]" not in run.stdout
    assert "offload-tuner calibrate --kernel cluster_observations --kernel cluster_campaigns" in run.stdout
    rows = cells(run.stdout)
    assert {name: [(c, i + o) for c, i, o, _ in row] for name, row in rows.items()} == {
        name: [(CALLS, CALLS)] for name in KERNELS
    }
    assert "Warning" not in run.stderr
