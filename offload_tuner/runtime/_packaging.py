"""How a call to a process pool is packaged, in one place: the runtime's call path, calibration and the benchmarks
all go through it, so what calibration measures is exactly what production pays.

With the shared-memory transport on (:mod:`_shm`, the default) a call is a packet whose large buffers travel out of
band; off (``OFFLOAD_TUNER_SHM=off``), the call is pickled in band on the caller as before. Failures surface as they
are: the runtime's fault handling (:mod:`_outcomes`) wraps these steps, calibration wants to see them.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from offload_tuner.runtime import _shm
from offload_tuner.runtime._backends import dumps_call, invoke_pickled

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

Job = tuple[Callable[..., Any], tuple[Any, ...]]


def pack(fn: Callable[..., Any], args: tuple[Any, ...]) -> Job:
    """What to submit to a process pool for ``fn(*args)``; raises what pickling the arguments raises."""
    if _shm.in_use():
        return _shm.invoke_packet, (_shm.encode_call(fn, args, None, _shm.settings.min_bytes),)
    return invoke_pickled, (dumps_call(fn, args),)


def packet_of(job: Job) -> tuple[Any, ...] | None:
    """The packet a job carries (its segments to release), if it is a shared-memory call."""
    return job[1][0] if job[0] is _shm.invoke_packet else None


def unpack(result: Any) -> Any:
    """A process-pool call's value: a result packet or a pickled result."""
    return _shm.decode_result(result) if type(result) is tuple else pickle.loads(result)


def submit(executor: Executor, job: Job) -> Future[Any]:
    """Submit a packaged job; a shared-memory call's argument segment is released when its future completes."""
    future = executor.submit(job[0], *job[1])
    packet = packet_of(job)
    if packet is not None:
        _shm.release_when_done(future, packet)
    return future


def abandon(future: Future[Any] | None, job: Job) -> None:
    """The caller stopped waiting for ``job``: its result segment is removed whenever it is written."""
    packet = packet_of(job)
    if packet is not None:
        _shm.abandon(future, packet)


def call_sync(executor: Executor, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None = None) -> Any:
    """``fn(*args)`` in a process pool with the production packaging, waited for."""
    job = pack(fn, args)
    future = None
    try:
        future = submit(executor, job)
        result = future.result(timeout)
    except BaseException:
        abandon(future, job)
        raise
    return unpack(result)


async def call_async(executor: Executor, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``fn(*args)`` in a process pool with the production packaging, awaited on the running loop."""
    import asyncio

    job = pack(fn, args)
    future = None
    try:
        future = submit(executor, job)
        result = await asyncio.wrap_future(future)
    except BaseException:
        abandon(future, job)
        raise
    return unpack(result)
