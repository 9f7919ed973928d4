"""Cost of calibrating: every bundled kernel at `quick` (goal <= 15 s) and `standard` (goal <= 60 s).

    pytest benchmarks/test_calibration_time.py --benchmark-enable --benchmark-json=benchmarks/results/calibration_time.json

With --benchmark-disable (CI smoke mode) each runs once, untimed. Each round is one full calibration,
pool start-up included, exactly what `offload-tuner calibrate` pays. Three rounds per effort: one calibration's
wall time moves with the machine and with how many rounds the concurrent phase's ties need, so the record
gives the median with the slowest and fastest beside it.
"""

from __future__ import annotations

import pytest

from offload_tuner.inspection._cli import main

ROUNDS = 3


@pytest.mark.parametrize("effort", ["quick", "standard"])
def test_calibrate_bundled_kernels(benchmark, tmp_path, effort):
    out = tmp_path / "profile.json"
    benchmark.extra_info["effort"] = effort
    benchmark.extra_info["show_range"] = True
    code = benchmark.pedantic(
        main, args=(["calibrate", "--effort", effort, "--out", str(out), "--quiet"],), rounds=ROUNDS, iterations=1
    )
    assert code == 0 and out.exists()
