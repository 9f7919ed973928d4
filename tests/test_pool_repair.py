"""CPython 3.11's process pool hangs when a call its caller cancelled meets a killed worker; the pools the runtime
builds and installs do not (offload_tuner/runtime/_pool_repair.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import InvalidStateError, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest

from offload_tuner.runtime import _pool_repair, _state
from offload_tuner.runtime._backends import recommended_pool


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _cancel_pending_then_kill_the_worker(pool: ProcessPoolExecutor) -> list:
    """One worker busy, one call queued to it, three pending, of which the callers cancel the first two; then the
    worker dies. Returns the calls still waiting, the one submitted after the cancelled ones last."""
    running = pool.submit(_sleep, 60)
    others = [pool.submit(_sleep, 60) for _ in range(4)]
    deadline = time.monotonic() + 30
    while not running.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the manager thread has moved what fits into the call queue and waits
    cancelled = [f for f in others[:-1] if f.cancel()]
    assert cancelled and not others[-1].running(), "no call was still pending: the scenario did not arise"
    (pid,) = list(pool._processes)
    os.kill(pid, signal.SIGKILL)
    return [running, *(f for f in others if f not in cancelled)]


def _spawn_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("forkserver"))


def test_a_repaired_pool_fails_its_waiting_calls_instead_of_hanging():
    pool = _spawn_pool()
    assert _pool_repair.repair(pool) is _pool_repair.NEEDED
    try:
        waiting = _cancel_pending_then_kill_the_worker(pool)
        for future in waiting:
            with pytest.raises(BrokenProcessPool):
                future.result(timeout=20)
        assert pool._broken
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.skipif(not _pool_repair.NEEDED, reason="the interpreter's own pool is fixed (CPython >= 3.12)")
def test_the_unrepaired_pool_of_this_interpreter_has_the_bug(monkeypatch):
    """The control: without the repair the manager thread dies of InvalidStateError and the running call is never
    completed, so the test above exercises the race rather than passing by luck."""
    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    pool = _spawn_pool()
    try:
        waiting = _cancel_pending_then_kill_the_worker(pool)
        pool._executor_manager_thread.join(timeout=20)
        assert not pool._executor_manager_thread.is_alive()
        assert [type(e) for e in died] == [InvalidStateError]
        time.sleep(0.5)
        assert not waiting[-1].done()  # failed by nobody: its caller would wait forever
    finally:
        for process in list(pool._processes.values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)


def test_the_repair_reaches_recommended_and_installed_pools_only_before_they_start():
    built = recommended_pool(1)
    mine = _spawn_pool()
    started = _spawn_pool()
    threads = ThreadPoolExecutor(1)
    try:
        assert _pool_repair.repaired(built) is _pool_repair.NEEDED
        started.submit(_sleep, 0).result(timeout=30)
        _state.set_executors({"process": mine, "thread": threads})
        assert _pool_repair.repaired(mine) is _pool_repair.NEEDED
        assert mine.submit(_sleep, 0).result(timeout=30) == 0
        assert _pool_repair.repaired(mine) is _pool_repair.NEEDED  # the thread itself now
        assert _pool_repair.repair(started) is False  # its manager thread runs already
        assert _pool_repair.repair(threads) is False
    finally:
        _state.set_executor(None)
        for pool in (built, mine, started):
            pool.shutdown(wait=True)
        threads.shutdown()
