"""The HTTP benchmark in smoke mode: the example ASGI service starts under ``uvicorn --workers 2``, serves a few
requests per gate without one error, and stops on SIGTERM with every process it started gone. Numbers from
a smoke run mean nothing; what it proves is that the example and the benchmark work end to end."""

from __future__ import annotations

import json
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent.parent / "calibration" / "reference" / "vm.json"


def alive(pid: int) -> bool:
    """Running, i.e. present in /proc and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_smoke_serves_without_errors_and_leaves_no_process(tmp_path):
    from benchmarks import http

    # On another host the reference profile is refused (one warning in the server log) and the profile gate
    # runs every kernel inline: the smoke run still proves both gates serve and stop.
    assert http.main(["--smoke", "--profile", str(REFERENCE), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "http-smoke.json").read_text())
    assert (tmp_path / "http-smoke.md").read_text().startswith("# HTTP benchmark")
    assert sorted(r["gate"] for r in report["runs"]) == ["constant256", "profile"]
    for run in report["runs"]:
        assert run["errors"] == 0, run["error_samples"]
        assert run["completed"] == run["planned"] > 0 and not run["truncated"]
        server = run["server"]
        assert server["stopped_by"] == "sigterm" and server["lifespan_shutdowns"] == report["server_workers"] == 2
        assert server["pids"] and not [pid for pid in server["pids"] if alive(pid)]
    constant = next(r for r in report["runs"] if r["gate"] == "constant256")
    # The old gate offloads every request of 256 records or more (the warm-up sends each size, the smallest
    # /spikes size is 1290): each worker started its pool, so the pids checked above include pool processes.
    assert len(constant["server"]["pids"]) > 1 + report["server_workers"]
    spikes = constant["by_endpoint"].get("spikes")
    assert spikes is None or spikes["offloaded"] == spikes["requests"]
    assert report["verdicts"]["zero_errors"] and report["verdicts"]["every_server_stopped_by_sigterm"]
