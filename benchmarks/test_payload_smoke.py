"""The payload benchmark in smoke mode (two sizes, two calls per cell, a few tiny blocks): it must run through the
real runtime with both transports, get every result right, leave no segment behind and write its table and JSON.
Numbers from a smoke run mean nothing; no timing is asserted."""

from __future__ import annotations

import json


def test_payload_benchmark_runs_both_transports_and_writes_its_outputs(tmp_path):
    from benchmarks import payload
    from offload_tuner.runtime import _shm

    enabled = _shm.settings.enabled
    out = tmp_path / "payload"
    assert payload.main(["--smoke", "--out-dir", str(out)]) == 0
    assert _shm.settings.enabled == enabled  # the transport switch is put back
    report = json.loads((out / "payload-smoke.json").read_text())
    sizes = report["sizes"]
    assert sizes == sorted(payload.SMOKE_SIZES) and max(sizes) >= report["min_bytes"]  # one size goes out of band
    assert {(r["direction"], r["bytes"]) for r in report["rows"]} == {(d, n) for d in payload.DIRECTIONS for n in sizes}
    for row in report["rows"]:
        for transport in payload.TRANSPORTS:
            cell = row[transport]
            assert cell["round_trip_s"]["n"] == cell["blocked_s"]["n"] == payload.repeats(row["bytes"], True)
            assert cell["round_trip_s"]["median"] > 0 and cell["caller_cpu_s"]["median"] >= 0
            assert ("touch_s" in cell) == (row["direction"] != "argument")
        assert row["ratios"]["round_trip"] > 0 and row["ratios"]["blocked"] > 0
    assert report["verdicts"] == {"measured": False}  # no size of 8 MB or more in a smoke run
    assert set(report["tiny"]) == {"round_trip", "caller_cpu", "blocked", "unpreempted"}
    assert all(t["blocks"] == 2 and t["old_median_us"] > 0 for t in report["tiny"].values())
    assert report["leftover_segments"] == []
    assert not [w for w in report["warnings"] if "shared memory" in w]  # no call fell back in band
    markdown = (out / "payload-smoke.md").read_text()
    assert markdown.startswith("# Payload benchmark") and "No size of 8 MB or more" in markdown
