"""Production statistics, gathered on the hot path: what sizes a service really calls its kernels with, where
they ran, and what sampled calls cost.

A threshold is tuned for a mix of sizes that calibration could only guess; the real mix is known only in
production, and it moves. So every call of a registered kernel is counted, per decision (inline or
offloaded) and per log2 size bucket, and one call in ``sample_every`` is timed: inline, its compute;
offloaded, the time the caller's thread was blocked (pickling the call, submitting, unpickling the result)
and the end-to-end latency. ``offload-tuner retune`` and ``drift`` read these against the profile's models.
Where the profile's loop-budget guard decides some of a kernel's calls, ``stats()`` says how many of the
offloaded ones it decided (``guarded``), derived from these counts when the statistics are read
(:func:`guard_decided`; the document itself is built in ``_stats_document``): the hot path counts nothing more.

Cost: counting is one list increment and a bit test (the count itself picks the calls to time: every
``sample_every``-th call of each size bucket and decision, a sample stratified by size at no extra cost);
benchmarked against the old three-line gate in ``benchmarks/test_decision_overhead.py`` and against the
decision before statistics in ``benchmarks/stats_cost.py``. A timed call adds two ``perf_counter`` reads.
Memory is fixed per kernel whatever the traffic, allocated on its first call: 65 counters per decision and a
ring of the last ``SAMPLE_CAP`` samples per kind (three arrays of doubles and int64s, 18 KB per kernel).
Counters are updated without a lock: under the GIL a thread switch between the load and the store of ``+=``
can lose an increment, rarely; these are statistics, not accounting.

Stdlib only, like the rest of the production path.
"""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any, Final

from offload_tuner.runtime._registry import KernelSpec, default_size, spec_for

STATS_SCHEMA: Final = "offload-tuner-stats/1"
BUCKETS: Final = 65
"""Bucket ``b`` holds sizes with ``n.bit_length() == b``: 0, 1, 2-3, 4-7, ... (2**63 and up share the last)."""
SAMPLE_CAP: Final = 256
"""Samples kept per kernel and kind (the most recent): enough for a median per size bucket, bounded."""
MAX_RING_SIZE: Final = 2**63 - 1
"""Sizes are stored as int64 in the sample rings; larger ones (not real element counts) are clamped."""
SAMPLE_KINDS: Final = ("inline", "loop", "latency")
"""inline: compute of an inline call; loop: caller-thread time of an offloaded call; latency: its round trip."""
DEFAULT_SAMPLE_EVERY: Final = 64
DRIFT_CHECK_EVERY: Final = 128
"""The runtime compares a kernel's samples with its model after every this many (at the default sampling,
once per ~8k calls of the kernel), at most once per ``DRIFT_CHECK_INTERVAL_S``. The check predicts each
sample once (milliseconds for a full ring), on the thread whose call was timed; it stops once the kernel has
drifted."""
DRIFT_CHECK_INTERVAL_S: Final = 10.0
"""Without it, a service timing more calls pays for more checks (at ``sample_every(4)`` a small kernel spends a
noticeable share of its time in them: the mix-shift benchmark); with it, at most one check per interval and
kernel."""
SAMPLE_EVERY_ENV: Final = "OFFLOAD_TUNER_SAMPLE_EVERY"


def bucket_of(n: int) -> int:
    """The bucket of size ``n``: its bit length, capped."""
    b = n.bit_length()
    return b if b < BUCKETS else BUCKETS - 1


def bucket_floor(b: int) -> int:
    """The smallest size in bucket ``b`` (the bucket's name in snapshots)."""
    return 0 if b == 0 else 1 << (b - 1)


class SampleRing:
    """The last ``SAMPLE_CAP`` samples of one kind, in three preallocated arrays: memory is fixed when the kernel
    is first called, however many samples follow. Two threads recording at once may interleave one sample's
    fields (rare; one sample of hundreds), never grow or break the ring."""

    __slots__ = ("filled", "next", "seconds", "sizes", "stamps")

    def __init__(self) -> None:
        self.stamps = array("d", bytes(8 * SAMPLE_CAP))
        self.sizes = array("q", bytes(8 * SAMPLE_CAP))
        self.seconds = array("d", bytes(8 * SAMPLE_CAP))
        self.next = 0
        self.filled = 0

    def add(self, n: int, seconds: float) -> None:
        i = self.next
        self.stamps[i] = time.time()
        self.sizes[i] = n if n < MAX_RING_SIZE else MAX_RING_SIZE
        self.seconds[i] = seconds
        self.next = (i + 1) % SAMPLE_CAP
        if self.filled < SAMPLE_CAP:
            self.filled += 1

    def rows(self) -> list[list[float | int]]:
        """[time, size, seconds], oldest first."""
        start = (self.next - self.filled) % SAMPLE_CAP
        order = [(start + k) % SAMPLE_CAP for k in range(self.filled)]
        return [[round(self.stamps[i], 3), self.sizes[i], self.seconds[i]] for i in order]

    def clear(self) -> None:
        self.next = self.filled = 0

    def __len__(self) -> int:
        return self.filled


class KernelStats:
    """One kernel's counters and sample rings (one per registered kernel, kept for the process's life)."""

    __slots__ = ("__weakref__", "checked_at", "explored", "inline", "offload", "samples", "size", "spec", "timed")

    def __init__(self, spec: KernelSpec) -> None:
        self.spec = spec
        self.size = None if spec.size is default_size else spec.size
        """The kernel's size function, one attribute away from the hot path; None for the default (the length
        of the first argument), which the hot path computes without a Python call (a Python call costs about as
        much as the rest of the decision)."""
        self.inline = [0] * BUCKETS
        """Calls run inline, per size bucket."""
        self.offload = [0] * BUCKETS
        """Calls offloaded, per size bucket."""
        self.samples = {kind: SampleRing() for kind in SAMPLE_KINDS}
        self.explored = 0
        """Calls online adaptation ran the other way than decided (counted under the decision)."""
        self.checked_at = -DRIFT_CHECK_INTERVAL_S
        """When the runtime last compared these samples with the model (``time.monotonic()``)."""
        self.timed = 0
        """Samples recorded so far (every ``DRIFT_CHECK_EVERY`` of them, the runtime compares with the model)."""

    def record(self, kind: str, n: int, seconds: float) -> bool:
        """Keep a sample; True when it is time to compare the kernel's samples with its model."""
        self.samples[kind].add(n, seconds)
        self.timed += 1
        if self.timed % DRIFT_CHECK_EVERY:
            return False
        now = time.monotonic()
        if now - self.checked_at < DRIFT_CHECK_INTERVAL_S:
            return False
        self.checked_at = now
        return True

    def seen(self) -> bool:
        """Whether any call was counted or timed (since the last reset)."""
        return any(self.inline) or any(self.offload) or any(len(ring) for ring in self.samples.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": {
                "inline": {str(bucket_floor(b)): c for b, c in enumerate(self.inline) if c},
                "offload": {str(bucket_floor(b)): c for b, c in enumerate(self.offload) if c},
            },
            "samples": {kind: ring.rows() for kind, ring in self.samples.items()},
            "explored": self.explored,
        }


class Timed:
    """A call picked for timing: where it runs (``lane`` is None for inline) and what to record it under."""

    __slots__ = ("lane", "n", "stats")

    def __init__(self, lane: Any, stats: KernelStats, n: int) -> None:
        self.lane, self.stats, self.n = lane, stats, n


def sampling(every: int) -> tuple[int, int]:
    """The hot path's bit test for timing one call in ``every`` (a power of two): a call is timed when its
    bucket's new count ``c`` has ``c & mask == phase``. ``every=0``: never (the phase is unreachable)."""
    if every <= 0:
        return 0, -1
    return every - 1, every // 2


EXPLORE_NEAR_SHIFT: Final = 2
"""While adapting, exploration covers sizes within ``2**EXPLORE_NEAR_SHIFT``-fold of the threshold."""
EXPLORE_EVERY_AT_LEAST: Final = 64
"""Exploration's cap: at most one call in this many of a size bucket near the threshold runs the other way."""


def exploration(every: int) -> tuple[int, int]:
    """The bit test picking the timed calls that run the other way while adapting: half of the timed calls, at
    most one in ``EXPLORE_EVERY_AT_LEAST``. Every call it picks is also picked by :func:`sampling` (same
    residue modulo ``every``), so an explored call is always timed. ``every=0``: none."""
    if every <= 0:
        return 0, -1
    span = max(2 * every, EXPLORE_EVERY_AT_LEAST)
    return span - 1, (sampling(every)[1] + span // 2) % span


def power_of_two_at_most(every: int) -> int:
    return 0 if every <= 0 else 1 << (every.bit_length() - 1)


def _configured_sample_every() -> int:
    raw = os.environ.get(SAMPLE_EVERY_ENV)
    if raw is None:
        return DEFAULT_SAMPLE_EVERY
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
        return power_of_two_at_most(value)
    except ValueError:
        import warnings

        warnings.warn(
            f"offload-tuner: {SAMPLE_EVERY_ENV}={raw!r} is not an integer >= 0; "
            f"timing 1 call in {DEFAULT_SAMPLE_EVERY}",
            stacklevel=2,
        )
        return DEFAULT_SAMPLE_EVERY


_sample_every: int = _configured_sample_every()
_by_fn: dict[Callable[..., Any], KernelStats] = {}
_started: Final = time.time()


def stats_for(fn: Callable[..., Any]) -> KernelStats | None:
    """The counters of a registered kernel, created on its first call; None for other functions (not
    cached, so a stream of lambdas cannot grow memory). The call path asks :func:`_observe.stats_for`, which
    also tells the observers of a kernel's first call."""
    found = _by_fn.get(fn)
    if found is not None:
        return found
    spec = spec_for(fn)
    if spec is None:
        return None
    return _by_fn.setdefault(fn, KernelStats(spec))


def reset_stats() -> None:
    """Zero every counter and drop every sample of this process (tests, or a service starting afresh)."""
    for stats in list(_by_fn.values()):
        stats.inline[:] = [0] * BUCKETS
        stats.offload[:] = [0] * BUCKETS
        stats.explored = stats.timed = 0
        stats.checked_at = -DRIFT_CHECK_INTERVAL_S
        for ring in stats.samples.values():
            ring.clear()


def guard_decided(
    offload: Sequence[int], guard: int, threshold: int | None, sizes: Sequence[int] = ()
) -> tuple[int, bool]:
    """How many of the offloaded calls counted in ``offload`` (per size bucket) the loop budget's guard decided: the
    sizes from ``guard`` up to the ``threshold`` the profile or adaptation chose (every size from the guard up where
    it chose "never", None), which that threshold alone would have run inline. Whole buckets are exact; a bucket
    the threshold splits is apportioned by the sizes of its timed offloaded calls (``sizes``: a systematic sample
    of its calls, every ``sample_every``-th), else by the share of the bucket's sizes. Returns (calls, exact)."""
    calls, exact = 0.0, True
    for b, count in enumerate(offload):
        if not count:
            continue
        lo = bucket_floor(b)
        hi = max(lo, 2 * lo - 1) if b < BUCKETS - 1 else MAX_RING_SIZE
        if hi < guard or (threshold is not None and lo >= threshold):
            continue  # below the guard (counted before it was in force), or the threshold's own offloads
        if threshold is None or hi < threshold:
            calls += count
            continue
        # This bucket's offloaded calls lie in [low, hi]; those below the threshold are the guard's.
        low = max(lo, guard)
        timed = [n for n in sizes if low <= n <= hi]
        share = sum(n < threshold for n in timed) / len(timed) if timed else (threshold - low) / (hi + 1 - low)
        calls += count * share
        exact = False
    return round(calls), exact


def process_id() -> str:
    """This process's section in a shared stats file: pid and start time (pids are reused)."""
    return f"{os.getpid()}@{_started:.3f}"
