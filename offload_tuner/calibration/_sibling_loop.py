"""Inside a sibling service process (:mod:`_siblings`): the kernel's ring of calls, run round and round by
``callers`` callers on this process's own event loop and pool until the measuring process says stop. For the
shared stream (``calibrate --shared``, :mod:`_shared`) the ring holds every kernel's calls, each kernel's gated by
its own threshold on its own lane, as in the measuring process.

A sibling is background load shaped like one more service process, not a measurement: it has no warm-up and no
steady pass, and it reports how many calls it ran and its loop's lag samples (a service's lag is its own loop's,
and each process of the shape has one).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from offload_tuner.calibration._workload import Call, Calls, heartbeat, process_call, thread_call, threshold_gate


class SiblingState:
    """What a sibling keeps between messages: its pools and the prepared kernel's ring."""

    def __init__(self, pool: Executor, workers: int, callers: int, index: int) -> None:
        self.pool, self.workers, self.callers, self.index = pool, workers, callers, index
        self.threads: ThreadPoolExecutor | None = None
        self.fn: Any = None
        self.calls: Calls = []
        self.kernels: dict[str, tuple[str, Any]] = {}
        """The shared stream's kernels: key -> (lane, function)."""
        self.rng = random.Random(0)

    def warm(self) -> None:
        from offload_tuner.calibration._transport import warm_pool

        warm_pool(self.pool, self.workers)

    def executor(self, lane: str) -> Executor:
        if lane == "process":
            return self.pool
        if lane != "thread":
            raise ValueError(f"unknown lane {lane!r}")
        if self.threads is None:
            self.threads = ThreadPoolExecutor(self.workers, thread_name_prefix="offload-tuner-sibling")
        return self.threads

    def shutdown(self) -> None:
        """Shut both pools down. Only reached after every run answered (no call in flight) or with the parent
        gone; a hung worker is the measuring process's to kill (this process's whole group)."""
        if self.threads is not None:
            self.threads.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)


def handle(state: SiblingState, message: tuple, conn: Connection) -> tuple[str, Any]:
    """Answer one message: ("kernel", key, lo, hi, count, seed) builds the ring; ("run", lane, threshold) runs
    it until ("stop",) arrives; ("shared", members, seed) builds the shared stream's ring and ("run_shared",
    thresholds) runs it. Failures are answered, not raised: the measuring process names them."""
    try:
        if message[0] == "kernel":
            return "ok", _prepare(state, *message[1:])
        if message[0] == "run":
            return "done", _run(state, message[1], message[2], conn)
        if message[0] == "shared":
            return "ok", _prepare_shared(state, message[1], message[2])
        if message[0] == "run_shared":
            return "done", _run_shared(state, message[1], conn)
        return "error", f"unknown message {message[0]!r}"
    except Exception as exc:  # the kernel, its sample or its import failed here
        return "error", f"{type(exc).__name__}: {exc}"


def _prepare(state: SiblingState, key: str, lo: float, hi: float, count: int, seed: int) -> int:
    from offload_tuner.calibration._targets import import_kernel
    from offload_tuner.calibration._workload import kernel_calls

    spec = import_kernel(key)
    state.fn, state.calls = spec.fn, kernel_calls(spec, (lo, hi), count, seed + state.index)
    state.rng = random.Random(seed + state.index)
    return len(state.calls)


def _prepare_shared(state: SiblingState, members: Sequence[tuple[str, str, float, float, int]], seed: int) -> int:
    """The shared stream's ring: each member ``(key, lane, lo, hi, count)``'s calls (its mix at the quantiles, as
    the measuring process built them), ``((key, args), size)``, in this sibling's own order."""
    from offload_tuner.calibration._targets import import_kernel
    from offload_tuner.calibration._workload import kernel_calls

    ring: Calls = []
    kernels: dict[str, tuple[str, Any]] = {}
    for key, lane, lo, hi, count in members:
        spec = import_kernel(key)
        kernels[key] = (lane, spec.fn)
        ring += [((key, args), n) for args, n in kernel_calls(spec, (lo, hi), count, seed)]
    state.fn, state.calls, state.kernels = None, ring, kernels
    state.rng = random.Random(seed + state.index)
    return len(ring)


def _run_shared(state: SiblingState, thresholds: Mapping[str, int | None], conn: Connection) -> tuple[int, list[float]]:
    """Go round the shared stream, each kernel's calls gated by its threshold in ``thresholds`` on its lane."""
    if not state.kernels:
        raise RuntimeError("no shared stream prepared")
    makers = {
        key: (process_call if lane == "process" else thread_call)(
            state.executor(lane), fn, threshold_gate(thresholds[key])
        )
        for key, (lane, fn) in state.kernels.items()
    }

    async def call(args: tuple, n: int) -> Any:
        key, real = args
        return await makers[key](real, n)

    return _go(state, call, conn)


def _run(state: SiblingState, lane: str, threshold: int | None, conn: Connection) -> tuple[int, list[float]]:
    """Go round a fresh order of the ring until the measuring process's "stop" (or its end of the pipe
    closing); then read that "stop". Returns the calls run and the lag samples."""
    if not state.calls:
        raise RuntimeError("no kernel prepared")
    maker = process_call if lane == "process" else thread_call
    return _go(state, maker(state.executor(lane), state.fn, threshold_gate(threshold)), conn)


def _go(state: SiblingState, call: Call, conn: Connection) -> tuple[int, list[float]]:
    """Go round a fresh order of the ring with ``call`` until "stop"; read it. The calls run and the lag samples."""
    ring = list(state.calls)
    state.rng.shuffle(ring)
    done, lags = asyncio.run(_go_round(ring, state.callers, call, conn))
    message = conn.recv()
    if message[0] != "stop":
        raise RuntimeError(f"expected stop, got {message[0]!r}")
    return done, lags


async def _go_round(ring: Calls, callers: int, call: Call, conn: Connection) -> tuple[int, list[float]]:
    loop = asyncio.get_running_loop()
    stop, beat_done = asyncio.Event(), asyncio.Event()
    fd = conn.fileno()

    def readable() -> None:
        loop.remove_reader(fd)  # level-triggered: the message stays unread until the run ends
        stop.set()

    loop.add_reader(fd, readable)
    lags: list[float] = []
    beat = asyncio.create_task(heartbeat(lags, beat_done))
    taken = done = 0

    async def caller() -> None:
        nonlocal taken, done
        while not stop.is_set():
            args, n = ring[taken % len(ring)]
            taken += 1
            await call(args, n)
            done += 1
            await asyncio.sleep(0)  # the service's own awaits between kernel calls

    try:
        await asyncio.gather(*(caller() for _ in range(callers)))
    finally:
        if not stop.is_set():
            loop.remove_reader(fd)
        beat_done.set()
        await beat
    return done, lags
