"""Faults injected for real: killed workers, shut-down executors, cancellation, timeouts, remote errors."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from offload_tuner import OffloadTunerWarning, get_executor, recommended_pool, run_kernel, run_kernel_sync, set_executor
from tests import support


def run(coro):
    return asyncio.run(coro)


def messages(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, OffloadTunerWarning)]


def test_killed_worker_loses_no_work_and_the_pool_is_rebuilt():
    pool = recommended_pool(1)
    set_executor(pool)
    assert run_kernel_sync(support.sleepy, 0.0, offload_if=True) != os.getpid()  # worker is up

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pid = run(support.sleepy_call_while_its_workers_are_killed(pool))
    assert pid == os.getpid()  # re-run inline: the caller got its result
    assert any("BrokenProcessPool" in m and "new pool" in m for m in messages(record))
    replacement = get_executor()
    assert replacement is not None and replacement is not pool
    try:
        assert run_kernel_sync(support.sleepy, 0.0, offload_if=True) != os.getpid()  # later calls offload again
    finally:
        replacement.shutdown()


def test_killed_worker_in_the_sync_path_also_reruns_inline():
    pool = recommended_pool(1)
    set_executor(pool)
    run_kernel_sync(support.sleepy, 0.0, offload_if=True)
    victim = next(iter(pool._processes))
    import threading

    threading.Timer(0.2, os.kill, (victim, signal.SIGKILL)).start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run_kernel_sync(support.sleepy, 0.6, offload_if=True) == os.getpid()
    get_executor().shutdown()


def test_executor_shut_down_with_calls_in_flight_loses_none_of_them():
    pool = recommended_pool(1)
    set_executor(pool)
    run_kernel_sync(support.sleepy, 0.0, offload_if=True)

    async def main():
        calls = [asyncio.create_task(run_kernel(support.sleepy, 0.3, offload_if=True)) for _ in range(4)]
        await asyncio.sleep(0.1)
        pool.shutdown(wait=False, cancel_futures=True)  # one running, one in the call queue, two cancellable
        return await asyncio.wait_for(asyncio.gather(*calls), timeout=30)

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pids = run(main())
    assert len(pids) == 4 and all(isinstance(p, int) for p in pids)
    # Calls already handed to the worker's queue finish there; the cancelled rest ran inline.
    assert 1 <= pids.count(os.getpid()) <= 3
    assert len(messages(record)) == 1
    replacement = get_executor()
    assert replacement is not None and replacement is not pool
    replacement.shutdown()


def test_a_user_executor_that_was_shut_down_is_left_alone_and_calls_run_inline():
    threads = ThreadPoolExecutor(1)
    threads.shutdown()
    set_executor(threads)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run(run_kernel(support.total, [1, 2], offload_if=True)) == 3
        assert run_kernel_sync(support.total, [1, 2], offload_if=True) == 3
    assert get_executor() is None  # inline until set_executor() installs a working one
    assert any("set_executor" in m for m in messages(record))


def test_cancelling_the_caller_propagates_and_leaves_the_runtime_intact(pool):
    set_executor(pool)

    async def main():
        call = asyncio.create_task(run_kernel(support.sleepy, 0.5, offload_if=True))
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return await run_kernel(support.sleepy, 0.0, offload_if=True)

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run(main()) != os.getpid()
    assert get_executor() is pool and not messages(record)


def test_timeout_bounds_the_wait_for_an_offloaded_call(pool):
    set_executor(pool)
    start = time.perf_counter()
    with pytest.raises(TimeoutError):
        run(run_kernel(support.sleepy, 2.0, offload_if=True, timeout=0.1))
    with pytest.raises(TimeoutError):
        run_kernel_sync(support.sleepy, 2.0, offload_if=True, timeout=0.1)
    assert time.perf_counter() - start < 1.9  # did not wait for the call (generous: noisy machine)
    assert get_executor() is pool


def test_remote_exception_keeps_type_message_and_a_readable_traceback(pool):
    set_executor(pool)
    with pytest.raises(KeyError, match="lost key") as info:
        run(run_kernel(support.crash_here, "lost key", offload_if=True))
    remote = str(info.value.__cause__)
    assert "crash_here" in remote and "Traceback" in remote
