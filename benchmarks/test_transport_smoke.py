"""The transport benchmark in smoke mode (tiny sizes, one round, one confirmation round): it must run both
transports through the real runtime on one pool, keep them apart, put the transport switch back and write its
table and JSON. Numbers from a smoke run mean nothing; no timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

RECORDED = Path(__file__).resolve().parent / "results" / "transport"
FRAMES = "offload_tuner_kernels.frames:smooth_frames"


def test_transport_benchmark_runs_both_transports_and_writes_its_outputs(tmp_path):
    from benchmarks import transport
    from offload_tuner.runtime import _shm

    # The recorded profiles (another host's are fine: check_host=False); the new one's threshold lowered into the
    # smoke sizes (64..256) so that new:tuned offloads some calls and is confirmed against the old statics.
    new = json.loads((RECORDED / "profile-new.json").read_text())
    new["kernels"][FRAMES]["threshold"] = 128
    new_path = tmp_path / "profile-new.json"
    new_path.write_text(json.dumps(new))
    enabled = _shm.settings.enabled
    out = tmp_path / "out"
    argv = ["--smoke", "--old", str(RECORDED / "profile-old.json"), "--new", str(new_path), "--out-dir", str(out)]
    assert transport.main([*argv, "--kernel", "smooth_frames"]) == 0
    assert _shm.settings.enabled == enabled  # the transport switch is put back
    report = json.loads((out / "transport-smoke.json").read_text())
    (entry,) = report["workloads"]
    assert entry["kernel"] == FRAMES and entry["new_threshold"] == 128
    assert entry["old_tuned_decides_like_its_threshold"] is True
    summary, same_as = entry["summary"], entry["same_as"]
    assert transport.TUNED_NEW in summary and transport.TUNED_NEW not in same_as
    # new:tuned decides like old:T=128 but travels differently: two policies, measured apart.
    assert "old:T=128" in summary and "old:T=128" not in same_as
    measured = lambda name: summary[same_as.get(name, name)]  # noqa: E731  (aliases ran as their representative)
    assert measured("old:never")["offloaded"] == 0 and measured("old:always")["offloaded"] == entry["calls"]
    assert entry["best_old"].startswith("old:")
    c = entry["confirmation"]
    assert set(c["runs"]) == {"tuned", *entry["confirm_against"]} and c["rounds"] == 1
    assert entry["verdict"]["ratio"] == c["ratio"] and entry["verdict"]["rounds"] == 1
    model = entry["model"]
    assert model["old"]["oob_from"] is None and model["new"]["oob_from"] is not None
    assert "in_band_counterfactual" in model["new"] and model["predicted"]["new:T=128"] > 0
    assert report["git"]["commit"]
    markdown = (out / "transport-smoke.md").read_text()
    assert markdown.startswith("# Transport benchmark") and "| smooth_frames | new |" in markdown
    # --append keeps the kernels already reported, --render writes the table again from the JSON.
    assert transport.main([*argv, "--kernel", "detect_spikes", "--append"]) == 0
    kernels = [e["kernel"] for e in json.loads((out / "transport-smoke.json").read_text())["workloads"]]
    assert kernels == list(transport.KERNELS)
    (out / "transport-smoke.md").unlink()
    assert transport.main(["--smoke", "--render", "--out-dir", str(out)]) == 0
    assert "| detect_spikes | old |" in (out / "transport-smoke.md").read_text()
