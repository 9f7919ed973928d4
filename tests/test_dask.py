"""A Dask cluster as one more backend, against a real LocalCluster on 127.0.0.1 (processes, 2 workers, 1 thread
each, random ports, no dashboard) that the fixtures start and shut down. Every fault is injected for real."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from distributed import Client, LocalCluster  # the [test] extra installs it: an ImportError must fail, not skip

import offload_tuner
from offload_tuner import OffloadTunerWarning, decide, run_kernel, run_kernel_sync
from offload_tuner.runtime import _lanes, _state
from tests import support
from tests.support import cluster_profile

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _wildcard_listeners() -> set[str]:
    """Listening TCP sockets bound to every interface (0.0.0.0 or ::), from /proc."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address = local.rsplit(":", 1)[0]
            if state == "0A" and set(address) == {"0"}:
                found.add(f"{table}:{local}")
    return found


def start_cluster(port: int = 0) -> LocalCluster:
    """No dashboard, and the scheduler's small HTTP server (health, metrics) on a random loopback port: with
    ``dashboard_address=None`` it would still take the fixed port 8787."""
    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=port,
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": False},
        silence_logs=logging.ERROR,
    )


@pytest.fixture(scope="module")
def local_cluster():
    before = _wildcard_listeners()
    cluster = start_cluster()
    client = Client(cluster, set_as_default=False)
    try:
        yield cluster, client, before
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def pool():
    pool = offload_tuner.recommended_pool(1)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(autouse=True)
def clean_runtime():
    yield
    offload_tuner.set_executors({})
    offload_tuner.unload_profile()


def offload_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, OffloadTunerWarning)]


def worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


# ------------------------------------------------------------------------------------------------ basics


def test_the_cluster_listens_on_loopback_only(local_cluster):
    cluster, client, before = local_cluster
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    assert all(address.startswith("tcp://127.0.0.1:") for address in client.scheduler_info()["workers"])
    assert _wildcard_listeners() - before == set()
    http = [sock.getsockname() for sock in cluster.scheduler.http_server._sockets.values()]
    assert http and all(host == "127.0.0.1" and port != 8787 for host, port in http)


def test_the_production_path_never_imports_dask(tmp_path):
    code = (
        "import sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "import offload_tuner\n"
        "from tests.support import total\n"
        "offload_tuner.set_executor(ThreadPoolExecutor(1))\n"
        "assert offload_tuner.run_kernel_sync(total, [1, 2], offload_if=True) == 3\n"
        "assert offload_tuner.run_kernel_sync(total, [1, 2]) == 3\n"
        "offload_tuner.load_profile(sys.argv[1], strict=True)\n"
        "assert offload_tuner.current_profile().cluster is not None\n"
        "assert offload_tuner.run_kernel_sync(total, [1, 2]) == 3\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "             ('distributed', 'dask', 'tornado', 'numpy', 'sklearn')))\n"
    )
    profile = cluster_profile(tmp_path, "tcp://10.0.0.1:8786")  # a cluster in the profile, none installed
    out = subprocess.run(
        [sys.executable, "-c", code, str(profile)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_results_are_identical_to_inline_and_placement_says_why(local_cluster, pool, tmp_path):
    cluster, client, _ = local_cluster
    offload_tuner.load_profile(cluster_profile(tmp_path, cluster.scheduler_address))
    offload_tuner.set_executors({"process": pool, "dask": client.get_executor(pure=False)})
    decision = decide(support.nap, 0.0, 100)
    assert (decision.offload, decision.backend) == (True, "dask")
    assert "soonest by expected completion" in decision.reason and "process" in decision.reason
    xs = list(range(100))
    assert run_kernel_sync(support.total, xs) == sum(xs)
    assert asyncio.run(run_kernel(support.total, xs)) == sum(xs)
    pid, n = run_kernel_sync(support.nap, 0.0, 100)
    assert pid in worker_pids(client) and n == 100
    with pytest.raises(ValueError, match="bad input of length 100"):  # the kernel's own exception, as itself
        run_kernel_sync(support.fails, xs)
    with pytest.raises(ValueError, match="bad input of length 100"):
        asyncio.run(run_kernel(support.fails, xs))


def test_payloads_go_by_scatter_where_the_profile_measured_it_cheaper(local_cluster, pool, tmp_path):
    cluster, client, _ = local_cluster
    path = cluster_profile(tmp_path, cluster.scheduler_address)
    data = json.loads(path.read_text())
    data["cluster"]["scatter"] = {"from_bytes": 0}  # every payload: this cluster never measured it cheaper
    path.write_text(json.dumps(data))
    offload_tuner.load_profile(path)
    offload_tuner.set_executors({"process": pool, "dask": client.get_executor(pure=False)})
    workers = worker_pids(client)
    xs = list(range(1000))
    assert run_kernel_sync(support.total, xs) == sum(xs)
    assert asyncio.run(run_kernel(support.total, xs)) == sum(xs)
    assert run_kernel_sync(support.nap, 0.0, 100)[0] in workers
    assert asyncio.run(run_kernel(support.nap, 0.0, 100))[0] in workers
    with pytest.raises(ValueError, match="bad input of length 1000"):
        asyncio.run(run_kernel(support.fails, xs))


def test_a_slow_cluster_gets_nothing_while_the_pool_is_idle(local_cluster, pool, tmp_path):
    cluster, client, _ = local_cluster
    offload_tuner.load_profile(cluster_profile(tmp_path, cluster.scheduler_address, ratio=50.0))
    offload_tuner.set_executors({"process": pool, "dask": client.get_executor(pure=False)})
    assert decide(support.nap, 0.0, 100).backend == "process"
    pid, _ = run_kernel_sync(support.nap, 0.0, 100)
    assert pid not in worker_pids(client) and pid != os.getpid()


def test_a_backlogged_pool_overflows_to_the_cluster(local_cluster, pool, tmp_path):
    """Equal speeds: idle, the pool wins by the cluster's round trip; with the pool's one worker busy on a long
    call, the next call is placed on the cluster, and back on the pool once that call completed."""
    cluster, client, _ = local_cluster
    offload_tuner.load_profile(cluster_profile(tmp_path, cluster.scheduler_address, ratio=1.0))
    offload_tuner.set_executors({"process": pool, "dask": client.get_executor(pure=False)})
    assert decide(support.nap, 0.0, 100).backend == "process"

    async def main():
        long_call = asyncio.ensure_future(run_kernel(support.nap, 0.5, 2000))  # 2 s predicted on a 1-worker pool
        await asyncio.sleep(0.05)
        during = decide(support.nap, 0.0, 100)
        overflow = await run_kernel(support.nap, 0.0, 100)
        first = await long_call
        return during, overflow, first

    during, (overflow_pid, _), (first_pid, _) = asyncio.run(main())
    assert during.backend == "dask" and "1 in flight" in during.reason
    assert overflow_pid in worker_pids(client)
    assert first_pid not in worker_pids(client)
    assert decide(support.nap, 0.0, 100).backend == "process"  # completed: the backlog is back to zero
    lanes = _state._snapshot.lanes
    assert (lanes["process"].inflight, lanes["process"].work, lanes["dask"].inflight) == (0, 0.0, 0)


def test_a_profile_without_this_cluster_keeps_kernels_local_and_says_so(local_cluster, pool, tmp_path):
    cluster, client, _ = local_cluster
    offload_tuner.load_profile(cluster_profile(tmp_path, "tcp://10.0.0.1:8786"))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        offload_tuner.set_executors({"process": pool, "dask": client.get_executor(pure=False)})
        assert decide(support.nap, 0.0, 100).backend == "process"
        assert decide(support.nap, 0.0, 100).backend == "process"
    said = offload_warnings(record)
    assert len(said) == 1 and "tcp://10.0.0.1:8786" in said[0] and cluster.scheduler_address in said[0]


# ------------------------------------------------------------------------------------------------ faults


def test_a_worker_killed_mid_call_still_gives_the_result(local_cluster, pool, tmp_path):
    cluster, client, _ = local_cluster
    offload_tuner.load_profile(cluster_profile(tmp_path, cluster.scheduler_address))
    offload_tuner.set_executors({"process": pool, "dask": client.get_executor(pure=False)})

    async def main():
        call = asyncio.ensure_future(run_kernel(support.nap, 1.5, 100))
        for _ in range(200):  # until a worker runs it
            await asyncio.sleep(0.02)
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                break
        victim = client.run(os.getpid, workers=busy)[busy[0]]
        os.kill(victim, signal.SIGKILL)
        return victim, await asyncio.wait_for(call, 60)

    victim, (pid, n) = asyncio.run(main())
    assert n == 100 and pid != victim  # recomputed: by Dask's retry on the other worker, or locally
    client.wait_for_workers(2, timeout=30)  # the nanny restarts the killed worker for the next tests


def test_unreachable_at_start_then_retried_when_it_comes_up(pool, tmp_path):
    with socket.socket() as probe:  # a free port nobody listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    offload_tuner.load_profile(cluster_profile(tmp_path, address))
    executor = offload_tuner.cluster_executor(address, connect_timeout_s=0.5, retry_s=0.3)
    cluster = None
    try:
        offload_tuner.set_executors({"process": pool, "dask": executor})
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            first = run_kernel_sync(support.nap, 0.0, 100)  # placed on the cluster, which is not there
            second = asyncio.run(run_kernel(support.nap, 0.0, 100))
        assert first[1] == second[1] == 100
        assert first[0] != os.getpid() and second[0] != os.getpid()  # computed on the local pool, not inline
        said = offload_warnings(record)
        assert len(said) == 1 and "dask" in said[0] and "tried again" in said[0]
        assert decide(support.nap, 0.0, 100).backend == "process"  # dropped for now
        cluster = start_cluster(port)
        assert executor.wait_connected(30)
        deadline = time.monotonic() + 30
        while decide(support.nap, 0.0, 100).backend != "dask" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert decide(support.nap, 0.0, 100).backend == "dask"
        pid, _ = run_kernel_sync(support.nap, 0.0, 100)
        assert pid in worker_pids(executor.client)
    finally:
        executor.shutdown()
        if cluster is not None:
            cluster.close()


def test_scheduler_lost_mid_call_the_call_is_computed_locally(pool, tmp_path):
    cluster = start_cluster()
    client = Client(cluster, set_as_default=False)
    try:
        offload_tuner.load_profile(cluster_profile(tmp_path, cluster.scheduler_address))
        offload_tuner.set_executors({"process": pool, "dask": client.get_executor(pure=False)})
        workers = worker_pids(client)

        async def main():
            call = asyncio.ensure_future(run_kernel(support.nap, 1.0, 100))
            await asyncio.sleep(0.4)
            client.loop.add_callback(cluster.scheduler.close)
            started = time.monotonic()
            result = await asyncio.wait_for(call, 60)
            return result, time.monotonic() - started

        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            (pid, n), waited = asyncio.run(main())
            after = run_kernel_sync(support.nap, 0.0, 100)  # the cluster is dropped: straight to the pool
        assert n == 100 and pid not in workers and after[0] not in workers
        assert waited < 15
        said = offload_warnings(record)
        assert len(said) == 1 and "dask executor failed" in said[0]
        assert "no result within" not in said[0]  # the lost scheduler was seen as such, not by the guard
    finally:
        client.close()
        cluster.close()


def test_a_cluster_call_past_its_guard_is_computed_locally(local_cluster, pool, tmp_path, monkeypatch):
    cluster, client, _ = local_cluster
    monkeypatch.setattr(_lanes, "CLUSTER_GUARD_FLOOR_S", 0.5)
    monkeypatch.setattr(_lanes, "CLUSTER_GUARD_FACTOR", 1.0)
    # Predicted: ~12 ms on the cluster; the nap takes 2 s there, so the 0.5 s guard fires.
    offload_tuner.load_profile(cluster_profile(tmp_path, cluster.scheduler_address))
    offload_tuner.set_executors({"process": pool, "dask": client.get_executor(pure=False)})
    workers = worker_pids(client)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        started = time.monotonic()
        pid, n = asyncio.run(run_kernel(support.nap, 2.0, 100))
        took = time.monotonic() - started
    assert n == 100 and pid not in workers
    assert took < 2.0 + 0.5 + 10  # guard + the local run, never a hang
    said = offload_warnings(record)
    assert len(said) == 1 and "no result within" in said[0]


def test_the_callers_own_timeout_still_raises(local_cluster, pool, tmp_path):
    cluster, client, _ = local_cluster
    offload_tuner.load_profile(cluster_profile(tmp_path, cluster.scheduler_address))
    offload_tuner.set_executors({"process": pool, "dask": client.get_executor(pure=False)})
    with pytest.raises(TimeoutError):
        asyncio.run(run_kernel(support.nap, 2.0, 100, timeout=0.3))
    with pytest.raises(TimeoutError):
        run_kernel_sync(support.nap, 2.0, 100, timeout=0.3)
    assert decide(support.nap, 0.0, 100).backend == "dask"  # the caller's bound is not the cluster's fault
    xs = list(range(100))
    assert decide(support.times_out, xs).backend == "dask"
    with pytest.raises(TimeoutError, match="the kernel's own"):  # raised by the kernel: not a timeout of ours
        asyncio.run(run_kernel(support.times_out, xs))
    with pytest.raises(TimeoutError, match="the kernel's own"):
        run_kernel_sync(support.times_out, xs)
    assert decide(support.nap, 0.0, 100).backend == "dask"  # the cluster was not dropped for it
    deadline = time.monotonic() + 10  # leave the workers idle for the tests after this one
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------- calibration


def test_calibrate_against_the_cluster_records_its_costs(local_cluster, tmp_path):
    cluster, _, _ = local_cluster
    out = tmp_path / "profile.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "offload_tuner.inspection._cli",
            "calibrate",
            "--effort",
            "quick",
            "-q",
            "--kernel",
            "graph_eccentricities",
            "--dask",
            cluster.scheduler_address,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    profile = offload_tuner.load_profile(out, strict=True)
    section = profile.cluster
    assert section is not None and section.address == cluster.scheduler_address
    assert (section.workers, section.threads) == (2, 2)
    assert 1e-4 < section.transport.round_trip_s < 1.0  # Dask's round trip: ~10 ms here, never the pool's 0.2 ms
    ((key, ratio),) = section.ratios.items()
    assert key.endswith(":graph_eccentricities") and 0.2 < ratio < 5  # same CPU, shared cores
    row = profile.data["cluster"]["kernels"][key]
    assert len(row["cluster_s"]) == len(row["local_worker_s"]) >= 3
    scatter = profile.data["cluster"]["scatter"]
    assert len(scatter["rows"]) == 3 and all(r["scatter_s"] > 0 and r["with_call_s"] > 0 for r in scatter["rows"])
    assert section.scatter_from_bytes == scatter["from_bytes"]


def test_calibrate_names_an_unreachable_scheduler(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "offload_tuner.inspection._cli",
            "calibrate",
            "--effort",
            "quick",
            "-q",
            "--kernel",
            "graph_eccentricities",
            "--dask",
            f"tcp://127.0.0.1:{port}",
            "--out",
            str(tmp_path / "p.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 8
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in run.stderr
    assert not (tmp_path / "p.json").exists()


def test_a_cluster_as_the_only_executor_is_guarded_too(tmp_path):
    """No local pool, no profile entry to place by: offload_if=True sends calls to the cluster, and an unreachable
    one still gives the result (computed inline), with one warning, never ClusterUnavailable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executor = offload_tuner.cluster_executor(f"tcp://127.0.0.1:{port}", connect_timeout_s=0.5, retry_s=0.3)
    try:
        offload_tuner.set_executors({"dask": executor})
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert run_kernel_sync(support.total, [1, 2, 3], offload_if=True) == 6
            assert asyncio.run(run_kernel(support.total, [1, 2, 3], offload_if=True)) == 6
        said = offload_warnings(record)
        assert len(said) == 1 and "not connected" in said[0]
    finally:
        executor.shutdown()
