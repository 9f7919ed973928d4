"""The loop budget as a long stream sees it (pure): a candidate's p99 loop lag predicted over a long stream.

Calibration measures each candidate's p99 loop lag over one short ring of calls (a few dozen). A p99 over a
short run is one of its few worst wake-ups, and those depend on which large inline calls happened to be
taken together; a service runs the stream for hours, and its p99 is set by how often the loop is blocked
and for how long, which a short ring samples poorly (recorded: 37 ms measured in calibration for an O(k^3)
kernel's threshold that read 125 ms p99 in the co-hosted benchmark).

This module replays a long stream of the mix (``LONG_CALLS`` calls drawn from the calibration ring's sizes,
which are the mix's quantiles, with a seeded generator shared by every candidate) through a discrete-event
model of the reference workload, with the semantics of asyncio's loop that make queueing matter:

* ``callers`` callers each take the next call when their previous one is done, and yield to the loop
  between calls (``await asyncio.sleep(0)``): a caller whose call ran inline is ready again on the loop's
  next iteration;
* the loop runs, per iteration, every callback ready when the iteration started, in order; a timer that
  fell due meanwhile (the heartbeat's) runs after them. So a heartbeat due during one caller's inline call
  waits for the rest of it *and* for every other ready caller's next step: with four callers keeping calls
  below the threshold inline, the loop is blocked by up to four inline calls in a row;
* an offloaded call blocks the loop for its loop-side time (pickling, unpickling) and occupies one of
  ``workers`` workers (first come, first served) for its worker time; its caller is ready again on the
  first iteration after the result is back;
* an inline call shares the cores with the busy workers: with ``cores`` cores and ``b`` busy workers it takes
  ``max(1, (1 + b) / cores)`` times its fitted time (the fit is an average over the run; the lag is set by the
  calls that ran while the workers were busy);
* the heartbeat sleeps ``HEARTBEAT_S``; each wake-up's lateness is one sample; while the loop idles it
  wakes on time (samples of zero lag, counted, not simulated one by one).

Costs are the corrected model's (:func:`offload_tuner.runtime._policy.predict` with the fitted load factors),
per call of the ring in size order. The p99 of the samples is the prediction. It is checked against long runs
of the co-hosted benchmark by ``benchmarks/long_lag.py`` (numbers in ``benchmarks/results/reruns/``).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from offload_tuner.calibration._grid import offload_from
from offload_tuner.runtime._policy import PolicyKnobs, Prediction

HEARTBEAT_S = 0.001
"""As the reference workload's heartbeat (:data:`offload_tuner.calibration._workload.HEARTBEAT_S`)."""
LONG_CALLS = 3000
"""Calls of the replayed stream: thousands of heartbeats' worth of blocking, so its p99 settles (two seeds'
predictions agree within a few percent on the O(n^2) and O(k^3) mixes of the reruns campaign)."""
LAG_MARGIN = 1.5
"""A candidate is ruled out when its predicted long-stream p99 times this passes the loop budget. Checked against
streams of 500 random calls (``benchmarks/long_lag.py``, 2026-12-04): the O(n^2) record kernel read 22, 53 and
145 ms where the model said 24, 60 and 142 ms (thresholds 256, 362, 512), but the O(k^3) kernel read 16 and 49
ms where it said 12 and 35 (64, 91): up to 1.4x more, the cores shared with busy workers costing inline calls
more than the model's proportional stretch. With 1.25 the bundled ``cluster_observations`` kept 362 (predicted
70 ms), recorded at 130 ms p99 in the co-hosted benchmark."""


@dataclass(frozen=True, slots=True)
class CallCosts:
    """The corrected model's seconds for each call of the ring, in size order."""

    inline_s: tuple[float, ...]
    loop_s: tuple[float, ...]
    """Loop-thread seconds of the call offloaded (pickling, the executor, unpickling its result)."""
    worker_s: tuple[float, ...]
    """Seconds from submission to the result being back, the call offloaded (a worker is busy that long)."""

    def __post_init__(self) -> None:
        if not (len(self.inline_s) == len(self.loop_s) == len(self.worker_s)) or not self.inline_s:
            raise ValueError("CallCosts needs one inline, loop and worker time per call, and at least one call")
        for values in (self.inline_s, self.loop_s, self.worker_s):
            if any(not math.isfinite(v) or v < 0 for v in values):
                raise ValueError("CallCosts holds finite seconds >= 0")


def stream_draws(ring: int, seed: int, calls: int = LONG_CALLS) -> list[int]:
    """Indices into the ring (its calls in size order) of a long stream drawn from the mix: the ring holds the
    mix's quantiles, so uniform draws from it are draws from the mix."""
    rng = random.Random(seed)
    return [rng.randrange(ring) for _ in range(calls)]


def long_stream_lag_p99(
    costs: CallCosts, offload_from: int, draws: Sequence[int], *, callers: int, workers: int, cores: int
) -> float:
    """Predicted p99 loop lag of a long stream (``draws``) when the calls of the ring from index
    ``offload_from`` up are offloaded (the module docstring says how)."""
    lags, zeros = _replay(costs, offload_from, draws, callers, workers, cores)
    total = len(lags) + zeros
    if total == 0:
        return 0.0
    rank = max(0, math.ceil(0.99 * total) - 1) - zeros  # nearest rank, zeros first
    if rank < 0:
        return 0.0
    lags.sort()
    return lags[rank]


def _replay(
    costs: CallCosts, offload_from: int, draws: Sequence[int], callers: int, workers: int, cores: int
) -> tuple[list[float], int]:
    """(the heartbeat's non-zero lags, how many wake-ups were on time) over the replayed stream."""
    if callers < 1 or workers < 1:
        raise ValueError("callers and workers must be >= 1")
    inline, loop_s, worker_s = costs.inline_s, costs.loop_s, costs.worker_s
    now, beat_due = 0.0, HEARTBEAT_S
    ready = list(range(callers))  # callers whose continuation is queued for the next iteration
    results: list[tuple[float, int, int]] = []  # (result back, sequence, caller): offloaded calls in flight
    free_at = [0.0] * workers  # when each worker is next free
    lags: list[float] = []
    zeros = taken = sequence = 0
    while ready or results:
        while results and results[0][0] <= now:  # results back: their callers are ready (before timers)
            ready.append(heapq.heappop(results)[2])
        if not ready and beat_due > now:  # idle: the heartbeat wakes on time until the next result
            until = results[0][0]
            if until > beat_due:
                wakes = math.ceil((until - beat_due) / HEARTBEAT_S)
                zeros += wakes
                beat_due += wakes * HEARTBEAT_S
            now = max(now, until)
            continue
        beat = beat_due <= now
        step, ready = ready, []
        for caller in step:
            if taken >= len(draws):
                continue  # this caller is done: no more calls
            call = draws[taken]
            taken += 1
            if call < offload_from:  # on a core shared with the busy workers, beyond the fitted average
                busy = sum(1 for t in free_at if t > now)
                now += inline[call] * max(1.0, (1 + busy) / cores)
                ready.append(caller)
            else:
                now += loop_s[call]
                worker = min(range(workers), key=free_at.__getitem__)
                start = max(now, free_at[worker])
                free_at[worker] = start + worker_s[call]
                sequence += 1
                heapq.heappush(results, (free_at[worker], sequence, caller))
        if beat:
            late = now - beat_due
            if late > 0:
                lags.append(late)
            else:
                zeros += 1
            beat_due = now + HEARTBEAT_S
    return lags, zeros


def call_costs(predictions: Sequence[Prediction]) -> CallCosts:
    """The corrected model's per-call seconds (``predictions`` of the ring's calls in size order, made with the
    fitted load factors)."""
    return CallCosts(
        tuple(p.inline_s for p in predictions),
        tuple(p.offload_loop_s for p in predictions),
        tuple(max(p.offload_worker_s, p.offload_latency_s) for p in predictions),
    )


def long_stream_lags(
    predictions: Sequence[Prediction],
    sizes: Sequence[int],
    thresholds: Sequence[int | None],
    knobs: PolicyKnobs,
    seed: int,
) -> dict[int | None, float]:
    """Each threshold's predicted long-stream p99 (:func:`long_stream_lag_p99`), ``predictions`` of the ring's
    ``sizes`` (sorted) by the corrected model: the same drawn stream for every threshold."""
    ring = call_costs(predictions)
    draws = stream_draws(len(sizes), seed)
    return {
        t: long_stream_lag_p99(
            ring, offload_from(sizes, t), draws, callers=knobs.concurrency, workers=knobs.workers, cores=knobs.cores
        )
        for t in thresholds
    }
