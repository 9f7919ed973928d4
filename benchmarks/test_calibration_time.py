"""Cost of calibrating: every bundled kernel at `quick` (goal <= 15 s) and `standard` (goal <= 60 s).

    pytest benchmarks/test_calibration_time.py --benchmark-enable --benchmark-json=benchmarks/results/calibration_time.json

With --benchmark-disable (CI smoke mode) each runs once, untimed. Each round is one full calibration,
pool start-up included, exactly what `offload-tuner calibrate` pays.
"""

from __future__ import annotations

import pytest

from offload_tuner.inspection._cli import main


@pytest.mark.parametrize("effort", ["quick", "standard"])
def test_calibrate_bundled_kernels(benchmark, tmp_path, effort):
    out = tmp_path / "profile.json"
    benchmark.extra_info["effort"] = effort
    code = benchmark.pedantic(main, args=(["calibrate", "--effort", effort, "--out", str(out), "--quiet"],),
                              rounds=1, iterations=1)
    assert code == 0 and out.exists()
