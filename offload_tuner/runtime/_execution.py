"""Running an offloaded call: submit, wait, cancel, in the two calling conventions. Everything else (what a
failure means, the fallback, the timing record) is shared, in :mod:`_outcomes`.

asyncio and concurrent.futures are imported inside the async functions: the inline path (and ``import
offload_tuner``) must not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any, NoReturn

from offload_tuner.runtime import _lanes, _packaging, _state
from offload_tuner.runtime._backends import DASK, THREAD, invoke_pickled
from offload_tuner.runtime._lanes import Booking, Lane, guard_message, inside_thread_lane
from offload_tuner.runtime._outcomes import (
    RAISE,
    fallback,
    finish,
    inline_timed,
    job_for,
    payload_or_none,
    time_left,
)
from offload_tuner.runtime._profile import Profile
from offload_tuner.runtime._stats import Timed

Args = tuple[Any, ...]


# ------------------------------------------------------------------------------------------ shared steps


def _scatters(payload: bytes) -> bool:
    """Whether this payload goes to the cluster by scatter (the installed profile measured it cheaper)."""
    profile = _state.current().profile
    cluster = profile.cluster if isinstance(profile, Profile) else None
    return cluster is not None and cluster.scatter_from_bytes is not None and len(payload) >= cluster.scatter_from_bytes


def _check_cluster(lane: Lane) -> None:
    """Raise :class:`ClusterUnavailable` for a lost scheduler: a submit would wait on a dead connection."""
    from offload_tuner.runtime._dask import ClusterUnavailable, cluster_ready  # on use: a cluster is optional

    if not cluster_ready(lane.executor):
        raise ClusterUnavailable(f"Dask cluster {lane.name!r} is not connected")


def _overran(future: Any, timeout: float | None, guard: float) -> NoReturn:
    """A cluster call past its bound: cancel it (the Dask task too), then raise the caller's own ``TimeoutError``
    when its timeout was the tighter bound, else the guard's ``ClusterUnavailable`` (the cluster is lost)."""
    from offload_tuner.runtime._dask import ClusterUnavailable

    future.cancel()
    if timeout is not None and timeout <= guard:
        raise TimeoutError(f"offloaded call did not complete within {timeout} s")
    raise ClusterUnavailable(guard_message(guard))


def _guard_of(booking: Booking) -> float:
    return booking.guard or _lanes.CLUSTER_GUARD_FLOOR_S


# ------------------------------------------------------------------------------------------------ async


async def run_async(target: Lane | Booking | Timed, fn: Callable[..., Any], args: Args, timeout: float | None) -> Any:
    """An offloaded (or timed) call of :func:`run_kernel`, where the hot path sent it."""
    if target.__class__ is Lane:
        return await offload(target, fn, args, timeout)
    if target.__class__ is Booking:
        return await _booked(target, fn, args, timeout)
    call: Timed = target  # type: ignore[assignment]  # the third kind
    if call.lane is None:
        return inline_timed(call, fn, args)
    if call.lane.__class__ is Booking:
        return await _booked(call.lane, fn, args, timeout, call)
    return await offload(call.lane, fn, args, timeout, call if call.lane.modelled else None)


async def _booked(
    booking: Booking, fn: Callable[..., Any], args: Args, timeout: float | None, call: Timed | None = None
) -> Any:
    """A call placement sent to a lane: counted in that lane's backlog until it completes."""
    with booking as lane:
        if lane.backend is DASK:
            return await _on_cluster(lane, fn, args, timeout, _guard_of(booking))
        return await offload(lane, fn, args, timeout, call if lane.modelled else None)


def _caller_cancelled(exc: BaseException) -> bool:
    import asyncio

    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0
    return not isinstance(exc, Exception)  # KeyboardInterrupt, SystemExit


async def offload(
    lane: Lane, fn: Callable[..., Any], args: Args, timeout: float | None, call: Timed | None = None
) -> Any:
    """A call on a local lane (or the cluster, when it is the primary executor), awaited."""
    import asyncio

    if lane.backend is THREAD and inside_thread_lane():
        return fn(*args)  # see _lanes.in_thread_lane
    if lane.backend is DASK:  # the cluster as the only or primary executor: the same protection as when placed
        return await _on_cluster(lane, fn, args, timeout, _lanes.CLUSTER_GUARD_FLOOR_S)
    job = job_for(lane, fn, args)
    if job is None:
        return fn(*args)
    started = perf_counter() if call is not None else 0.0
    future = submitted_future = None
    try:
        submitted_future = _packaging.submit(lane.executor, job)
        future = asyncio.wrap_future(submitted_future)
        submitted = perf_counter() if call is not None else 0.0
        result = await (future if timeout is None else asyncio.wait_for(future, timeout))
    except BaseException as exc:
        _packaging.abandon(submitted_future, job)
        if fallback(exc, lane, fn, future, _caller_cancelled(exc)) is RAISE:
            raise
        return fn(*args)  # a local lane's calls re-run inline
    return finish(lane, result, call, started, submitted)


async def _on_cluster(lane: Lane, fn: Callable[..., Any], args: Args, timeout: float | None, guard: float) -> Any:
    """A call on the Dask cluster. Whatever the cluster does, the caller gets the kernel's result or the kernel's
    own exception: a cluster that cannot take the call, loses it, or does not answer within ``guard`` seconds is
    dropped (one warning, retried later) and the call is computed locally. The caller's ``timeout`` keeps its
    meaning (:class:`TimeoutError`) and bounds both tries together."""
    import asyncio

    from offload_tuner.runtime._dask import ClusterUnavailable, cluster_client, scatter_payload, scatter_pool

    started = perf_counter()
    payload = payload_or_none(fn, args, lane)
    if payload is None:
        return fn(*args)
    loop = asyncio.get_running_loop()
    limit = guard if timeout is None else min(guard, timeout)
    future: Any = None
    try:
        _check_cluster(lane)
        argument: Any = payload
        if _scatters(payload):  # scatter blocks for a round trip: on helper threads of its own, bounded
            client = cluster_client(lane.executor)
            scattering = loop.run_in_executor(scatter_pool(), scatter_payload, client, payload, limit)
            if not (await asyncio.wait({scattering}, timeout=limit))[0]:
                raise ClusterUnavailable(f"scatter did not complete within {limit:.1f} s")
            argument = scattering.result()  # a Dask future: the task below reads the scattered payload
        # Through the executor, so cancelling the asyncio future cancels the Dask task too.
        future = loop.run_in_executor(lane.executor, invoke_pickled, argument)
        left = max(0.0, limit - (perf_counter() - started))
        # Waited on, not wait_for()'s TimeoutError: a kernel that raises TimeoutError itself must reach the caller.
        if not (await asyncio.wait({future}, timeout=left))[0]:
            _overran(future, timeout, guard)
        blob = future.result()
    except BaseException as exc:
        where = fallback(exc, lane, fn, future, _caller_cancelled(exc))
        if where is RAISE:
            raise
    else:
        return finish(lane, blob, None, 0.0, 0.0)
    # Outside the try: the local re-run's own errors are the kernel's, not the cluster's.
    return fn(*args) if where is None else await offload(where, fn, args, time_left(timeout, started))


# ------------------------------------------------------------------------------------------------- sync


def run_sync(target: Lane | Booking | Timed, fn: Callable[..., Any], args: Args, timeout: float | None) -> Any:
    """An offloaded (or timed) call of :func:`run_kernel_sync`, where the hot path sent it (blocks the caller)."""
    if target.__class__ is Lane:
        return offload_sync(target, fn, args, timeout)
    if target.__class__ is Booking:
        return _booked_sync(target, fn, args, timeout)
    call: Timed = target  # type: ignore[assignment]  # the third kind
    if call.lane is None:
        return inline_timed(call, fn, args)
    if call.lane.__class__ is Booking:
        return _booked_sync(call.lane, fn, args, timeout, call)
    return offload_sync(call.lane, fn, args, timeout, call if call.lane.modelled else None)


def _booked_sync(
    booking: Booking, fn: Callable[..., Any], args: Args, timeout: float | None, call: Timed | None = None
) -> Any:
    with booking as lane:
        if lane.backend is DASK:
            return _on_cluster_sync(lane, fn, args, timeout, _guard_of(booking))
        return offload_sync(lane, fn, args, timeout, call if lane.modelled else None)


def _caller_interrupted(exc: BaseException) -> bool:
    return not isinstance(exc, Exception)  # KeyboardInterrupt, SystemExit (a future's CancelledError is not one)


def offload_sync(
    lane: Lane, fn: Callable[..., Any], args: Args, timeout: float | None, call: Timed | None = None
) -> Any:
    """:func:`offload` for the synchronous path."""
    if lane.backend is THREAD and inside_thread_lane():
        return fn(*args)  # a kernel running in a thread pool calls another: waiting on the same pool could hang
    if lane.backend is DASK:
        return _on_cluster_sync(lane, fn, args, timeout, _lanes.CLUSTER_GUARD_FLOOR_S)
    job = job_for(lane, fn, args)
    if job is None:
        return fn(*args)
    started = perf_counter()
    future = None
    try:
        future = _packaging.submit(lane.executor, job)
        submitted = perf_counter()
        result = future.result(timeout)
    except BaseException as exc:
        _packaging.abandon(future, job)
        if fallback(exc, lane, fn, future, _caller_interrupted(exc)) is RAISE:
            raise
        return fn(*args)
    return finish(lane, result, call, started, submitted)


def _on_cluster_sync(lane: Lane, fn: Callable[..., Any], args: Args, timeout: float | None, guard: float) -> Any:
    """:func:`_on_cluster` for the synchronous path."""
    from concurrent.futures import wait

    from offload_tuner.runtime._dask import ClusterUnavailable, cluster_client, scatter_payload, scatter_pool

    started = perf_counter()
    payload = payload_or_none(fn, args, lane)
    if payload is None:
        return fn(*args)
    limit = guard if timeout is None else min(guard, timeout)
    future: Any = None
    try:
        _check_cluster(lane)
        argument: Any = payload
        if _scatters(payload):
            scattering = scatter_pool().submit(scatter_payload, cluster_client(lane.executor), payload, limit)
            if not wait([scattering], timeout=limit).done:
                raise ClusterUnavailable(f"scatter did not complete within {limit:.1f} s")
            argument = scattering.result()
        future = lane.executor.submit(invoke_pickled, argument)
        if not wait([future], timeout=max(0.0, limit - (perf_counter() - started))).done:
            _overran(future, timeout, guard)
        blob = future.result()
    except BaseException as exc:
        where = fallback(exc, lane, fn, future, _caller_interrupted(exc))
        if where is RAISE:
            raise
    else:
        return finish(lane, blob, None, 0.0, 0.0)
    return fn(*args) if where is None else offload_sync(where, fn, args, time_left(timeout, started))
