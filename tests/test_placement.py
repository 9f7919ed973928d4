"""Placement by expected completion (pure parts): the cluster's costs as profile data, the per-bucket tables, the
backlog rule, and the what-if for bigger clusters."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from offload_tuner.runtime._backends import DASK
from offload_tuner.runtime._lanes import Lane as _Lane
from offload_tuner.runtime._placement import (
    ClusterCosts,
    bucket_size,
    cluster_costs,
    isolated,
    lane_table,
    scatter_from,
    thread_table,
    what_if,
)
from offload_tuner.runtime._placer import Placer as _Placer
from offload_tuner.runtime._placer import candidate as _candidate
from offload_tuner.runtime._policy import KernelCosts, LoadFactors, PolicyKnobs, TransportModel
from offload_tuner.runtime._profile import ProfileError, parse_profile
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


@pytest.mark.parametrize(
    "mutate, named",
    [
        (lambda d: d.pop("identity"), "identity"),
        (lambda d: d["identity"].update(workers=0), "identity.workers"),
        (lambda d: d["identity"].update(address=""), "identity.address"),
        (lambda d: d["kernels"]["k"].update(worker_compute_ratio=-1), "worker_compute_ratio"),
        (lambda d: d["kernels"]["k"].update(worker_compute_ratio=1e9), "worker_compute_ratio"),
        (lambda d: d["transport"].pop("round_trip_s"), "round_trip_s"),
        (lambda d: d.update(scatter={"from_bytes": -1}), "scatter.from_bytes"),
    ],
)
def test_a_bad_cluster_section_is_refused_naming_the_field(mutate, named):
    data = cluster().to_json()
    mutate(data)
    profile = {"schema": 3, "host": {}, "executor": {"kind": "process"}, "kernels": {}, "cluster": data}
    with pytest.raises(ProfileError, match=named) as info:
        parse_profile(json.dumps(profile), "p.json")
    assert '"cluster"' in str(info.value)


def test_placement_tables_leave_out_the_load_factors():
    loaded = KernelCosts(
        COSTS.compute, COSTS.caller_serial, COSTS.worker_serial, COSTS.nbytes, 1.0, LoadFactors(2.0, 2.0, 3.0)
    )
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
    assert bucket_size(10) == pytest.approx(2**9.5)


def test_the_queue_counts_only_once_every_slot_is_busy():
    with ThreadPoolExecutor(1) as a:
        pool = _Lane("process", a)
        ((score, _lane, _),) = _Placer((_candidate(pool, lane_table(COSTS, LOCAL, KNOBS), 0, 2),), 8).completions(100)
        pool.inflight, pool.work = 1, 5.0
        assert _Placer((_candidate(pool, lane_table(COSTS, LOCAL, KNOBS), 0, 2),), 8).completions(100)[0][0] == score
        pool.inflight = 2
        busy = _Placer((_candidate(pool, lane_table(COSTS, LOCAL, KNOBS), 0, 2),), 8).completions(100)[0][0]
        assert busy == pytest.approx(score + 2.5)


def test_the_placer_sends_calls_to_the_cluster_when_the_pool_is_backlogged():
    with ThreadPoolExecutor(1) as a, ThreadPoolExecutor(1) as b:
        pool, remote = _Lane("process", a), _Lane("dask", b)
        remote.backend = DASK  # stands for a cluster: its workers are not this host's cores
        local_t, remote_t = lane_table(COSTS, LOCAL, KNOBS), lane_table(cluster_costs(COSTS, 1.0), REMOTE, KNOBS)
        placer = _Placer((_candidate(pool, local_t, 0, 2), _candidate(remote, remote_t, 0, 2)), 2)
        n = 1000  # 0.1 s of compute: the pool wins by the cluster's round trip when idle
        assert placer.place(n).lane is pool
        pool.inflight, pool.work = 2, 1.0  # two calls of 0.5 s each running
        placed = placer.place(n)
        assert placed.lane is remote
        assert placed.work == pytest.approx(remote_t.work_s[n.bit_length()])
        # Completion re-anchors: the last call out leaves exactly zero, whatever the predictions said.
        pool.inflight, pool.work = 1, 0.123
        pool.settle(0.5)
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


def test_the_loop_time_a_choice_blocks_is_charged_once_per_other_caller():
    """A cluster whose client costs the caller 6 ms of CPU per call: with no other caller it wins a call its faster
    workers win back; with three others waiting on the loop, those 6 ms cost 18 more and the pool keeps it."""
    heavy_client = TransportModel(1e-2, 1e-9, 6e-3, 1e-10, 5e-5, 1e-10)
    with ThreadPoolExecutor(1) as a, ThreadPoolExecutor(1) as b:
        pool, remote = _Lane("process", a), _Lane("dask", b)
        remote.backend = DASK  # stands for a cluster: its workers are not this host's cores
        local_t = lane_table(COSTS, LOCAL, KNOBS)
        remote_t = lane_table(cluster_costs(COSTS, 0.9), heavy_client, KNOBS)
        n = 2000  # ~0.145 s of compute at the bucket's middle: 0.9x saves ~14 ms, the round trip costs 10 ms
        alone = _Placer((_candidate(pool, local_t, 0, 2), _candidate(remote, remote_t, 0, 2)), 2)
        shared = _Placer((_candidate(pool, local_t, 3, 2), _candidate(remote, remote_t, 3, 2)), 2)
        assert alone.place(n).lane is remote
        assert shared.place(n).lane is pool
        assert "loop" in shared.describe(n) and "x 3 callers" in shared.describe(n)


@pytest.mark.parametrize("cores, overflow", [(8, True), (2, False)])
def test_a_backlogged_thread_pool_overflows_to_processes_only_onto_free_cores(cores, overflow):
    """Arrays: pickling them costs the caller a fifth of the compute; in a thread the kernel holds the GIL 2%. Both
    threads busy: on 8 cores the idle process pool has free cores to run on and takes the call; on 2 cores the
    threads already take every core, the process pool would only share them, and the call waits for a thread."""
    arrays = KernelCosts.from_json({**synthetic_costs(1e-4), "caller_serial": synthetic_costs(2e-5)["compute"]})
    with ThreadPoolExecutor(1) as a, ThreadPoolExecutor(1) as b:
        threads, pool = _Lane("thread", a), _Lane("process", b)
        placer = _Placer(
            (
                _candidate(threads, thread_table(arrays, 6e-5, 0.02), 3, 2),
                _candidate(pool, lane_table(arrays, LOCAL, KNOBS), 3, 2),
            ),
            cores,
        )
        n = 1000
        assert placer.place(n).lane is threads  # idle: no pickling, no round trip
        threads.inflight, threads.work = 2, 2.0  # both threads busy for ~1 s
        assert (placer.place(n).lane is pool) is overflow


def test_with_both_pools_a_backlogged_thread_pool_sends_the_call_to_the_process_pool(tmp_path):
    """The runtime end to end: a GIL-releasing kernel's offloaded call goes to the thread pool while it is idle and
    to the process pool while both threads are taken; placement off keeps it on threads whatever the backlog."""
    import os

    import offload_tuner
    from offload_tuner import decide, run_kernel_sync
    from offload_tuner.runtime import _entries, _placer, _state
    from offload_tuner.runtime._registry import kernel_key
    from tests import support
    from tests.support import write_profile_json

    key = kernel_key(support.lane_probe)
    path = write_profile_json(tmp_path / "p.json", {key: 0})
    data = json.loads(path.read_text())
    data["kernels"][key].update(
        costs={**synthetic_costs(1e-4), "caller_serial": synthetic_costs(2e-5)["compute"]},
        thread={"gil_hold": 0.01, "threshold": 0},
    )
    data.update(
        transport={"model": synthetic_transport(2e-4)},
        thread={"fixed_s": 6e-5},
        policy={"concurrency": 4, "workers": 1, "cores": 8, "loop_budget_s": 0.1},
    )
    path.write_text(json.dumps(data))
    pools = offload_tuner.recommended_pools(1, threads=2)
    try:
        offload_tuner.load_profile(path)
        offload_tuner.set_executors(pools)
        xs = list(range(1000))
        assert decide(support.lane_probe, xs).backend == "thread"
        assert run_kernel_sync(support.lane_probe, xs)[0] == os.getpid()
        placer = _entries.resolve(support.lane_probe)[1].lane
        assert isinstance(placer, _placer.Placer)
        _entries.install_adapted(offload_tuner.current_profile(), {})  # a snapshot swap, as an adaptation step makes
        decide(support.lane_probe, xs)
        assert _entries.resolve(support.lane_probe)[1].lane is placer  # its tables are not built again
        threads = _state._snapshot.gil_free
        threads.inflight, threads.work = 2, 2.0
        busy = decide(support.lane_probe, xs)
        assert busy.backend == "process" and "queue 1000.00 behind 2 in flight" in busy.reason
        assert run_kernel_sync(support.lane_probe, xs)[0] != os.getpid()
        assert (threads.inflight, threads.work) == (2, 2.0)  # the call went elsewhere: its backlog untouched
        previous = _placer.set_placement(False)
        try:
            assert decide(support.lane_probe, xs).backend == "thread"
        finally:
            _placer.set_placement(previous)
    finally:
        offload_tuner.set_executors({})
        offload_tuner.unload_profile()
        for pool in pools.values():
            pool.shutdown(wait=True)


def test_scatter_starts_where_it_is_cheaper_at_that_size_and_every_larger_one():
    def rows(*cheaper: bool) -> list[dict]:
        return [
            {"bytes": 1 << (20 + 3 * i), "with_call_s": 1.0, "scatter_s": 0.5 if c else 2.0}
            for i, c in enumerate(cheaper)
        ]

    assert scatter_from(rows(False, False, False)) is None  # what this VM's LocalCluster measured
    assert scatter_from(rows(False, True, True)) == 1 << 23
    assert scatter_from(rows(True, False, True)) == 1 << 26  # one larger payload where it lost: start after it
    assert scatter_from(list(reversed(rows(True, True, True)))) == 1 << 20


def test_the_two_candidate_shortcut_places_every_call_as_the_general_pass_does():
    """place() spells the pass out for two candidates; the general loop is the reference. Random backlogs, sizes,
    a local and a remote candidate or two local ones."""
    import random

    rng = random.Random(20261130)
    with ThreadPoolExecutor(1) as a, ThreadPoolExecutor(1) as b:
        for remote_second in (False, True):
            first, second = _Lane("thread", a), _Lane("dask" if remote_second else "process", b)
            if remote_second:
                second.backend = DASK
            tables = (thread_table(COSTS, 6e-5, 0.02), lane_table(cluster_costs(COSTS, 0.7), REMOTE, KNOBS))
            shortcut = _Placer((_candidate(first, tables[0], 3, 2), _candidate(second, tables[1], 3, 2)), 2)
            general = _Placer((_candidate(first, tables[0], 3, 2), _candidate(second, tables[1], 3, 2)), 2)
            general.pair = None
            chosen = set()
            for _ in range(500):
                first.inflight, first.work = rng.randint(0, 3), rng.random() * 2
                second.inflight, second.work = rng.randint(0, 3), rng.random() * 2
                n = int(2 ** rng.uniform(0, 20))  # log-uniform: small calls favour one lane, large the other
                got, want = shortcut.place(n), general.place(n)
                assert (got.lane, got.work, got.guard) == (want.lane, want.work, want.guard)
                chosen.add(got.lane.name)
            assert chosen == {first.name, second.name}  # both outcomes met, or the comparison proves little


def test_show_prints_the_cluster_a_profile_measured(tmp_path, capsys):
    from offload_tuner.inspection._cli import main
    from tests.support import cluster_profile

    path = cluster_profile(tmp_path, "tcp://10.1.2.3:8786", ratio=0.5)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "dask cluster tcp://10.1.2.3:8786 (2 workers, 2 threads): round trip 10.00 ms" in out
    assert "tests.support:nap: computes in 0.50x this host's inline time on a cluster worker" in out
    assert main(["show", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["cluster"]["identity"]["address"] == "tcp://10.1.2.3:8786"
    assert shown["cluster"]["kernels"]["tests.support:nap"]["worker_compute_ratio"] == 0.5
