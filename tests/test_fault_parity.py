"""The fault table, once per calling convention: ``run_kernel`` and ``run_kernel_sync`` share one classifier and one
fallback (``runtime/_outcomes.py``), so each injected fault must end the same way on both: the same result or
exception, the same warning, the same executor left installed (or dropped, or rebuilt)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

import offload_tuner
from offload_tuner import OffloadTunerWarning, get_executors, register_backend, run_kernel, run_kernel_sync
from offload_tuner.runtime._backends import DASK
from tests import support

MODES = ("sync", "async")


def call(mode: str, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
    """One caller-decided offloaded call, in the calling convention ``mode``."""
    if mode == "sync":
        return run_kernel_sync(fn, *args, offload_if=True, timeout=timeout)
    return asyncio.run(run_kernel(fn, *args, offload_if=True, timeout=timeout))


@dataclass
class Ending:
    """How one call under one fault ended: its value (or the exception's type and text), what was said, and which
    executors are installed afterwards (by name, and whether each is the one installed before)."""

    value: Any
    raised: str | None
    warnings: list[str]
    installed: dict[str, bool]


def ending(mode: str, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Ending:
    before = get_executors()
    value, raised = None, None
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            value = call(mode, fn, *args, timeout=timeout)
        except Exception as exc:
            raised = f"{type(exc).__name__}: {exc}"
    said = [str(w.message) for w in record if issubclass(w.category, OffloadTunerWarning)]
    return Ending(value, raised, said, {name: ex is before.get(name) for name, ex in get_executors().items()})


def one_phrase(said: list[str], phrase: str) -> bool:
    return len(said) == 1 and phrase in said[0]


# ------------------------------------------------------------------------------------------------ executors


class ScriptedExecutor(Executor):
    """Hands back futures that end as scripted: how an executor that cancels queued calls behaves, exactly."""

    def __init__(self, outcome: Callable[[Future], None]) -> None:
        self.outcome = outcome

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        self.outcome(future)
        return future


class LostClusterClient:
    status = "closed"  # what a client whose scheduler went away reports


class LostCluster(Executor):
    """A Dask executor whose scheduler is gone (the attributes the runtime reads of ``client.get_executor()``)."""

    _client = LostClusterClient()
    _shutdown = False
    retry_s = 3600.0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        raise AssertionError("a lost cluster must not be submitted to")


register_backend(LostCluster, DASK)


@contextmanager
def installed(executors: dict[str, Executor], *, shared: bool = False) -> Iterator[None]:
    """Install ``executors``; afterwards shut down the pools made here (not the ``shared`` session pool), and any
    replacement the runtime built."""
    offload_tuner.set_executors(executors)
    try:
        yield
    finally:
        made = [] if shared else list(executors.values())
        made += [ex for ex in get_executors().values() if ex not in executors.values()]
        for executor in made:
            if isinstance(executor, ThreadPoolExecutor) or hasattr(executor, "_offload_tuner_shape"):
                executor.shutdown(wait=False, cancel_futures=True)
        offload_tuner.set_executors({})


# ------------------------------------------------------------------------------------------------ the table


@pytest.mark.parametrize("mode", MODES)
def test_a_broken_pool_reruns_inline_and_is_replaced(mode):
    pool = offload_tuner.recommended_pool(1)
    with installed({"process": pool}, shared=True):
        call(mode, support.sleepy, 0.0)  # the worker is up
        os.kill(next(iter(pool._processes)), signal.SIGKILL)  # a worker killed: the pool is broken
        deadline = time.monotonic() + 10
        while not pool._broken and time.monotonic() < deadline:
            time.sleep(0.01)
        end = ending(mode, support.sleepy, 0.0)
        assert end.value == os.getpid() and end.raised is None, "re-run inline: the caller got its result"
        assert one_phrase(end.warnings, "BrokenProcessPool") and "new pool of the same shape" in end.warnings[0]
        assert end.installed == {"process": False}, "replaced by a pool of the same shape"


@pytest.mark.parametrize("mode", MODES)
def test_a_worker_killed_mid_call_loses_no_work(mode):
    pool = offload_tuner.recommended_pool(1)
    with installed({"process": pool}, shared=True):
        call(mode, support.sleepy, 0.0)
        victim = next(iter(pool._processes))
        threading.Timer(0.2, os.kill, (victim, signal.SIGKILL)).start()
        end = ending(mode, support.sleepy, 0.6)
        assert end.value == os.getpid() and end.raised is None
        assert one_phrase(end.warnings, "BrokenProcessPool")
        assert end.installed == {"process": False}


@pytest.mark.parametrize("mode", MODES)
def test_a_shut_down_executor_is_dropped_and_the_call_runs_inline(mode):
    threads = ThreadPoolExecutor(1)
    threads.shutdown()
    with installed({"thread": threads}):
        end = ending(mode, support.total, [1, 2])
        assert end.value == 3 and end.raised is None
        assert one_phrase(end.warnings, "cannot schedule new futures after shutdown")
        assert "until set_executor() or set_executors() installs" in end.warnings[0]
        assert end.installed == {}, "the user's executor is dropped, not rebuilt"


@pytest.mark.parametrize("mode", MODES)
def test_a_call_the_executor_cancels_runs_inline(mode):
    with installed({"executor": ScriptedExecutor(lambda future: future.cancel())}):
        end = ending(mode, support.total, [1, 2, 3])
        assert end.value == 6 and end.raised is None
        assert one_phrase(end.warnings, "CancelledError")
        assert end.installed == {}


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_raises_and_keeps_the_executor(mode):
    threads = ThreadPoolExecutor(1)
    with installed({"thread": threads}):
        started = time.perf_counter()
        end = ending(mode, support.sleepy, 1.0, timeout=0.05)
        assert time.perf_counter() - started < 0.9, "did not wait for the call"
        assert end.raised is not None and end.raised.startswith("TimeoutError") and end.value is None
        assert end.warnings == [] and end.installed == {"thread": True}


@pytest.mark.parametrize("mode", MODES)
def test_an_unpicklable_argument_runs_inline(mode, pool):
    with installed({"process": pool}, shared=True):
        end = ending(mode, support.where, [1])
        assert end.value != os.getpid() and end.warnings == []  # a picklable control: offloaded, nothing said
        end = ending(mode, support.where, [threading.Lock()])
        assert end.value == os.getpid() and end.raised is None
        assert one_phrase(end.warnings, "arguments of where cannot be pickled")
        assert end.installed == {"process": True}


@pytest.mark.parametrize("mode", MODES)
def test_an_unpicklable_result_reruns_inline(mode, pool):
    with installed({"process": pool}, shared=True):
        end = ending(mode, support.returns_lock, [1])
        assert type(end.value).__name__ == "lock" and end.raised is None
        assert one_phrase(end.warnings, "result of returns_lock cannot be pickled")
        assert end.installed == {"process": True}


@pytest.mark.parametrize("mode", MODES)
def test_a_kernel_raising_in_a_worker_raises_the_same_exception(mode, pool):
    with installed({"process": pool}, shared=True):
        end = ending(mode, support.fails, [1, 2])
        assert end.raised == "ValueError: bad input of length 2" and end.value is None
        assert end.warnings == [] and end.installed == {"process": True}
        end = ending(mode, support.times_out, [1])  # its own TimeoutError is the kernel's, not the runtime's bound
        assert end.raised == "TimeoutError: the kernel's own timeout, 1 items" and end.installed == {"process": True}


@pytest.mark.parametrize("mode", MODES)
def test_a_lost_cluster_is_dropped_and_the_call_computed_locally(mode):
    with installed({"dask": LostCluster()}):
        end = ending(mode, support.where, [1, 2])
        assert end.value == os.getpid() and end.raised is None, "no local pool: computed inline"
        assert one_phrase(end.warnings, "the dask executor failed (ClusterUnavailable")
        assert "tried again every 3600 s" in end.warnings[0]
        assert end.installed == {}


class Interrupting(Future):
    """A call still queued when the caller is interrupted while it waits (Ctrl-C in a blocking call)."""

    def result(self, timeout: float | None = None) -> Any:
        raise KeyboardInterrupt


def stop_the_caller(mode: str) -> None:
    """A caller-decided call whose caller stops while it is queued: its task cancelled (async), interrupted while
    it blocks (sync, with :class:`Interrupting` futures); asserts the stop reaches the caller as it is."""
    if mode == "async":

        async def main() -> None:
            task = asyncio.create_task(run_kernel(support.total, [1], offload_if=True))
            await asyncio.sleep(0.05)
            task.cancel()
            await task

        with pytest.raises(asyncio.CancelledError):
            asyncio.run(main())
    else:
        with pytest.raises(KeyboardInterrupt):
            run_kernel_sync(support.total, [1], offload_if=True)


@pytest.mark.parametrize("mode", MODES)
def test_a_stopped_caller_propagates_cancels_the_queued_call_and_keeps_the_executor(mode):
    """The caller stopped (its task cancelled; interrupted while blocking): the stop propagates, the call still
    queued is cancelled so no worker starts it for nobody, and nothing is dropped or said."""
    futures: list[Future] = []

    class Queue(Executor):
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
            futures.append(Future() if mode == "async" else Interrupting())
            return futures[-1]

    executor = Queue()
    with installed({"executor": executor}), warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        stop_the_caller(mode)
        assert len(futures) == 1 and futures[0].cancelled()
        assert get_executors() == {"executor": executor}
    assert not [w for w in record if issubclass(w.category, OffloadTunerWarning)]
