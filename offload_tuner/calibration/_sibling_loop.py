"""Inside a sibling service process (:mod:`_siblings`): the kernel's ring of calls, run round and round by
``callers`` callers on this process's own event loop and pool until the measuring process says stop.

A sibling is background load shaped like one more service process, not a measurement: it has no warm-up and no
steady pass, and it reports how many calls it ran and its loop's lag samples (a service's lag is its own loop's,
and each process of the shape has one).
"""

from __future__ import annotations

import asyncio
import random
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
    it until ("stop",) arrives. Failures are answered, not raised: the measuring process names them."""
    try:
        if message[0] == "kernel":
            return "ok", _prepare(state, *message[1:])
        if message[0] == "run":
            return "done", _run(state, message[1], message[2], conn)
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


def _run(state: SiblingState, lane: str, threshold: int | None, conn: Connection) -> tuple[int, list[float]]:
    """Go round a fresh order of the ring until the measuring process's "stop" (or its end of the pipe
    closing); then read that "stop". Returns the calls run and the lag samples."""
    if not state.calls:
        raise RuntimeError("no kernel prepared")
    maker = process_call if lane == "process" else thread_call
    executor = state.executor(lane)
    ring = list(state.calls)
    state.rng.shuffle(ring)
    done, lags = asyncio.run(_go_round(ring, state.callers, maker(executor, state.fn, threshold_gate(threshold)), conn))
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
