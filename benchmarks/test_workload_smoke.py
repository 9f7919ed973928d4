"""The co-hosted workload benchmark in smoke mode (tiny sizes, one round): it must run end to end and
write its table, JSON and plot, so it cannot rot. Numbers from a smoke run mean nothing."""

from __future__ import annotations

import json


def test_workload_benchmark_runs_and_writes_its_outputs(tmp_path, monkeypatch):
    from benchmarks import workload
    from offload_tuner.inspection._cli import main as cli

    profile = tmp_path / "profile.json"
    # A quick calibration of two bundled kernels on this host, so the tuned policy has a real profile.
    rows, ranking = "offload_tuner_kernels.rows:bytes_by_status", "offload_tuner_kernels.ranking:rank_latencies"
    assert cli(["calibrate", rows, ranking, "--effort", "quick", "--out", str(profile), "--quiet"]) == 0
    out = tmp_path / "results"
    assert (
        workload.main(
            [
                "--smoke",
                "--profile",
                str(profile),
                "--out-dir",
                str(out),
                "--kernel",
                "bytes_by_status",
                "--kernel",
                "rank_latencies",
            ]
        )
        == 0
    )
    report = json.loads((out / "workload-smoke.json").read_text())
    assert {e["kernel"] for e in report["workloads"]} == {rows, ranking}
    for entry in report["workloads"]:
        assert {"tuned", "static-256", "always", "never"} <= set(entry["summary"])
        assert entry["oracle"] in entry["summary"] and entry["oracle"] != "tuned"
        assert entry["summary"]["never"]["offloaded"] == 0
        assert entry["summary"]["always"]["offloaded"] == entry["summary"]["always"]["calls"]
        assert set(entry["verdicts"]) >= {"tuned_vs_oracle", "makespan_within_1.10x_oracle", "p99_lag_within_budget"}
        # Tuned is confirmed in a fresh round against the sweep's best statics unless it decides like the oracle.
        if entry["same_as"].get(entry["oracle"]) == "tuned":
            assert "confirmation" not in entry
        else:
            c = entry["confirmation"]
            assert set(c["runs"]) == {"tuned", *c["against"]} and c["oracle"] in c["against"]
            assert len(c["per_round"]) == 1 and entry["verdicts"]["confirmed_vs_oracle"] == c["ratio"]
        assert entry["model_check"] is not None and entry["model_check"]["median_error"] >= 0
        # Policies deciding every call alike were measured once and share the numbers; "always" and "never"
        # differ on every call, so they are never merged.
        assert entry["same_as"].get("always") != "never" and entry["same_as"].get("never") != "always"
        for name, rep in entry["same_as"].items():
            assert rep not in entry["same_as"]
            strip = lambda runs: [{k: v for k, v in r.items() if k != "policy"} for r in runs]  # noqa: E731
            assert strip(entry["runs"][name]) == strip(entry["runs"][rep])
    assert (out / "workload-smoke.md").read_text().startswith("# Co-hosted workload benchmark")
    assert (out / "workload-smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The reruns' basin check: static thresholds alone, side by side; aliases share their representative's ratio.
    basin_dir = tmp_path / "basin"
    assert (
        workload.main(
            [
                "--smoke",
                "--profile",
                str(profile),
                "--out-dir",
                str(basin_dir),
                "--kernel",
                "rank_latencies",
                "--compare",
                "always,1,128,never",
            ]
        )
        == 0
    )
    basin = json.loads((basin_dir / "basin.json").read_text())["basin"]
    assert basin["thresholds"] == [0, 1, 128, None] and basin["same_as"]["T=1"] == "always"
    assert set(basin["vs_best"]) == {"always", "T=1", "T=128", "never"} and basin["vs_best"][basin["best"]] == 1.0
    assert basin["vs_best"]["T=1"] == basin["vs_best"]["always"] and basin["rounds"] == 1


def test_mix_shift_benchmark_runs_and_retunes_from_what_it_recorded(tmp_path):
    from pathlib import Path

    from benchmarks import mixshift

    reference = Path(__file__).resolve().parent.parent / "calibration" / "reference" / "vm.json"
    out = tmp_path / "mixshift"
    assert (
        mixshift.main(["--smoke", "--profile", str(reference), "--out-dir", str(out), "--kernel", "rank_latencies"])
        == 0
    )
    report = json.loads((out / "mixshift-smoke.json").read_text())
    (entry,) = report["workloads"]
    assert entry["sizes"][1] <= 10 * entry["sizes"][0]
    retune = entry["retune"]
    assert retune["calls"] >= entry["calls"]  # every call of the recording run was counted
    assert retune["factors"]["inline"]["samples"] >= 8  # and timed: the static profile keeps them inline
    assert {"tuned", "retuned", "adaptive", "always", "never"} <= set(entry["summary"])
    assert entry["oracle"] not in ("tuned", "adaptive")
    assert len(entry["adaptive"]["thresholds"]) == 2  # the learning run and the measured round
    assert (out / "mixshift-smoke.md").read_text().startswith("# Mix shift")


def test_slowdown_benchmark_runs_every_policy_over_both_phases(tmp_path):
    from benchmarks import slowdown

    out = tmp_path / "slowdown"
    assert slowdown.main(["--smoke", "--out-dir", str(out)]) == 0
    report = json.loads((out / "slowdown-smoke.json").read_text())
    entry = report["entry"]
    assert (out / "profile.json").is_file() and (out / "plan.json").is_file()  # calibrated here, kept with it
    assert entry["calls"] % 2 == 0 and entry["oracle"] not in ("tuned", "adaptive")
    assert {"tuned", "retuned", "adaptive", "always", "never"} <= set(entry["summary"])
    assert entry["summary"]["always"]["offloaded"] == entry["calls"]  # both phases ran, every call offloaded
    assert report["retune"]["factors"]["inline"]["samples"] >= 8
    assert len(report["adaptive"]["thresholds"]) == 1
    assert (out / "slowdown-smoke.md").read_text().startswith("# A kernel 2x slower")


def test_threads_benchmark_runs_both_lanes_and_reports_against_processes_only(tmp_path):
    from pathlib import Path

    from benchmarks import threads

    profile = Path(__file__).resolve().parent / "results" / "threads" / "profile-detect_spikes.json"
    out = tmp_path / "threads"
    assert threads.main(["--smoke", "--profile", str(profile), "--out-dir", str(out)]) == 0
    report = json.loads((out / "threads-smoke.json").read_text())
    (entry,) = report["workloads"]
    assert entry["kernel"].endswith("detect_spikes")
    assert {"lanes", "placed", "process never", "thread always"} <= set(entry["summary"])
    assert len(entry["placed_vs_best_process_per_round"]) == 1
    assert entry["best_process"].startswith("process") and entry["best_thread"].startswith("thread")
    assert entry["decision_at_top"]["backend"] == "thread"  # the profile's thread lane, with both installed
    # The confirmation runs placed and lanes against the sweep's best static of either lane, in rounds of their own.
    c = entry["confirmation"]
    assert c["best_static"] in (entry["best_process"], entry["best_thread"])
    assert set(c["summary"]) == {"placed", "lanes", c["best_static"]}
    assert len(c["placed_vs_best_static_per_round"]) == 1 and c["placed_vs_best_static"] > 0
    markdown = (out / "threads-smoke.md").read_text()
    assert markdown.startswith("# The thread lane") and "confirmation (1 fresh rounds" in markdown


def test_mixed_benchmark_runs_the_profile_s_lanes_against_the_static_grid(tmp_path):
    from pathlib import Path

    from benchmarks import mixed

    reference = Path(__file__).resolve().parent.parent / "calibration" / "reference" / "vm.json"
    out = tmp_path / "mixed"
    assert mixed.main(["--smoke", "--profile", str(reference), "--out-dir", str(out)]) == 0
    report = json.loads((out / "mixed-smoke.json").read_text())
    entry = report["entry"]
    assert "lanes (profile)" in entry["summary"] and entry["best_static"] != "lanes (profile)"
    assert len(entry["summary"]) >= 9  # the profile's lanes and a grid of at least 4 x 2 static policies
    assert entry["same_decisions_as_lanes"] in entry["summary"]
    # The confirmation runs the lanes against the sweep's best static again, in rounds of their own.
    confirmation = entry["confirmation"]
    assert {"lanes (profile)", entry["best_static"]} <= set(confirmation["summary"]) <= set(entry["summary"])
    assert (
        confirmation["lanes_vs_best"] > 0 and len(confirmation["lanes_vs_best_per_round"]) == report["confirm_rounds"]
    )
    markdown = (out / "mixed-smoke.md").read_text()
    assert markdown.startswith("# Mixed workload") and "Confirmation (1 fresh round of" in markdown


def test_cluster_benchmark_measures_a_local_cluster_and_checks_results(tmp_path):
    from pathlib import Path

    from benchmarks import cluster

    reference = Path(__file__).resolve().parents[1] / "calibration" / "reference" / "vm.json"
    out = tmp_path / "cluster"
    assert cluster.main(["--smoke", "--profile", str(reference), "--out-dir", str(out)]) == 0
    report = json.loads((out / "cluster-smoke.json").read_text())
    (row,) = report["kernels"]
    assert row["identical"] is True
    assert set(row["decisions"]) == {"process only", "with the cluster, idle", "with the cluster, pool busy"}
    assert all(len(d) == len(row["sizes"]) for d in row["decisions"].values())
    assert [p["backend"] for p in row["what_if"]] == ["process", "dask x2", "dask x8", "dask x64"]
    assert report["cluster"]["transport"]["round_trip_s"] > 0
    assert (out / "cluster-smoke.md").read_text().startswith("# A Dask cluster as a backend")


def test_a_round_runs_every_policy_on_every_slice_and_adds_the_slices_up():
    import random

    from benchmarks.workload import RunResult, chunk_count, run_round

    calls = [((i,), i) for i in range(100)]
    seen: list[tuple[str, tuple[int, ...]]] = []

    def run(piece, name):
        seen.append((name, tuple(n for _, n in piece)))
        return RunResult(
            name,
            float(len(piece)),
            0.001 * len(piece),
            0.01 * len(piece),
            0.1,
            1.0,
            2.0,
            sum(n % 2 for _, n in piece),
            len(piece),
            0.5,
        )

    results = run_round(calls, ["a", "b", "c"], 4, random.Random(1), run)
    slices = [piece for name, piece in seen if name == "a"]
    assert sorted(n for piece in slices for n in piece) == list(range(100))  # the slices cut the calls
    assert all(sorted(p for name, p in seen if name == x) == sorted(slices) for x in "bc")  # each ran every slice
    orders = {tuple(name for name, _ in seen[i : i + 3]) for i in range(0, 12, 3)}
    assert len(orders) > 1  # the policies' order is shuffled slice by slice
    for name in "abc":
        r = results[name]
        totals = (r.makespan_s, r.calls, r.offloaded, r.caller_cpu_s, r.worker_cpu_s, r.steady_s)
        assert totals == (100.0, 100, 50, 4.0, 8.0, 2.0)
        assert r.lag_p99_s == 0.25 and r.lag_max_s == 0.1  # the largest slice's (25 calls), not a sum
    assert chunk_count(120, 4, 4) == 3 and chunk_count(12, 4, 4) == 1 and chunk_count(1200, 4, 4) == 4
