"""What a failed offloaded call means, and what happens next: one classifier and one fallback for both calling
conventions (like httpcore's single ``map_exceptions``), so the sync and async paths cannot drift apart.

The drivers (:mod:`_execution`) differ only in how they submit, wait and cancel; every ``except`` of theirs is
``except BaseException as exc: where = fallback(...)``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import Enum
from time import perf_counter
from typing import Any, Final, Literal

from offload_tuner.runtime import _log, _observe, _packaging, _state
from offload_tuner.runtime._backends import (
    DASK,
    PROCESS,
    THREAD,
    PayloadNotLoadable,
    ResultNotPicklable,
    dumps_call,
    invoke_pickled,
)
from offload_tuner.runtime._lanes import Lane, run_in_thread_lane
from offload_tuner.runtime._registry import kernel_name
from offload_tuner.runtime._stats import Timed
from offload_tuner.runtime._warn import first_time, warn_once


class Outcome(Enum):
    """What an exception out of an offloaded call means."""

    PROPAGATE = "propagate"
    """The kernel's own exception, the caller's timeout, or the caller stopped (cancelled, interrupted)."""
    RESULT_UNPICKLABLE = "result unpicklable"
    PAYLOAD_UNLOADABLE = "payload unloadable"
    """A worker could not load the call (its environment lacks the kernel's module or an argument's class)."""
    LANE_LOST = "lane lost"
    """The executor lost the call (broken, shut down, cancelled it); for a cluster, any failure of the cluster's."""


class _Raise(Enum):
    RAISE = "raise"


RAISE: Final = _Raise.RAISE
"""What :func:`fallback` returns when the exception is the caller's: the driver re-raises it as it is."""


def classify(exc: BaseException, lane: Lane, caller_stopped: bool) -> Outcome:
    """The one place that decides what a failure means. ``caller_stopped``: the driver saw its caller cancelled or
    interrupted (asyncio's ``CancelledError`` of the caller's own task, ``KeyboardInterrupt``)."""
    if isinstance(exc, ResultNotPicklable):
        return Outcome.RESULT_UNPICKLABLE
    if isinstance(exc, PayloadNotLoadable):
        return Outcome.PAYLOAD_UNLOADABLE
    if caller_stopped or isinstance(exc, TimeoutError):
        return Outcome.PROPAGATE  # a cluster's silence is ClusterUnavailable, never TimeoutError
    if lane.backend is DASK:
        # Imported on use: _dask imports asyncio, which a service without a cluster never needs.
        from offload_tuner.runtime._dask import is_cluster_failure

        return Outcome.LANE_LOST if is_cluster_failure(exc) else Outcome.PROPAGATE
    # Imported on use: concurrent.futures imports logging, which the inline path must not pay for at import.
    from concurrent.futures import BrokenExecutor

    if isinstance(exc, BrokenExecutor) or _is_cancellation(exc):
        return Outcome.LANE_LOST  # a cancellation that is not our caller's: the executor dropped the call
    if isinstance(exc, RuntimeError) and ("shutdown" in str(exc) or "interpreter" in str(exc)):
        return Outcome.LANE_LOST
    return Outcome.PROPAGATE


def _is_cancellation(exc: BaseException) -> bool:
    """A ``CancelledError`` of concurrent.futures or of asyncio (only if asyncio is imported: else it is not one)."""
    from concurrent.futures import CancelledError

    asyncio = sys.modules.get("asyncio")
    return isinstance(exc, CancelledError) or (asyncio is not None and isinstance(exc, asyncio.CancelledError))


def fallback(
    exc: BaseException, lane: Lane, fn: Callable[..., Any], future: Any, caller_stopped: bool
) -> Lane | Literal[_Raise.RAISE] | None:
    """Act on a failed offloaded call: :data:`RAISE` (after cancelling ``future``, so a worker does not start a
    call nobody waits for), None to re-run the (pure) kernel inline, or the local lane a lost cluster's call is
    computed on. Warns once per cause; a lost lane is dropped (or rebuilt). Each fault leaves one record on the
    ``offload_tuner`` logger (:mod:`_log`); the kernel's own exception and a stopped caller leave none: the caller
    gets them as they are, and they are the caller's to log."""
    outcome = classify(exc, lane, caller_stopped)
    if outcome is Outcome.PROPAGATE:
        if _runtime_timeout(exc, future):
            _timed_out(exc, lane, fn)
        if future is not None:
            future.cancel()
        return RAISE
    name = getattr(fn, "__qualname__", repr(fn))
    if outcome is Outcome.RESULT_UNPICKLABLE:
        first = warn_once(
            f"unpicklable-result:{name}",
            f"offload-tuner: the result of {name} cannot be pickled ({exc}); re-running such calls inline",
        )
        _fell_back("unpicklable_result", first, fn, lane, f"the result cannot be pickled ({exc}): re-run inline")
        return None
    if outcome is Outcome.PAYLOAD_UNLOADABLE:
        first = warn_once(
            f"unloadable-payload:{name}",
            f"offload-tuner: a worker could not load a call of {name} ({exc}); the call ran inline (said once: the "
            "workers' environment should import what the kernel and its arguments need)",
        )
        _fell_back("payload_unloadable", first, fn, lane, f"a worker could not load the call ({exc}): ran inline")
        return None
    if not _state.drop_lane(lane, exc, kernel_name(fn)):  # the other installed executors are left alone
        # Dropped (or rebuilt) by another call of the same fault, which logged it: this call's record is a detail.
        why = f"its {lane.name} executor failed ({_log.describe(exc)}) and was dropped by another call: re-run locally"
        _fell_back("fallback_inline", False, fn, lane, why)
    if lane.backend is not DASK:
        return None
    local = _state.current().lanes.get(_state.PRIMARY_ORDER[0])  # the call was worth offloading: keep it off-loop
    return local if local is not None and local.backend is not DASK else None


def payload_or_none(fn: Callable[..., Any], args: tuple[Any, ...], lane: Lane) -> bytes | None:
    """The pickled call, or None (said once per kernel) when its arguments cannot be pickled: it runs inline."""
    payload: bytes | None = _packed_or_none(dumps_call, fn, args, lane)
    return payload


def _packed_or_none(
    pack: Callable[[Callable[..., Any], tuple[Any, ...]], Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    lane: Lane,
) -> Any:
    try:
        return pack(fn, args)
    except Exception as exc:  # TypeError, AttributeError, PicklingError, RecursionError...
        name = getattr(fn, "__qualname__", repr(fn))
        first = warn_once(
            f"unpicklable-args:{name}",
            f"offload-tuner: arguments of {name} cannot be pickled ({type(exc).__name__}: {exc}); "
            "running such calls inline",
        )
        _fell_back(
            "unpicklable_arguments", first, fn, lane, f"arguments cannot be pickled ({_log.describe(exc)}): ran inline"
        )
        return None


def job_for(
    lane: Lane, fn: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[Callable[..., Any], tuple[Any, ...]] | None:
    """What to submit to a local lane: the pickled call for a process pool (pickled here, so a bad argument or
    result is told apart from the kernel's own errors), the marked call for a thread pool. None: run inline."""
    if lane.backend is PROCESS:  # with large buffers out of band, through shared memory (_packaging)
        job: tuple[Callable[..., Any], tuple[Any, ...]] | None = _packed_or_none(_packaging.pack, fn, args, lane)
        return job
    if lane.backend.pickles_on_caller:
        payload = payload_or_none(fn, args, lane)
        return None if payload is None else (invoke_pickled, (payload,))
    if lane.backend is THREAD:
        return run_in_thread_lane, (fn, *args)
    return fn, args


def finish(lane: Lane, result: Any, call: Timed | None, started: float, submitted: float) -> Any:
    """The value of a completed local call (unpickled if pickled); a timed call's caller-thread time and round trip
    recorded."""
    returned = perf_counter()
    value = _packaging.unpack(result) if lane.backend.pickles_on_caller else result
    if call is not None:
        done = perf_counter()
        due = call.stats.record("loop", call.n, (submitted - started) + (done - returned))
        if call.stats.record("latency", call.n, done - started) or due:
            _observe.samples_due(call.stats)
    return value


def inline_timed(call: Timed, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """An inline call picked for timing: run it and record its compute."""
    started = perf_counter()
    result = fn(*args)
    if call.stats.record("inline", call.n, perf_counter() - started):
        _observe.samples_due(call.stats)
    return result


def time_left(timeout: float | None, started: float) -> float | None:
    """What is left of the caller's ``timeout`` for a local re-run: the caller's bound holds across both tries."""
    return None if timeout is None else max(0.0, timeout - (perf_counter() - started))


# ------------------------------------------------------------------------------------------------ records


def _fell_back(event: str, first: bool, fn: Callable[..., Any], lane: Lane, reason: str) -> None:
    """A call's fallback after a per-call fault (it happens again on every such call): WARNING the first time
    per kernel and cause, when its warning is said, DEBUG after that, so a hot kernel cannot flood the log."""
    kernel = kernel_name(fn)
    level = _log.WARNING if first else _log.DEBUG
    _log.event(event, level, f"{kernel}: {reason}", kernel=kernel, backend=lane.backend.name, reason=reason)


def _runtime_timeout(exc: BaseException, future: Any) -> bool:
    """Whether a ``TimeoutError`` is the caller's ``timeout`` expiring (the call's future did not complete, or
    was cancelled by the wait), not the kernel's own ``TimeoutError`` carried back by a completed future."""
    if not isinstance(exc, TimeoutError) or future is None:
        return False
    try:
        return bool(future.cancelled() or not future.done() or future.exception() is not exc)
    except BaseException:  # a future that cannot say: the runtime's bound is what raised it
        return True


def _timed_out(exc: BaseException, lane: Lane, fn: Callable[..., Any]) -> None:
    """The caller's bound expired: the caller gets ``TimeoutError``; the worker is busy until the call ends."""
    kernel = kernel_name(fn)
    reason = f"the caller's timeout expired ({_log.describe(exc)}); the worker finishes the call, its result is dropped"
    level = _log.WARNING if first_time(f"timeout:{kernel}") else _log.DEBUG
    _log.event("call_timed_out", level, f"{kernel}: {reason}", kernel=kernel, backend=lane.backend.name,
               reason=reason)  # fmt: skip
