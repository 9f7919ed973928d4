"""The original default, kept (issue 27 item 4): with an executor installed, a call without ``offload_if`` on a
function never registered with ``@kernel`` offloads, as the old gate's ``offload_if=True`` default did, with one
warning per function suggesting ``@kernel``; with none installed it runs inline; registered kernels keep their
rules (the profile, else ``default_threshold``)."""

from __future__ import annotations

import asyncio
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import offload_tuner
from offload_tuner import OffloadTunerWarning, decide, run_kernel, run_kernel_sync
from offload_tuner.runtime import _state
from offload_tuner.runtime._entries import Origin
from tests import support


def said(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, OffloadTunerWarning)]


def unregistered_said(record) -> list[warnings.WarningMessage]:
    return [w for w in record if "is not registered with @kernel" in str(w.message)]


def thread_ident(xs: list[int]) -> int:
    """Not registered with @kernel: says which thread ran it."""
    return threading.get_ident()


def test_an_unregistered_function_offloads_without_offload_if_on_both_paths(pool):
    offload_tuner.set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run_kernel_sync(support.sleepy, 0.0) != os.getpid(), "offloaded to the pool, as offload_if=True did"
        assert asyncio.run(run_kernel(support.sleepy, 0.0)) != os.getpid()
    unregistered = unregistered_said(record)
    assert len(unregistered) == 1, "one warning per function, not per call nor per calling convention"
    assert "@kernel(size=..., sample=...)" in str(unregistered[0].message)
    assert "tests.support:sleepy" in str(unregistered[0].message)
    assert unregistered[0].filename == __file__, "the warning points at the caller's line, not the runtime's"


def test_decide_says_why_an_unregistered_function_is_offloaded(pool):
    offload_tuner.set_executor(pool)
    d = decide(support.not_registered, [1, 2])
    assert d.offload is True and d.backend == "process" and d.origin is Origin.UNREGISTERED
    assert d.kernel is None and d.threshold is None and "not a registered kernel" in d.reason
    assert "offload_if=True" in d.reason, "the reason names the original default it keeps"


def test_each_unregistered_function_is_warned_about_once(pool):
    offload_tuner.set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):
            decide(support.not_registered, [1])
            run_kernel_sync(support.not_registered, [1, 2, 3])
        run_kernel_sync(support.sleepy, 0.0)
    messages = [str(w.message) for w in unregistered_said(record)]
    assert len(messages) == 2, messages
    assert "not_registered" in messages[0] and "sleepy" in messages[1]


def test_offload_if_still_stands_and_says_nothing(pool):
    offload_tuner.set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run_kernel_sync(support.sleepy, 0.0, offload_if=False) == os.getpid()
        assert run_kernel_sync(support.sleepy, 0.0, offload_if=True) != os.getpid()
    assert said(record) == [], "the caller decided: there is nothing to suggest"
    assert decide(support.sleepy, 0.0, offload_if=False).offload is False


def test_without_an_executor_an_unregistered_function_runs_inline_and_nothing_is_said():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run_kernel_sync(support.sleepy, 0.0) == os.getpid()
        assert asyncio.run(run_kernel(support.sleepy, 0.0)) == os.getpid()
        d = decide(support.sleepy, 0.0)
    assert d.offload is False and d.origin is Origin.NO_EXECUTOR
    assert unregistered_said(record) == [], "nothing to offload to: no advice about offloading"


def test_registered_kernels_keep_their_rules(pool):
    """No profile, no default_threshold: a registered kernel stays inline, as before (only unregistered functions
    take the old gate's default)."""
    offload_tuner.set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run_kernel_sync(support.where, [1, 2, 3]) == os.getpid()
        d = decide(support.where, [1, 2, 3])
    assert d.offload is False and d.origin is Origin.DEFAULT and d.kernel is not None
    assert unregistered_said(record) == []


def test_a_thread_pool_takes_them_too():
    with ThreadPoolExecutor(1) as threads:
        offload_tuner.set_executor(threads)
        assert run_kernel_sync(thread_ident, [1]) != threading.get_ident()
        assert decide(thread_ident, [1]).backend == "thread"


def test_the_resolved_entry_of_a_named_function_is_cached_like_a_kernels(pool):
    offload_tuner.set_executor(pool)
    run_kernel_sync(support.not_registered, [1])
    row = _state.current().table.get(support.not_registered)
    assert row is not None and row[-1] is Origin.UNREGISTERED and row[4] is _state.current().primary
    assert run_kernel_sync(support.not_registered, [1, 2]) == 2, "served from the cached entry"


def test_once_the_primary_executor_was_dropped_they_run_inline():
    """Not moved to another executor: a function holding the GIL must not land on the thread pool."""
    from concurrent.futures import ProcessPoolExecutor

    broken = ProcessPoolExecutor(1)
    broken.shutdown()
    with ThreadPoolExecutor(1) as threads:
        offload_tuner.set_executors({"process": broken, "thread": threads})
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            assert run_kernel_sync(thread_ident, [1]) == threading.get_ident(), "the fault: re-run inline, dropped"
            assert offload_tuner.get_executors() == {"thread": threads}
            d = decide(thread_ident, [1])
            assert d.offload is False and d.origin is Origin.DROPPED and "dropped" in d.reason
            assert run_kernel_sync(thread_ident, [1]) == threading.get_ident()


def test_a_lambda_cannot_reach_a_process_pool_and_runs_inline(pool):
    """Lambdas cannot be pickled: the call runs inline, said once, as with offload_if=True before."""
    offload_tuner.set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run_kernel_sync(lambda xs: os.getpid(), [1]) == os.getpid()
    assert any("cannot be pickled" in m for m in said(record))
