"""Placement by expected completion (pure parts): the cluster's costs as profile data, the per-bucket tables, the
backlog rule, and the what-if for bigger clusters."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from offload_tuner.runtime._placement import (
    ClusterCosts,
    bucket_size,
    cluster_costs,
    expected_completion,
    isolated,
    lane_table,
    what_if,
)
from offload_tuner.runtime._policy import KernelCosts, LoadFactors, PolicyKnobs, TransportModel
from offload_tuner.runtime._profile import ProfileError, parse_profile
from offload_tuner.runtime._runtime import _Lane, _Placer, _settle
from tests.support import synthetic_costs, synthetic_transport

COSTS = KernelCosts.from_json(synthetic_costs(1e-4))  # 0.1 ms per element
LOCAL = TransportModel.from_json(synthetic_transport(2e-4))
REMOTE = TransportModel.from_json(synthetic_transport(1e-2))  # a 10 ms round trip, like a LocalCluster here
KNOBS = PolicyKnobs(concurrency=4, workers=2, cores=2)


def cluster(ratio: float = 1.0, threads: int = 2) -> ClusterCosts:
    return ClusterCosts("tcp://127.0.0.1:8786", threads, threads, REMOTE, {"k": ratio})


def test_cluster_costs_round_trip_through_json():
    original = cluster(0.5)
    again = ClusterCosts.from_json(json.loads(json.dumps(original.to_json())))
    assert again == original


@pytest.mark.parametrize("mutate, named", [
    (lambda d: d.pop("identity"), "identity"),
    (lambda d: d["identity"].update(workers=0), "identity.workers"),
    (lambda d: d["identity"].update(address=""), "identity.address"),
    (lambda d: d["kernels"]["k"].update(worker_compute_ratio=-1), "worker_compute_ratio"),
    (lambda d: d["kernels"]["k"].update(worker_compute_ratio=1e9), "worker_compute_ratio"),
    (lambda d: d["transport"].pop("round_trip_s"), "round_trip_s"),
])
def test_a_bad_cluster_section_is_refused_naming_the_field(mutate, named):
    data = cluster().to_json()
    mutate(data)
    profile = {"schema": 3, "host": {}, "executor": {"kind": "process"}, "kernels": {}, "cluster": data}
    with pytest.raises(ProfileError, match=named) as info:
        parse_profile(json.dumps(profile), "p.json")
    assert '"cluster"' in str(info.value)


def test_placement_tables_leave_out_the_load_factors():
    loaded = KernelCosts(COSTS.compute, COSTS.caller_serial, COSTS.worker_serial, COSTS.nbytes, 1.0,
                         LoadFactors(2.0, 2.0, 3.0))
    assert lane_table(isolated(loaded), LOCAL, KNOBS) == lane_table(COSTS, LOCAL, KNOBS)
    assert cluster_costs(loaded, 0.5).worker_compute_ratio == 0.5
    assert cluster_costs(loaded, 0.5).load == LoadFactors()


def test_tables_grow_with_size_and_a_faster_cluster_wins_large_calls_only():
    local = lane_table(COSTS, LOCAL, KNOBS)
    remote = lane_table(cluster_costs(COSTS, 0.25), REMOTE, KNOBS)
    assert list(local.latency_s) == sorted(local.latency_s)
    small, large = 4, 16  # ~11 and ~46k elements
    assert local.latency_s[small] < remote.latency_s[small]  # the round trip dominates
    assert remote.latency_s[large] < local.latency_s[large]  # 4x faster workers dominate
    assert bucket_size(10) == pytest.approx(2 ** 9.5)


def test_the_queue_counts_only_once_every_slot_is_busy():
    assert expected_completion(0.01, inflight=1, work_s=5.0, slots=2) == 0.01
    assert expected_completion(0.01, inflight=2, work_s=5.0, slots=2) == pytest.approx(2.51)


def test_the_placer_sends_calls_to_the_cluster_when_the_pool_is_backlogged():
    with ThreadPoolExecutor(1) as a, ThreadPoolExecutor(1) as b:
        pool, remote = _Lane("process", a), _Lane("cluster", b)
        local_t, remote_t = lane_table(COSTS, LOCAL, KNOBS), lane_table(cluster_costs(COSTS, 1.0), REMOTE, KNOBS)
        placer = _Placer(((pool, local_t.latency_s, local_t.work_s, 2), (remote, remote_t.latency_s, remote_t.work_s, 2)))
        n = 1000  # 0.1 s of compute: the pool wins by the cluster's round trip when idle
        assert placer.place(n).lane is pool
        pool.inflight, pool.work = 2, 1.0  # two calls of 0.5 s each running
        placed = placer.place(n)
        assert placed.lane is remote
        assert placed.work == pytest.approx(remote_t.work_s[n.bit_length()])
        # Completion re-anchors: the last call out leaves exactly zero, whatever the predictions said.
        pool.inflight, pool.work = 1, 0.123
        _settle(pool, 0.5)
        assert (pool.inflight, pool.work) == (0, 0.0)


def test_what_if_more_workers_never_slow_a_stream_and_eventually_beat_the_local_pool():
    rows = what_if(COSTS, LOCAL, cluster(1.0, threads=2), 1.0, KNOBS, 2000, workers=(8, 64))
    names = [r.backend for r in rows]
    assert names == ["process", "dask x2", "dask x8", "dask x64"]
    periods = [r.period_s for r in rows[1:]]
    assert periods == sorted(periods, reverse=True)
    assert rows[-1].period_s < rows[0].period_s / 8  # 64 slots against 2
    assert rows[1].latency_s > rows[0].latency_s  # one call still pays the cluster's round trip


def test_explain_prints_the_cluster_and_the_what_if(tmp_path, capsys):
    from offload_tuner.inspection._cli import main
    from offload_tuner.runtime._registry import kernel_key
    from tests import support
    from tests.support import cluster_profile

    key = kernel_key(support.nap)
    path = cluster_profile(tmp_path, "tcp://10.1.2.3:8786", ratio=0.5)
    assert main(["explain", key, "1000", "--profile", str(path), "--what-if", "8,64"]) == 0
    out = capsys.readouterr().out
    assert "dask cluster tcp://10.1.2.3:8786 (2 workers, 2 threads)" in out
    assert "0.50x this host's time" in out
    lines = {line.split()[0] + " " + line.split()[1]: line for line in out.splitlines() if "dask x" in line}
    assert set(lines) == {"dask x2", "dask x8", "dask x64"}
    with pytest.raises(SystemExit):
        main(["explain", key, "1000", "--profile", str(path), "--what-if", "0"])
