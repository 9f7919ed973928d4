"""The reference workload (impure): ``K`` callers on one event loop, a heartbeat measuring loop lag.

Calibration's concurrent phase and the co-hosted benchmark run the same thing, so the numbers a
threshold is chosen by and the numbers it is judged by come from one definition:

* ``K`` callers take calls from one shared sequence: the quantiles of the log-uniform mix over the
  workload range, in a seeded random order (``K`` requests in flight until the work runs out, as in a service under load; no
  caller idles while another has a backlog), and each yields to the loop between calls (a service's
  worker awaits its own I/O there);
* a heartbeat coroutine sleeps ``HEARTBEAT_S`` at a time and records how late it wakes (loop lag);
* makespan is wall time from the first call to the last result; CPU is this process's (the loop
  thread and the pool's own threads) plus the pool's worker processes' where the OS reports it;
* each call's latency is what its caller sees: from the moment the caller is ready to make it (its previous
  call's result in hand) to the moment it resumes with this one's, so it includes waiting for the loop behind
  other callers' inline calls both before the call starts and before an offloaded result is taken (the
  latency objective, :mod:`_latency`, decides by its p99);
* with ``warmup`` calls, the run also times one *steady pass*: the callers go round the calls as a
  ring, and the clock runs from the moment call ``warmup`` is taken to the moment the next call after one
  full pass would be (each call exactly once in between). A production stream has no first or last call:
  a short run's makespan is dominated by its ramp-up and, worse, by its drain (the last large call
  finishing alone while the other resources idle), which favours the policies that spread work finest.
  The steady pass leaves both out; the calls still in flight when it ends finish untimed.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from offload_tuner.runtime._packaging import call_async
from offload_tuner.runtime._registry import KernelSpec

HEARTBEAT_S = 0.001
"""The heartbeat's sleep: lag is measured with this resolution."""

Calls = list[tuple[tuple, int]]
"""(arguments, size) pairs, arguments prebuilt so building them is never timed."""
Call = Callable[[tuple, int], Awaitable[Any]]
"""How a caller runs one call of the kernel, given its arguments and size."""


@dataclass(frozen=True, slots=True)
class RunStats:
    """One run of the workload under one policy."""

    makespan_s: float
    lag_p50_s: float
    lag_p99_s: float
    lag_max_s: float
    caller_cpu_s: float
    worker_cpu_s: float | None
    """CPU of the pool's worker processes during the run; ``None`` where the OS does not say."""
    steady_s: float | None = None
    """Wall time of one steady pass over the calls (``None`` without a warm-up): see the module docstring."""
    steady_cpu_s: float | None = None
    """CPU (this process and the workers) during the steady pass."""
    call_p99_s: float = 0.0
    """p99 of the calls' latency as their callers see it (see the module docstring); with a warm-up, of the calls
    taken from the steady pass's start on."""

    @property
    def cpu_s(self) -> float:
        return self.caller_cpu_s + (self.worker_cpu_s or 0.0)


def mix_sizes(lo: float, hi: float, count: int) -> list[int]:
    """``count`` sizes that stand for the log-uniform mix over ``[lo, hi]``: its quantiles at the midpoints
    ``(i + 0.5) / count``, smallest first.

    A random draw is the wrong sample for a short run. For an O(n^2) kernel over 8-512, 24 random sizes carry
    0.44-1.64x the mix's expected work (5th-95th percentile over seeds), and a seed fixed per kernel makes
    that one draw's bias repeat on every rerun; the quantiles carry the mix's proportions (that kernel's work
    within 5% from 8 calls, the fewest a run has).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not 0 < lo <= hi:
        raise ValueError(f"a workload range needs 0 < lo <= hi, got {lo}..{hi}")
    a, b = math.log(lo), math.log(hi)
    first, last = math.ceil(lo), max(math.ceil(lo), math.floor(hi))
    return [min(last, max(first, round(math.exp(a + (i + 0.5) / count * (b - a))))) for i in range(count)]


def build_calls(
    sample: Callable[[int], tuple],
    size: Callable[..., int],
    workload_range: tuple[float, float],
    count: int,
    seed: int,
) -> Calls:
    """``count`` (args, size) pairs standing for the mix (:func:`mix_sizes`) in a seeded random order;
    arguments are built once per distinct size."""
    rng = random.Random(seed)
    lo, hi = max(1.0, workload_range[0]), max(1.0, workload_range[1])
    sizes = mix_sizes(lo, hi, count)
    rng.shuffle(sizes)
    cache: dict[int, tuple] = {}
    calls: Calls = []
    for n in sizes:
        if n not in cache:
            cache[n] = sample(n)
        calls.append((cache[n], size(*cache[n])))
    return calls


def kernel_calls(spec: KernelSpec, workload_range: tuple[float, float], count: int, seed: int) -> Calls:
    """:func:`build_calls` for a registered kernel, whose ``sample`` builds the arguments."""
    if spec.sample is None:
        raise ValueError(f"kernel {spec.key} has no sample(n) function: no calls can be built for it")
    return build_calls(spec.sample, spec.size, workload_range, count, seed)


def shuffled_calls(calls: Calls, rng: random.Random) -> Calls:
    """The same calls in a fresh order, for one round (every policy of the round gets this order).

    A short run's makespan depends on where its few largest calls fall: one drawn last finishes alone,
    with the other resources idle, and the policy that sends it inline or offloaded pays that tail in
    every round if the order never changes: with one fixed order, calibration and the benchmark have ranked
    the same two thresholds in opposite orders (the benchmarks page records it).
    A production stream has no last call; a fresh order per round makes the tail noise, which rounds
    average and the noise band sees, instead of a bias that every round repeats."""
    out = list(calls)
    rng.shuffle(out)
    return out


async def heartbeat(lags: list[float], done: asyncio.Event) -> None:
    """Sleep ``HEARTBEAT_S`` at a time until ``done``; record how late each wake-up was."""
    loop = asyncio.get_running_loop()
    while not done.is_set():
        start = loop.time()
        await asyncio.sleep(HEARTBEAT_S)
        lags.append(max(0.0, loop.time() - start - HEARTBEAT_S))


def run_calls(
    calls: Sequence[tuple[tuple, int]],
    callers: int,
    call: Call,
    executor: Executor | None = None,
    *,
    warmup: int = 0,
    lag_sink: list[float] | None = None,
) -> RunStats:
    """Run ``calls`` with ``callers`` concurrent callers on a fresh event loop; ``executor``'s workers are
    charged CPU too. With ``warmup`` > 0 the first ``warmup`` calls are run again after the last (a ring),
    and the steady pass between is timed. ``lag_sink`` receives every lag sample (to pool them with other
    processes' before taking quantiles).

    Objects alive before the run are frozen out of the garbage collector's view for its duration: a full
    collection of the measuring process's own heap (scikit-learn, every prebuilt argument) would land in
    some runs and not others, and says nothing about the service's. The kernel's own garbage is
    collected as usual.
    """
    gc.freeze()
    try:
        workers_before = worker_cpu(executor)
        makespan, caller_cpu, lags, steady, latencies = asyncio.run(_run(calls, callers, call, executor, warmup))
        workers_after = worker_cpu(executor)
    finally:
        gc.unfreeze()
    worker = None if workers_before is None or workers_after is None else max(0.0, workers_after - workers_before)
    lags.sort()
    if lag_sink is not None:
        lag_sink.extend(lags)
    latencies.sort()
    return RunStats(
        makespan,
        _quantile(lags, 0.5),
        _quantile(lags, 0.99),
        lags[-1] if lags else 0.0,
        caller_cpu,
        worker,
        *steady,
        _quantile(latencies, 0.99),
    )


class _Mark:
    """A moment of the run: wall clock, this process's CPU, the workers' CPU."""

    __slots__ = ("cpu", "wall", "workers")

    def __init__(self, executor: Executor | None) -> None:
        self.wall, self.cpu, self.workers = time.perf_counter(), time.process_time(), worker_cpu(executor)

    def until(self, end: _Mark) -> tuple[float, float]:
        workers = 0.0 if self.workers is None or end.workers is None else max(0.0, end.workers - self.workers)
        return end.wall - self.wall, end.cpu - self.cpu + workers


async def _run(
    calls: Sequence[tuple[tuple, int]], callers: int, call: Call, executor: Executor | None, warmup: int
) -> tuple[float, float, list[float], tuple[float | None, float | None], list[float]]:
    lags: list[float] = []
    latencies: list[float] = []
    done = asyncio.Event()
    count = len(calls)
    warmup = min(max(0, warmup), count) if count else 0
    total = count + warmup
    taken = 0
    marks: list[_Mark] = []

    def take() -> tuple[int, tuple[tuple, int]] | None:
        """The next call of the ring and its index, shared by every caller; marks the steady pass's two ends."""
        nonlocal taken
        index, taken = taken, taken + 1
        if warmup and index in (warmup, total):
            marks.append(_Mark(executor))
        return (index, calls[index % count]) if index < total else None

    async def caller() -> None:
        ready = start  # every caller is ready when the run starts; the first to run makes the others wait
        while (item := take()) is not None:
            index, (args, n) = item
            await call(args, n)
            now = time.perf_counter()
            if index >= warmup:  # from the steady pass on: the warm-up's calls meet an empty pool
                latencies.append(now - ready)
            ready = now
            await asyncio.sleep(0)  # the service's own awaits between kernel calls

    beat = asyncio.create_task(heartbeat(lags, done))
    await asyncio.sleep(0)
    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    makespan, cpu = time.perf_counter() - start, time.process_time() - cpu
    done.set()
    await beat
    steady: tuple[float | None, float | None] = marks[0].until(marks[1]) if len(marks) == 2 else (None, None)
    return makespan, cpu, lags, steady, latencies


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Nearest rank: with few samples (a loop blocked most of the run wakes the heartbeat rarely) the p99
    is the largest, never the smallest."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


def threshold_gate(t: int | None) -> Callable[[int], bool]:
    """Which sizes a static threshold offloads: from ``t`` up, none for ``None`` (never)."""
    return (lambda n: False) if t is None else (lambda n: n >= t)


def process_call(executor: Executor, fn: Callable[..., Any], offload: Callable[[int], bool]) -> Call:
    """A call that goes through the process backend's own packaging when ``offload(size)``, else inline.

    The same steps as the runtime's offloaded path (:mod:`_packaging`: large buffers through shared memory, the
    rest pickled on the caller), without its fault handling: calibration wants failures to surface.
    """

    async def call(args: tuple, n: int) -> Any:
        if not offload(n):
            return fn(*args)
        return await call_async(executor, fn, args)

    return call


def thread_call(executor: Executor, fn: Callable[..., Any], offload: Callable[[int], bool]) -> Call:
    """A call that runs in the thread pool ``executor`` when ``offload(size)`` (nothing pickled), else inline."""

    async def call(args: tuple, n: int) -> Any:
        if not offload(n):
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    return call


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") and "SC_CLK_TCK" in os.sysconf_names else 100


def worker_cpu(executor: Executor | None) -> float | None:
    """CPU seconds used so far by a process pool's workers (Linux ``/proc``); ``None`` when unknown."""
    processes = getattr(executor, "_processes", None)
    if not processes:
        return None
    total = 0.0
    for pid in list(processes):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return None
        total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)
    return total
