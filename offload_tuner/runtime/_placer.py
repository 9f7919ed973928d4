"""Placement per call: a kernel's offloaded calls go to the candidate lane where they are expected to complete
soonest (the cost tables come from :mod:`_placement`), and what the state keeps of it (placers per profile).

Above the state (it reads the installed lanes and profile), below the decision (which resolves a kernel's lane
or :class:`Placer` once per snapshot, then books each offloaded call through :meth:`Placer.place`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from offload_tuner.runtime import _state
from offload_tuner.runtime._backends import DASK, THREAD
from offload_tuner.runtime._lanes import Booking, Lane, cluster_guard
from offload_tuner.runtime._placement import BUCKETS, LaneTable, cluster_costs, isolated, lane_table, thread_table
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel
from offload_tuner.runtime._profile import KernelEntry, Profile
from offload_tuner.runtime._registry import KernelSpec
from offload_tuner.runtime._warn import warn_once


class Candidate(NamedTuple):
    """One lane a kernel's offloaded calls may go to, with its costs per size bucket."""

    lane: Lane
    score: tuple[float, ...]
    """The latency plus the loop-thread time charged once per other caller (that time delays each of them)."""
    work: tuple[float, ...]
    """Predicted worker-seconds: the call's share of the lane's backlog while it runs."""
    slots: int
    latency: tuple[float, ...]
    loop: tuple[float, ...]
    local: bool
    """Whether its workers are this host's cores (threads, processes; not a cluster)."""


class Completion(NamedTuple):
    at: float
    """Expected completion, seconds from now."""
    lane: Lane
    work: float


def candidate(lane: Lane, table: LaneTable, charge: int, slots: int) -> Candidate:
    """A lane and its cost table; ``charge``: how many other callers the loop-thread time delays."""
    score = tuple(latency + charge * loop for latency, loop in zip(table.latency_s, table.loop_s))
    return Candidate(lane, score, tuple(table.work_s), slots, tuple(table.latency_s), tuple(table.loop_s),
                     lane.backend is not DASK)  # fmt: skip


def _bucket(n: int) -> int:
    b = n.bit_length()
    return b if b < BUCKETS else BUCKETS - 1


class Placer:
    """A kernel's offloaded calls placed by expected completion among its candidate lanes.

    Inline calls never get here; an offloaded call while every candidate is idle costs a lookup (the idle choice
    per size bucket is precomputed), otherwise one pass over two or three candidates. The :class:`Booking`
    answers are built once per candidate and bucket: a call allocates nothing (a cluster call behind a queue
    excepted: its guard grows with the wait)."""

    __slots__ = ("bookings", "candidates", "cores", "fast", "idle", "lanes", "local_lanes", "pair")

    def __init__(self, candidates: tuple[Candidate, ...], cores: int) -> None:
        self.candidates = candidates
        self.cores = cores
        """The host's cores, which its local backends (threads, processes) share: an idle process pool adds no
        capacity while the thread pool's calls already take every core."""
        self.lanes = tuple(c.lane for c in candidates)
        self.local_lanes = tuple(c.lane for c in candidates if c.local)
        self.fast = tuple((i, c.lane, c.score, c.slots, c.local) for i, c in enumerate(candidates))
        self.pair = tuple((c.lane, c.score, c.slots, c.local) for c in candidates) if len(candidates) == 2 else None
        """Two candidates (the usual case: threads and processes, or processes and a cluster): :meth:`place`
        spells the pass out for them, faster than the loop."""
        self.bookings = tuple(
            tuple(Booking(c.lane, c.work[b], cluster_guard(c.lane, c.score[b])) for b in range(BUCKETS))
            for c in candidates
        )
        self.idle = tuple(
            self.bookings[min(range(len(candidates)), key=lambda i: candidates[i].score[b])][b] for b in range(BUCKETS)
        )

    def waits(self) -> list[float]:
        """Each candidate's queueing delay now: its own backlog, or the host's when the local cores are full."""
        host_work, host_inflight = 0.0, 0
        for c in self.candidates:
            if c.local:
                host_work += c.lane.work
                host_inflight += c.lane.inflight
        host = host_work / self.cores if host_inflight >= self.cores else 0.0
        waits = []
        for c in self.candidates:
            wait = c.lane.work / c.slots if c.lane.inflight >= c.slots else 0.0
            waits.append(host if c.local and host > wait else wait)
        return waits

    def completions(self, n: int) -> list[Completion]:
        """(expected completion, lane, predicted work) per candidate for a call of size ``n``."""
        b = _bucket(n)
        return [Completion(c.score[b] + wait, c.lane, c.work[b]) for c, wait in zip(self.candidates, self.waits())]

    def describe(self, n: int) -> str:
        """Each candidate's score for a call of size ``n`` and what it is made of (for ``decide()``)."""
        b = _bucket(n)
        parts = []
        for (score, lane, _), queue, c in zip(self.completions(n), self.waits(), self.candidates):
            latency, loop = c.latency[b], c.loop[b]
            behind = f"{lane.inflight} in flight" if lane.inflight else "the host's cores, busy"
            charged = score - latency - queue
            parts.append(
                f"{lane.name} {score * 1e3:.2f} ms (latency {latency * 1e3:.2f}"
                + (f" + queue {queue * 1e3:.2f} behind {behind}" if queue else "")
                + (f" + loop {loop * 1e3:.3f} x {round(charged / loop)} callers" if loop > 0 and charged > 0 else "")
                + ")"
            )
        return "; ".join(parts)

    def place(self, n: int) -> Booking:
        # One piece on purpose: this runs on every offloaded call while a backend is busy, and each Python call
        # here costs about as much as the work; waits() and completions() are inlined, and unrolled for two.
        b = n.bit_length()
        if b >= BUCKETS:
            b = BUCKETS - 1
        pair = self.pair
        if pair is not None:
            (lane0, score0, slots0, local0), (lane1, score1, slots1, local1) = pair
            busy0, busy1 = lane0.inflight, lane1.inflight
            if not (busy0 or busy1):
                return self.idle[b]
            work0, work1, cores = lane0.work, lane1.work, self.cores
            if (busy0 if local0 else 0) + (busy1 if local1 else 0) >= cores:
                host = ((work0 if local0 else 0.0) + (work1 if local1 else 0.0)) / cores
            else:
                host = 0.0
            wait0 = work0 / slots0 if busy0 >= slots0 else 0.0
            if local0 and host > wait0:
                wait0 = host
            wait1 = work1 / slots1 if busy1 >= slots1 else 0.0
            if local1 and host > wait1:
                wait1 = host
            t0, t1 = score0[b] + wait0, score1[b] + wait1
            best, best_t, best_wait = (1, t1, wait1) if t1 < t0 else (0, t0, wait0)
        else:
            for lane in self.lanes:
                if lane.inflight:
                    break
            else:
                return self.idle[b]
            host_work, host_inflight, cores = 0.0, 0, self.cores
            for lane in self.local_lanes:
                host_inflight += lane.inflight
                host_work += lane.work
            host = host_work / cores if host_inflight >= cores else 0.0
            best, best_t, best_wait = 0, math.inf, 0.0
            for i, lane, score, slots, local in self.fast:
                wait = lane.work / slots if lane.inflight >= slots else 0.0
                if local and host > wait:
                    wait = host
                t = score[b] + wait
                if t < best_t:
                    best, best_t, best_wait = i, t, wait
        booking = self.bookings[best][b]
        if best_wait and booking.guard is not None:
            return Booking(booking.lane, booking.work, cluster_guard(booking.lane, best_t))
        return booking


_placement_on = True
"""Placement by expected completion; off, each kernel keeps its static lane (benchmarks compare the two)."""


def set_placement(on: bool) -> bool:
    """Placement by expected completion on or off (on by default); returns the previous setting. Off, a kernel's
    offloaded calls go to its static lane (the thread pool for a GIL-releasing kernel, else the process pool), and
    to a Dask cluster only when it is the one executor installed. For comparisons, not a production knob."""
    global _placement_on
    with _state._lock:
        previous, _placement_on = _placement_on, bool(on)
        _state.swap()  # the entries resolved with the old setting go
    return previous


_NOT_BUILT = object()


def offload_lane(
    snap: _state.Snapshot,
    profile: Profile,
    spec: KernelSpec,
    entry: KernelEntry,
    lane: Lane | None,
    *,
    thread_lane: Lane | None = None,
) -> Lane | Placer | None:
    """Where the kernel's offloaded calls go when several offload backends are installed: placed per call by
    expected completion among its thread lane (``thread_lane``: it releases the GIL), the process pool (``lane``)
    and a Dask cluster calibration measured for it, each scored by the call's predicted latency there, the
    backend's queue, and the loop-thread time it blocks charged once per other caller. With one backend, or
    placement off, the static lane."""
    cluster_lane = snap.lanes.get(DASK.name)
    if not _placement_on or (cluster_lane is None and (thread_lane is None or lane is None)):
        return thread_lane or lane
    key = (spec.key, thread_lane, lane, cluster_lane)  # lanes by identity: carried across snapshots while installed
    found = snap.placers.get(key, _NOT_BUILT)
    if found is _NOT_BUILT:
        found = snap.placers[key] = _build(profile, spec, entry, lane, thread_lane, cluster_lane)
    return found  # type: ignore[no-any-return]  # the cache holds only what _build returned


def _build(
    profile: Profile,
    spec: KernelSpec,
    entry: KernelEntry,
    lane: Lane | None,
    thread_lane: Lane | None,
    cluster_lane: Lane | None,
) -> Lane | Placer | None:
    try:
        costs = isolated(KernelCosts.from_json(entry.data["costs"]))
        knobs = PolicyKnobs.from_json(profile.data.get("policy", {}))
        local = TransportModel.from_json(profile.data["transport"]["model"])
    except Exception:  # an entry without usable models (hand-written, older): the static lane
        return thread_lane or lane
    charge = max(0, knobs.concurrency - 1)
    candidates = []
    if thread_lane is not None and entry.thread is not None:
        hand_off = profile.data.get("thread", {}).get("fixed_s") or 0.0
        table = thread_table(costs, hand_off, entry.thread.gil_hold)
        candidates.append(candidate(thread_lane, table, charge, _slots(thread_lane, knobs.workers)))
    if lane is not None and lane.backend is THREAD and thread_lane is None:
        return lane  # a profile calibrated for a thread pool: its costs include no pickling to compare with
    if lane is not None and lane is not cluster_lane and lane is not thread_lane:
        candidates.append(candidate(lane, lane_table(costs, local, knobs), charge, _slots(lane, knobs.workers)))
    if cluster_lane is not None:
        ratio, cluster = _cluster_ratio(profile, spec, cluster_lane), profile.cluster
        if ratio is not None and cluster is not None:
            table = lane_table(cluster_costs(costs, ratio), cluster.transport, knobs)
            candidates.append(candidate(cluster_lane, table, charge, cluster.threads))
    if not candidates:
        return thread_lane or lane
    return Placer(tuple(candidates), knobs.cores)


def _slots(lane: Lane, default: int) -> int:
    workers = getattr(lane.executor, "_max_workers", None)
    return workers if isinstance(workers, int) and workers > 0 else default


def _cluster_ratio(profile: Profile, spec: KernelSpec, cluster_lane: Lane) -> float | None:
    """The kernel's compute ratio on the installed cluster, if the profile measured this very cluster (one warning
    otherwise)."""
    cluster = profile.cluster
    if cluster is None:
        warn_once(
            f"cluster-uncalibrated:{profile.source}",
            f"offload-tuner: a Dask cluster is installed but {profile.source} holds no measurements of one; "
            "kernels stay local (run `offload-tuner calibrate --dask ADDRESS`)",
        )
        return None
    # Imported on use: _dask imports asyncio and concurrent.futures, which a service without a cluster never needs.
    from offload_tuner.runtime._dask import cluster_address

    address = cluster_address(cluster_lane.executor)
    if address != cluster.address:
        warn_once(
            f"cluster-other:{profile.source}:{address}",
            f"offload-tuner: {profile.source} measured the Dask cluster at {cluster.address}, the installed one "
            f"is at {address}; kernels stay local (calibrate with --dask {address})",
        )
        return None
    return cluster.ratios.get(spec.key)
