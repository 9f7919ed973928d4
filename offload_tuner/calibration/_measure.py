"""Timing primitives (impure): warm-ups, loop calibration to beat timer resolution, repeats, outliers.

Modelled on pyperf's discipline, scaled down so a whole calibration fits in a minute: one raw timing
runs the call ``loops`` times, with ``loops`` doubled until the raw timing lasts at least
``min_time``; a warm-up value is thrown away; the value reported per size is the median of
``repeats`` raw timings, with the median absolute deviation as its spread; values far above the
median are flagged as outliers (timing spikes are one-sided: preemption never makes code faster).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Policy, in one place (pyperf style).
MAX_LOOPS = 2**20
"""Never run a call more than this many times for one raw timing."""
OUTLIER_MADS = 5.0
"""A value more than this many scaled MADs above the median is flagged as an outlier."""
MAD_SCALE = 1.4826
"""MAD * MAD_SCALE estimates a normal standard deviation."""

clock = time.perf_counter


@dataclass(frozen=True, slots=True)
class Timing:
    """Per-call seconds for one (function, input) pair."""

    values: tuple[float, ...]
    loops: int

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def mad(self) -> float:
        med = self.median
        return statistics.median(abs(v - med) for v in self.values)

    @property
    def outliers(self) -> tuple[float, ...]:
        med, mad = self.median, self.mad
        limit = med + OUTLIER_MADS * MAD_SCALE * max(mad, med * 0.01)
        return tuple(v for v in self.values if v > limit)

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "mad": self.mad,
            "loops": self.loops,
            "values": list(self.values),
            "outliers": len(self.outliers),
        }


def _raw(fn: Callable[[], Any], loops: int) -> float:
    """Seconds for ``loops`` calls of ``fn``; the loop overhead is a few ns per iteration."""
    rng = range(loops)
    start = clock()
    for _ in rng:
        fn()
    return clock() - start


def calibrate_loops(fn: Callable[[], Any], min_time: float) -> tuple[int, float]:
    """Double the loop count until one raw timing lasts ``min_time``; return (loops, per-call seconds)."""
    loops = 1
    while True:
        elapsed = _raw(fn, loops)
        if elapsed >= min_time or loops >= MAX_LOOPS:
            return loops, elapsed / loops
        if elapsed <= 0:
            loops *= 10
        else:  # jump close to the target, at least doubling, never more than 100x at once
            loops = min(MAX_LOOPS, max(loops * 2, min(loops * 100, int(loops * min_time / elapsed * 1.2) + 1)))


def time_call(
    fn: Callable[[], Any],
    *,
    repeats: int,
    min_time: float,
    warmups: int = 1,
    max_total: float | None = None,
) -> Timing:
    """Time a zero-argument callable: warm up, calibrate loops, then ``repeats`` raw timings.

    ``max_total`` caps the seconds spent (at least three values are kept so a median exists).
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    loops, _first = calibrate_loops(fn, min_time)
    for _ in range(max(0, warmups - 1)):
        _raw(fn, loops)
    values: list[float] = []
    deadline = None if max_total is None else clock() + max_total
    for _ in range(repeats):
        values.append(_raw(fn, loops) / loops)
        if deadline is not None and len(values) >= 3 and clock() > deadline:
            break
    return Timing(tuple(values), loops)
