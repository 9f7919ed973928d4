"""Several executors at once (set_executors): the thread lane for kernels the profile says release the GIL,
the process lane for the rest, and each executor failing alone."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

import offload_tuner
from offload_tuner import OffloadTunerWarning, decide, get_executor, get_executors, run_kernel, run_kernel_sync
from offload_tuner.runtime._registry import kernel_key
from tests import support
from tests.support import write_profile_json

GIL_FREE = kernel_key(support.lane_probe)  # stands for a kernel calibration measured releasing the GIL
GIL_BOUND = kernel_key(support.total)
NESTING = kernel_key(support.calls_lane_probe)
DECIDING = kernel_key(support.nested_decisions)
THREAD_PREFIX = "lane-test"


def in_a_pool_thread(ran: tuple[int, str]) -> bool:
    return ran[0] == os.getpid() and ran[1].startswith(THREAD_PREFIX)


def lane_profile(
    tmp_path, *, hold: float = 0.02, thread_threshold: int | None = 4, kind: str = "process", schema: int | None = None
):
    path = write_profile_json(
        tmp_path / "p.json", {GIL_FREE: 1000, GIL_BOUND: 4, NESTING: 1000, DECIDING: 1000}, executor_kind=kind
    )
    data = json.loads(path.read_text())
    if schema is not None:
        data["schema"] = schema
    for key in (GIL_FREE, NESTING, DECIDING):
        data["kernels"][key]["thread"] = {"gil_hold": hold, "threshold": thread_threshold}
    data["kernels"][GIL_BOUND]["thread"] = {"gil_hold": 0.55, "threshold": None}
    data["thread"] = {"fixed_s": 5e-5}
    path.write_text(json.dumps(data))
    return path


def offload_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, OffloadTunerWarning)]


@pytest.fixture
def threads():
    """A one-thread pool whose thread names tell it from the caller's (and from inline)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=THREAD_PREFIX)
    yield pool
    pool.shutdown()


def test_set_executors_checks_names_and_executors(threads):
    with pytest.raises(ValueError, match="'thread' backend; install it under 'thread', not 'process'"):
        offload_tuner.set_executors({"process": threads})
    with pytest.raises(TypeError, match="'thread' needs a concurrent.futures-style executor"):
        offload_tuner.set_executors({"thread": object()})
    with pytest.raises(TypeError, match="mapping"):
        offload_tuner.set_executors([threads])  # type: ignore[arg-type]
    offload_tuner.set_executors({"thread": threads})
    got = get_executors()
    assert got == {"thread": threads} and get_executor() is threads
    got.clear()
    assert get_executors() == {"thread": threads}, "a copy"
    offload_tuner.set_executors({})
    assert get_executor() is None and get_executors() == {}


def test_a_gil_releasing_kernel_goes_to_threads_and_the_rest_to_processes(pool, tmp_path):
    threads = ThreadPoolExecutor(2, thread_name_prefix=THREAD_PREFIX)
    try:
        offload_tuner.set_executors({"process": pool, "thread": threads})
        assert get_executor() is pool, "caller-decided calls and kernels without a thread lane: the process pool"
        offload_tuner.load_profile(lane_profile(tmp_path))
        free = decide(support.lane_probe, [0] * 8)
        assert free.offload and free.backend == "thread" and free.threshold == 4
        assert "releases the GIL" in free.reason and "2%" in free.reason
        assert decide(support.lane_probe, [0] * 2).backend == "inline"
        bound = decide(support.total, [0] * 8)
        assert bound.offload and bound.backend == "process", "holding the GIL: never sent to threads"
        assert decide(support.lane_probe, [0] * 8, offload_if=True).backend == "process"

        assert in_a_pool_thread(run_kernel_sync(support.lane_probe, [0] * 8))
        assert in_a_pool_thread(asyncio.run(run_kernel(support.lane_probe, [0] * 8)))
        assert run_kernel_sync(support.lane_probe, [0] * 2) == (os.getpid(), threading.current_thread().name)
        assert run_kernel_sync(support.lane_probe, [0] * 8, offload_if=True)[0] != os.getpid(), "the caller's word"
        assert run_kernel_sync(support.total, list(range(8))) == 28
    finally:
        threads.shutdown()


def test_a_kernel_holding_the_gil_never_goes_to_threads_whatever_its_threshold_says(pool, tmp_path, threads):
    offload_tuner.set_executors({"process": pool, "thread": threads})
    offload_tuner.load_profile(lane_profile(tmp_path, hold=0.5))  # a hand-edited threshold: refused
    assert decide(support.lane_probe, [0] * 8).backend == "inline", "its process threshold (1000) applies"
    assert decide(support.lane_probe, [0] * 1000).backend == "process"


def test_without_a_thread_pool_the_thread_sections_are_ignored(pool, tmp_path):
    offload_tuner.set_executor(pool)
    offload_tuner.load_profile(lane_profile(tmp_path))
    assert decide(support.lane_probe, [0] * 8).backend == "inline"
    assert decide(support.lane_probe, [0] * 1000).backend == "process"


def test_a_thread_pool_alone_serves_the_gil_releasing_kernels_of_a_process_profile(tmp_path, threads):
    offload_tuner.set_executor(threads)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        offload_tuner.load_profile(lane_profile(tmp_path))
        assert decide(support.lane_probe, [0] * 8).backend == "thread"
        bound = decide(support.total, [0] * 8)
    assert bound.backend == "inline" and "calibrated for process executor" in bound.reason
    assert any("calibrated for a 'process' executor" in m for m in offload_warnings(record))


def test_thread_lane_calls_are_counted_but_not_timed_as_offloaded(pool, tmp_path):
    """The statistics' offloaded kinds are the process model's (drift and retune compare them with it)."""
    threads = ThreadPoolExecutor(1, thread_name_prefix=THREAD_PREFIX)
    previous = offload_tuner.sample_every(1)
    try:
        offload_tuner.set_executors({"process": pool, "thread": threads})
        offload_tuner.load_profile(lane_profile(tmp_path))
        offload_tuner.reset_stats()
        for _ in range(5):
            assert in_a_pool_thread(run_kernel_sync(support.lane_probe, [0] * 8))
        (process,) = offload_tuner.stats()["processes"].values()
        entry = process["kernels"][GIL_FREE]
        assert sum(entry["calls"]["offload"].values()) == 5
        assert not entry["samples"]["loop"] and not entry["samples"]["latency"]
    finally:
        offload_tuner.sample_every(previous)
        threads.shutdown()


def test_a_broken_process_pool_does_not_stop_the_thread_lane(tmp_path):
    pool = offload_tuner.recommended_pool(1)
    threads = ThreadPoolExecutor(1, thread_name_prefix=THREAD_PREFIX)
    try:
        offload_tuner.set_executors({"process": pool, "thread": threads})
        offload_tuner.load_profile(lane_profile(tmp_path))
        assert run_kernel_sync(support.sleepy, 0.0, offload_if=True) != os.getpid()  # the worker is up

        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert asyncio.run(support.sleepy_call_while_its_workers_are_killed(pool)) == os.getpid()  # re-run inline
        assert any("the process executor failed" in m and "new pool" in m for m in offload_warnings(record))
        now = get_executors()
        assert now["thread"] is threads and now["process"] is not pool, "the process pool alone was rebuilt"
        assert decide(support.lane_probe, [0] * 8).backend == "thread"
        assert in_a_pool_thread(run_kernel_sync(support.lane_probe, [0] * 8))
    finally:
        threads.shutdown()
        for executor in get_executors().values():
            executor.shutdown()


def test_a_shut_down_thread_pool_is_dropped_alone_and_its_calls_run_inline(pool, tmp_path):
    threads = ThreadPoolExecutor(1, thread_name_prefix=THREAD_PREFIX)
    threads.shutdown()
    offload_tuner.set_executors({"process": pool, "thread": threads})
    offload_tuner.load_profile(lane_profile(tmp_path))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        inline = (os.getpid(), threading.current_thread().name)
        assert run_kernel_sync(support.lane_probe, [0] * 8) == inline
        assert asyncio.run(run_kernel(support.lane_probe, [0] * 8)) == inline
    found = [m for m in offload_warnings(record) if "executor failed" in m]
    assert len(found) == 1 and "the thread executor failed" in found[0] and "'process'" in found[0]
    assert get_executors() == {"process": pool}
    assert decide(support.lane_probe, [0] * 8).backend == "inline", "no thread lane: its process threshold (1000)"
    assert run_kernel_sync(support.total, list(range(8))) == 28, "the process lane still works"


def test_recommended_pools_are_the_pair_set_executors_takes():
    pools = offload_tuner.recommended_pools(1, threads=1)
    try:
        assert sorted(pools) == ["process", "thread"]
        offload_tuner.set_executors(pools)
        assert get_executors() == pools
        with pytest.raises(ValueError, match="threads"):
            offload_tuner.recommended_pools(1, threads=0)
    finally:
        for executor in pools.values():
            executor.shutdown()


def test_a_dropped_process_pool_never_sends_its_calls_to_the_thread_pool(tmp_path):
    """The user's own process pool breaks and is dropped: caller-decided calls and GIL-holding kernels run
    inline, and the kernels of the thread lane keep their lane."""
    from concurrent.futures import ProcessPoolExecutor

    users = ProcessPoolExecutor(1)  # not from recommended_pool: dropped, not rebuilt
    threads = ThreadPoolExecutor(1, thread_name_prefix=THREAD_PREFIX)
    try:
        offload_tuner.set_executors({"process": users, "thread": threads})
        offload_tuner.load_profile(lane_profile(tmp_path))
        users.shutdown()
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert run_kernel_sync(support.total, list(range(8))) == 28  # offloaded, the pool refused: inline
        assert any("the process executor failed" in m and "set_executors()" in m for m in offload_warnings(record))
        assert get_executors() == {"thread": threads} and get_executor() is None
        inline = (os.getpid(), threading.current_thread().name)
        assert run_kernel_sync(support.lane_probe, [0] * 8, offload_if=True) == inline, "never to the thread pool"
        assert decide(support.lane_probe, [0] * 8, offload_if=True).backend == "inline"
        bound = decide(support.total, [0] * 8)
        assert bound.backend == "inline" and "dropped" in bound.reason
        assert in_a_pool_thread(run_kernel_sync(support.lane_probe, [0] * 8)), "the thread lane stays"
    finally:
        threads.shutdown()


def test_a_kernel_in_the_thread_lane_that_runs_another_runs_it_inline_instead_of_waiting_on_its_own_pool(
    tmp_path, threads
):
    # The fixture's pool has one thread: waiting on it from it would hang.
    offload_tuner.set_executors({"thread": threads})
    offload_tuner.load_profile(lane_profile(tmp_path, kind="thread"))
    pid, name = run_kernel_sync(support.calls_lane_probe, [0] * 8)
    assert pid == os.getpid() and name.startswith(THREAD_PREFIX), "both ran on the pool's one thread"
    assert in_a_pool_thread(asyncio.run(asyncio.wait_for(run_kernel(support.calls_lane_probe, [0] * 8), 10)))


def test_passing_offload_if_over_a_thread_lane_entry_is_reported_like_any_override(pool, tmp_path, threads):
    offload_tuner.set_executors({"process": pool, "thread": threads})
    offload_tuner.load_profile(lane_profile(tmp_path))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run_kernel_sync(support.lane_probe, [0] * 8, offload_if=False)
    assert any(issubclass(w.category, offload_tuner.ProfileOverriddenWarning) for w in record)
    assert "overriding the profile" in decide(support.lane_probe, [0] * 8, offload_if=False).reason


def test_a_schema_2_profile_s_thread_sections_are_not_trusted(tmp_path, threads):
    offload_tuner.set_executors({"thread": threads})
    offload_tuner.load_profile(lane_profile(tmp_path, kind="thread", schema=2), strict=True)
    assert decide(support.lane_probe, [0] * 8).backend == "inline", "its threshold, 1000, on a thread profile"


def test_inside_the_thread_lane_decide_says_inline_for_threads_and_processes_still_get_their_calls(
    pool, tmp_path, threads
):
    offload_tuner.set_executors({"process": pool, "thread": threads})
    offload_tuner.load_profile(lane_profile(tmp_path))
    assert decide(support.nested_decisions, [0] * 8).backend == "thread"
    lane, caller, pid = run_kernel_sync(support.nested_decisions, [0] * 8)
    assert lane == "inline", "a thread-lane call nested in the thread pool runs inline, and decide() says so"
    assert caller == "process" and pid != os.getpid(), "waiting on the process pool cannot deadlock: it goes"
