"""Lanes: an installed executor plus the backlog placement reads, and the booking of one call on a lane.

Below the state (:mod:`_state` holds the lanes) and the placement (:mod:`_placer` books calls on them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from offload_tuner.runtime._backends import DASK, backend_for

if TYPE_CHECKING:
    from concurrent.futures import Executor

CLUSTER_GUARD_FACTOR: Final = 10.0
CLUSTER_GUARD_FLOOR_S: Final = 10.0
"""A cluster call not back within ``factor x`` its predicted completion ``+ floor`` is computed locally (and the
cluster dropped for a while): a lost scheduler or a stuck worker must never hang the caller."""


class Lane:
    """One installed executor and how calls reach it: what the hot path hands to the offloading code.

    ``modelled`` is False for the thread lane of a kernel the profile sends to threads because it releases
    the GIL, and for a Dask cluster: their offloaded calls are not timed (the statistics' offloaded kinds are the
    process model's, which drift and retune compare them with).

    ``inflight`` and ``work`` are the backlog placement reads: calls booked on this lane and not finished, and
    their predicted worker-seconds. ``work`` is reset to zero whenever ``inflight`` drops to zero, so prediction
    errors never pile up."""

    __slots__ = ("backend", "executor", "inflight", "lock", "modelled", "name", "work")

    def __init__(self, name: str, executor: Executor, modelled: bool = True) -> None:
        self.name, self.executor, self.backend = name, executor, backend_for(executor)
        self.modelled = modelled and self.backend is not DASK
        self.inflight, self.work = 0, 0.0
        self.lock = threading.Lock()

    def enter(self, work: float) -> None:
        """A booked call joins the backlog. Under the lane's lock: the synchronous path may run in several
        threads beside the event loop, and a lost update would leave the count off for good."""
        with self.lock:
            self.inflight += 1
            self.work += work

    def settle(self, work: float) -> None:
        """A booked call completed: out of the backlog; an idle lane's backlog is exactly zero again."""
        with self.lock:
            self.inflight -= 1
            if self.inflight > 0:
                self.work -= work
            else:
                self.inflight, self.work = 0, 0.0


class Booking:
    """Where placement sent one offloaded call: the lane, the call's predicted worker-seconds (its share of the
    lane's backlog while it runs) and, for a cluster, how long to wait before computing it locally instead."""

    __slots__ = ("guard", "lane", "work")

    def __init__(self, lane: Lane, work: float, guard: float | None) -> None:
        self.lane, self.work, self.guard = lane, work, guard

    def __enter__(self) -> Lane:
        """The call joins its lane's backlog until it completes (``with booking as lane:``)."""
        self.lane.enter(self.work)
        return self.lane

    def __exit__(self, *exc: object) -> None:
        self.lane.settle(self.work)


def cluster_guard(lane: Lane, expected_s: float) -> float | None:
    """How long a cluster call may take before it is computed locally (None: not a cluster)."""
    return expected_s * CLUSTER_GUARD_FACTOR + CLUSTER_GUARD_FLOOR_S if lane.backend is DASK else None


def guard_message(guard: float) -> str:
    return (
        f"no result within {guard:.1f} s ({CLUSTER_GUARD_FACTOR:g}x its expected completion "
        f"+ {CLUSTER_GUARD_FLOOR_S:g} s)"
    )


in_thread_lane = threading.local()
"""``active`` is True while a thread pool's thread runs a kernel for us: a kernel that calls ``run_kernel_sync``
on another from there, for a thread pool, runs it inline instead of waiting on the pool it occupies (every
thread busy waiting would never end); ``decide()`` says so. A call for a process pool goes there as usual
(waiting on it cannot deadlock the threads). Such a nested call is counted under the decision it replaced."""


def run_in_thread_lane(fn: Callable[..., Any], *args: Any) -> Any:
    in_thread_lane.active = True
    try:
        return fn(*args)
    finally:
        in_thread_lane.active = False


def inside_thread_lane() -> bool:
    return getattr(in_thread_lane, "active", False) is True
