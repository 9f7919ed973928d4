"""How much a kernel holds the GIL, and what a thread pool's hand-off costs (impure: timing).

The event loop is a Python thread. A kernel that releases the GIL (numpy on large arrays, zlib, hashlib,
most C extensions) runs in a thread pool without holding the loop up and without pickling anything; pure
Python holds the GIL, so the loop and the kernel's thread take turns (every 5 ms, ``sys.getswitchinterval()``)
and a busy loop is held up most of the time. Which one a kernel is cannot be read off its code, so calibration
measures it: the calling thread spins in small fixed units of Python work, alone and while the kernel runs
over and over in a thread, interleaved; the share of its pace lost while the kernel runs is the kernel's
*GIL hold* (0: released throughout; ~0.95: pure Python).

The share can depend on the size (numpy's per-call Python overhead dominates small arrays), so it is measured
at a few sizes from the top of the calibrated ladder down; :func:`thread_section` turns the points into what
the profile records. The pure threshold rule is :func:`offload_tuner.runtime._policy.thread_threshold`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from offload_tuner.calibration._measure import clock
from offload_tuner.runtime._policy import GIL_RELEASING_MAX, KernelCosts, thread_threshold

BURST_UNITS = 16
"""Units of the calling thread's work per burst (~0.1 ms), between naps: a loop that is busy, not saturated."""
SPIN_UNIT = 64
"""Iterations of one unit of work."""
NAP_S = 0.0002
"""The calling thread's nap between bursts (it releases the GIL, as an event loop waiting in select does)."""
POINTS = 3
"""Sizes measured per kernel, from the top of the ladder down by ``STEP`` each."""
STEP = 8


def _cycles(until: Callable[[], bool]) -> float:
    """Burst-and-nap cycles per second until ``until()`` says stop: the pace of a busy event loop."""
    cycles = 0
    start = clock()
    while not until():
        for _ in range(BURST_UNITS):
            for _ in range(SPIN_UNIT):
                pass
        time.sleep(NAP_S)
        cycles += 1
    return cycles / max(clock() - start, 1e-9)


def _pace_alone(window_s: float) -> float:
    end = clock() + window_s
    return _cycles(lambda: clock() >= end)


def _pace_beside(pool: ThreadPoolExecutor, fn: Callable[..., Any], args: tuple, window_s: float) -> float:
    """The calling thread's pace while ``fn(*args)`` runs back to back in ``pool`` for ``window_s``."""
    stop = threading.Event()
    started = threading.Event()

    def busy() -> None:
        started.set()
        while not stop.is_set():
            fn(*args)

    future = pool.submit(busy)
    started.wait(5.0)
    end = clock() + window_s
    pace = _cycles(lambda: clock() >= end)
    stop.set()
    future.result()
    return pace


def gil_hold(fn: Callable[..., Any], args: tuple, *, window_s: float = 0.05, repeats: int = 3) -> float:
    """The share of a busy event loop's pace lost while ``fn(*args)`` runs back to back in a thread (median of
    ``repeats`` interleaved pairs, clamped to [0, 1]).

    The calling thread plays the loop: bursts of ~0.1 ms of Python work between naps that release the GIL.
    Beside a kernel that releases the GIL it keeps its pace (~0 lost); beside pure Python, each wake-up waits
    for the kernel's thread to hand the GIL over (up to ``sys.getswitchinterval()``, 5 ms), and most of its
    pace is lost (~0.9). A loop that never naps would be the wrong model: it keeps the GIL for whole 5 ms
    turns and starves a kernel that releases and retakes it often (a convoy), which a service's loop waiting
    in select does not do."""
    if window_s <= 0 or repeats < 1:
        raise ValueError(f"gil_hold() needs window_s > 0 and repeats >= 1, got {window_s!r}, {repeats!r}")
    with ThreadPoolExecutor(1, thread_name_prefix="offload-tuner-gil") as pool:
        pool.submit(fn, *args).result()  # warm: imports, caches, the thread itself
        shares = []
        for _ in range(repeats):
            alone = _pace_alone(window_s)
            beside = _pace_beside(pool, fn, args, window_s)
            shares.append(min(1.0, max(0.0, 1.0 - beside / alone)))
    return statistics.median(shares)


def thread_fixed_cost(calls: int = 200) -> float:
    """Median seconds of one hand-off to a thread pool and back as ``run_kernel`` makes it, from an event loop
    (``run_in_executor`` of a no-op, awaited): what a call sent to the thread lane pays on top of its compute.
    The loop's wake-up is most of it: ``submit().result()`` from a plain thread costs well under that."""
    import asyncio

    async def probe() -> float:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="offload-tuner-probe") as pool:
            await loop.run_in_executor(pool, int)
            times = []
            for _ in range(max(1, calls)):
                start = clock()
                await loop.run_in_executor(pool, int)
                times.append(clock() - start)
        return statistics.median(times)

    return asyncio.run(probe())


def point_sizes(ladder: Sequence[int]) -> list[int]:
    """The ladder sizes to measure: its top, then ``STEP``-fold down, ``POINTS`` at most (each one measured)."""
    if not ladder:
        return []
    sizes = sorted(set(ladder))
    chosen = [sizes[-1]]
    for n in reversed(sizes):
        if len(chosen) == POINTS:
            break
        if n * STEP <= chosen[-1]:
            chosen.append(n)
    return chosen


def thread_section(
    points: Sequence[tuple[int, float]],
    costs: KernelCosts,
    fixed_s: float,
    size_range: tuple[float, float],
) -> dict[str, Any]:
    """What the profile records for the thread lane (pure): the hold at the largest size measured (the calls
    that get offloaded are the large ones) and the model's threshold. Where a smaller measured size held the
    GIL, the threshold is never below ``floor``: the smallest measured size from which every larger one
    released it (below it, the measurements say the kernel holds the GIL). Where every measured size released
    it, the model's threshold stands, whatever size it is (the concurrent phase checks it)."""
    if not points:
        raise ValueError("thread_section() needs at least one measured (size, share) point")
    ordered = sorted(points)
    hold = ordered[-1][1]
    t = thread_threshold(costs, hold, fixed_s, size_range)
    if t is not None:
        releasing_from = ordered[-1][0]
        for n, share in reversed(ordered):
            if share > GIL_RELEASING_MAX:
                break
            releasing_from = n
        floor = releasing_from if releasing_from != ordered[0][0] else None
        t = max(t, floor) if floor is not None else t
    else:
        floor = None
    return {
        "gil_hold": round(hold, 4),
        "threshold": t,
        "points": [[n, round(s, 4)] for n, s in ordered],
        "fixed_s": fixed_s,
        "floor": floor,
    }
