"""How the concurrent phase (:mod:`_loadphase`) spends its time on one kernel: rounds of candidates, run length,
budget, the steady pass's warm-up, the per-round normalisation of makespans, and how many calls a run holds (the
isolated model's guess and when the sizing run can be skipped). Pure: no measuring here."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from offload_tuner.runtime._policy import (
    KernelCosts,
    PolicyKnobs,
    TransportModel,
    _log_points,
    predict,
    workload_makespan,
)

MIN_CALLS_PER_CALLER = 2
"""Fewer calls than this say nothing about a mix of sizes, however long they take."""
STEADY_CALLS_PER_CALLER = 6
"""A steady pass needs several calls per caller: its two ends each cut through the calls in flight."""
WARMUP_TAKES_PER_CALLER = STEADY_CALLS_PER_CALLER
"""Calls each caller takes before the steady pass's clock starts, at most one whole pass: the pass then starts
with the backlog (the pool's queue, the results waiting to be unpickled) a stream in progress has, which is
what it ends with. After a few calls per caller the backlog is still filling, and the pass misses the work
queued at its end: it reads the policies that offload part of the stream cheaper than a long stream runs them,
the best of them most. A discrete-event model of the reference workload (``benchmarks/workload_model.py``: an
O(n^2) kernel over 8-512, 4 callers, 2 workers on 2 cores) puts every other threshold 12-17% further from the
best than a long stream does with 2 warm-up calls per caller; with 6 per caller every threshold reads within 3%
of a long stream on rings of 24, 45 and 64 calls, and within 1% of a whole pass's warm-up on the longer rings.
Measured here with 2 per caller: never looked about 1.3x slower relative to the best than in long runs.
(``_workload`` replays at most one pass: more would need a longer ring.)"""


MAX_CALLS = 600
EXPECTED_LOAD_INFLATION = 1.5
"""Sizing guess only: offloaded work under load costs up to ~1.5x the isolated model (measured here)."""
SIZING_MARGIN = 2.0
"""The sizing run is skipped when the isolated model puts the shortest allowed run at this many times the target
(:func:`floor_binds`)."""


@dataclass(frozen=True, slots=True)
class Rounds:
    """How the concurrent phase spends its time on one kernel.

    Every candidate runs once per round, in a shuffled order. After the first, a candidate ``FIRST_ROUND_RACE``
    times slower than the fastest is dropped; from the second round on, one whose median is worse than the
    best by more than four standard errors (it cannot tie, and the slow extremes are the longest runs); the rest go on until ``max_rounds``, or until ``budget_s`` is spent
    once ``min_rounds`` are done, or until one candidate is left. ``budget_s`` is for the kernel's whole
    phase (sizing the runs, the first candidates and those the corrected model adds), not per batch: with a
    budget per batch the standard calibration of the bundled kernels overran its 60 s goal.
    """

    min_rounds: int
    max_rounds: int
    run_s: float
    """Target seconds for one run (warm-up included), from the sizing run's measured makespan."""
    budget_s: float
    neighbours: bool = True
    """Also measure the grid points an octave either side of the model's choice."""
    calls_per_caller: int = MIN_CALLS_PER_CALLER
    """At least this many calls per caller in a run, however slow the kernel: with a few calls per caller a
    run is all ramp-up and drain, and a heavy-tailed mix (O(n^2) over sizes log-uniform) is one large call."""

    @property
    def steady(self) -> bool:
        """Time a steady pass (:mod:`_workload`) only when a run has calls enough for one to mean anything."""
        return self.calls_per_caller >= STEADY_CALLS_PER_CALLER

    def warmup(self, ring: int, callers: int) -> int:
        """Warm-up calls before the steady pass of a ring of ``ring`` calls (none for a plain run)."""
        return min(ring, WARMUP_TAKES_PER_CALLER * callers) if self.steady else 0

    def ring(self, run_calls: float, callers: int) -> float:
        """The ring whose run (its warm-up included) takes ``run_calls`` calls: the inverse of
        ``ring + warmup(ring)``."""
        if not self.steady:
            return run_calls
        return max(run_calls / 2, run_calls - WARMUP_TAKES_PER_CALLER * callers)


def round_scales(rounds: Sequence[Sequence[float]]) -> list[float]:
    """Per round, the factor that brings its geometric mean makespan to the mean over rounds (1 for one
    candidate or one round: nothing to compare against)."""
    if len(rounds) < 2 or len(rounds[0]) < 2:
        return [1.0] * len(rounds)
    means = [math.exp(statistics.fmean(math.log(v) for v in values)) for values in rounds]
    overall = math.exp(statistics.fmean(math.log(m) for m in means))
    return [overall / m for m in means]


def call_count(
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    workload_range: tuple[float, float],
    run_s: float,
    calls_per_caller: int = MIN_CALLS_PER_CALLER,
) -> int:
    """Calls in one run, so that the slower of "always" and "never" lasts about ``run_s``."""
    points = _log_points(max(1.0, workload_range[0]), max(1.0, workload_range[1]), 48)
    predictions = [predict(costs, transport, knobs, n) for n in points]
    never = workload_makespan(predictions, knobs, len(points))
    always = workload_makespan(predictions, knobs, 0) * EXPECTED_LOAD_INFLATION
    per_call = max(never, always) / len(points)
    fewest = calls_per_caller * knobs.concurrency
    return int(min(MAX_CALLS, max(fewest, round(run_s / max(per_call, 1e-7)))))


def floor_binds(slowest_s: float, ring: int, rounds: Rounds, callers: int) -> bool:
    """Whether the fewest calls a run may have are already too many for ``run_s`` by the isolated model: its
    slowest candidate over the ring, warm-up included, takes ``SIZING_MARGIN`` times ``run_s`` or more. Then no
    measurement could shrink the ring, and the sizing run is skipped (for an O(n^2) kernel it is a whole extra
    run). Under load the model errs the other way (offloaded work costs more than predicted), so
    the margin is wide. Only for steady runs: their own warm-up pass absorbs what the sizing run also paid for
    (the first calls after another kernel's phase); a plain run has none."""
    per_call = slowest_s / ring
    return per_call * (ring + rounds.warmup(ring, callers)) >= SIZING_MARGIN * rounds.run_s
