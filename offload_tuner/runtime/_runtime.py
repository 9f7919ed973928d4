"""The production path: decide per call, in O(1), and run the kernel inline or on the installed executor.

All process-wide state is one immutable :class:`_Snapshot` (profile + the installed executors, each a
:class:`_Lane` + a per-function decision table). Installing a profile or an executor swaps the reference; a call in flight keeps the snapshot it
started with, so every decision is made from one consistent profile.

Fallback rules (the documented safe default): with no executor installed everything runs inline; a kernel
without a usable profile entry (no profile, profile rejected, kernel missing, calibration failed, code
changed since calibration, profile calibrated for another kind of executor) uses its registered
``default_threshold``, which is ``None`` (inline, the behaviour of a plain call) unless the user set one.

``offload_if=True/False`` always stands. When it overrides a trusted profile entry, one
:class:`ProfileOverriddenWarning` per kernel says so: a service migrated by swapping the import keeps its old
constant at every call site and would otherwise gain nothing without being told. The check runs on a
kernel's first caller-decided call per snapshot (one set lookup per call after that).
"""

from __future__ import annotations

import math
import pickle
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, NoReturn

from offload_tuner.runtime import _stats
from offload_tuner.runtime._backends import (
    DASK,
    INLINE,
    THREAD,
    Backend,
    PayloadNotLoadable,
    ResultNotPicklable,
    backend_for,
    dumps_call,
    invoke_pickled,
)
from offload_tuner.runtime._host import host_mismatches
from offload_tuner.runtime._placement import BUCKETS as _PLACEMENT_BUCKETS
from offload_tuner.runtime._placement import cluster_costs, isolated, lane_table, thread_table
from offload_tuner.runtime._policy import GIL_RELEASING_MAX, KernelCosts, PolicyKnobs, TransportModel
from offload_tuner.runtime._profile import Profile, ProfileError, configured_profile_path, read_profile
from offload_tuner.runtime._registry import KernelSpec, spec_for
from offload_tuner.runtime._stats import BUCKETS, EXPLORE_NEAR_SHIFT, KernelStats, Timed, stats_for
from offload_tuner.runtime._stats import _by_fn as _stats_by_fn

if TYPE_CHECKING:
    from concurrent.futures import Executor


class OffloadTunerWarning(UserWarning):
    """Raised (once per cause) when the runtime falls back to a default."""


class ProfileOverriddenWarning(OffloadTunerWarning):
    """A call passed ``offload_if`` while a trusted profile entry exists for its kernel (once per kernel).

    Its own category so a deliberate override can be silenced precisely:
    ``warnings.filterwarnings("ignore", category=ProfileOverriddenWarning)``.
    """


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one call runs and why; what :func:`decide` returns for inspection and tests."""

    offload: bool
    backend: str
    size: int | None
    threshold: int | None
    reason: str
    kernel: str | None = None


class _Lane:
    """One installed executor and how calls reach it: what the hot path hands to the offloading code.

    ``modelled`` is False for the thread lane of a kernel the profile sends to threads because it releases
    the GIL, and for a Dask cluster: their offloaded calls are not timed (the statistics' offloaded kinds are the
    process model's, which drift and retune compare them with).

    ``inflight`` and ``work`` are the backlog placement reads (:class:`_Placer`): calls placed on this lane and
    not finished, and their predicted worker-seconds. ``work`` is reset to zero whenever ``inflight`` drops to
    zero, so prediction errors never pile up."""

    __slots__ = ("backend", "executor", "inflight", "lock", "modelled", "name", "work")

    def __init__(self, name: str, executor: Executor, modelled: bool = True) -> None:
        self.name, self.executor, self.backend = name, executor, backend_for(executor)
        self.modelled = modelled and self.backend is not DASK
        self.inflight, self.work = 0, 0.0
        self.lock = threading.Lock()


class _Placed:
    """Where placement sent one offloaded call: the lane, the call's predicted worker-seconds (its share of the
    lane's backlog while it runs) and, for a cluster, how long to wait before computing it locally instead."""

    __slots__ = ("guard", "lane", "work")

    def __init__(self, lane: _Lane, work: float, guard: float | None) -> None:
        self.lane, self.work, self.guard = lane, work, guard

    def __enter__(self) -> _Lane:
        """The call joins its lane's backlog until it completes (``with placed as lane:``)."""
        _enter(self.lane, self.work)
        return self.lane

    def __exit__(self, *exc: object) -> None:
        _settle(self.lane, self.work)


CLUSTER_GUARD_FACTOR: Final = 10.0
CLUSTER_GUARD_FLOOR_S: Final = 10.0
"""A cluster call not back within ``factor x`` its predicted completion ``+ floor`` is computed locally (and the
cluster dropped for a while): a lost scheduler or a stuck worker must never hang the caller."""


class _Placer:
    """A kernel's offloaded calls placed by expected completion (:mod:`_placement`) among its candidate lanes.

    ``candidates``: (lane, score per size bucket, worker-seconds per size bucket, slots, latency per bucket,
    loop-thread time per bucket); the score is the latency plus the loop-thread time charged once per other
    caller. Inline calls never get here; an offloaded call while every candidate is idle costs a lookup (the
    idle choice per size bucket is precomputed), otherwise one pass over two or three candidates. The
    :class:`_Placed` answers are built once per candidate and bucket: a call allocates nothing (a cluster call
    behind a queue excepted: its guard grows with the wait)."""

    __slots__ = ("candidates", "cores", "fast", "idle", "lanes", "local_lanes", "pair", "placed")

    def __init__(self, candidates: tuple, cores: int) -> None:
        self.candidates = candidates
        self.cores = cores
        """The host's cores, which its local backends (threads, processes) share: an idle process pool adds no
        capacity while the thread pool's calls already take every core."""
        self.lanes = tuple(c[0] for c in candidates)
        self.local_lanes = tuple(c[0] for c in candidates if c[6])
        self.fast = tuple((i, c[0], c[1], c[3], c[6]) for i, c in enumerate(candidates))
        self.pair = tuple((c[0], c[1], c[3], c[6]) for c in candidates) if len(candidates) == 2 else None
        """Two candidates (the usual case: threads and processes, or processes and a cluster): :meth:`place`
        spells the pass out for them, a third faster than the loop."""
        self.placed = tuple(
            tuple(_Placed(c[0], c[2][b], _guard(c[0], c[1][b])) for b in range(_PLACEMENT_BUCKETS)) for c in candidates
        )
        self.idle = tuple(
            self.placed[min(range(len(candidates)), key=lambda i: candidates[i][1][b])][b]
            for b in range(_PLACEMENT_BUCKETS)
        )

    def _waits(self) -> list[float]:
        host_work, host_inflight = 0.0, 0
        for lane, _, _, _, _, _, local in self.candidates:
            if local:
                host_work += lane.work
                host_inflight += lane.inflight
        host = host_work / self.cores if host_inflight >= self.cores else 0.0
        waits = []
        for lane, _, _, slots, _, _, local in self.candidates:
            wait = lane.work / slots if lane.inflight >= slots else 0.0
            waits.append(host if local and host > wait else wait)
        return waits

    def completions(self, n: int) -> list[tuple[float, _Lane, float]]:
        """(expected completion, lane, predicted work) per candidate for a call of size ``n``."""
        b = n.bit_length()
        if b >= _PLACEMENT_BUCKETS:
            b = _PLACEMENT_BUCKETS - 1
        return [(c[1][b] + wait, c[0], c[2][b]) for c, wait in zip(self.candidates, self._waits())]

    def describe(self, n: int) -> str:
        """Each candidate's score for a call of size ``n`` and what it is made of (for ``decide()``)."""
        b = min(n.bit_length(), _PLACEMENT_BUCKETS - 1)
        parts = []
        for (score, lane, _), queue, c in zip(self.completions(n), self._waits(), self.candidates):
            latency, loop = c[4], c[5]
            behind = f"{lane.inflight} in flight" if lane.inflight else "the host's cores, busy"
            parts.append(
                f"{lane.name} {score * 1e3:.2f} ms (latency {latency[b] * 1e3:.2f}"
                + (f" + queue {queue * 1e3:.2f} behind {behind}" if queue else "")
                + (
                    f" + loop {loop[b] * 1e3:.3f} x {round((score - latency[b] - queue) / loop[b])} callers"
                    if loop[b] > 0 and score - latency[b] - queue > 0
                    else ""
                )
                + ")"
            )
        return "; ".join(parts)

    def place(self, n: int) -> _Placed:
        b = n.bit_length()
        if b >= _PLACEMENT_BUCKETS:
            b = _PLACEMENT_BUCKETS - 1
        pair = self.pair
        if pair is not None:  # the loop below, unrolled for two candidates
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
            placed = self.placed[best][b]
            if best_wait and placed.guard is not None:
                return _Placed(placed.lane, placed.work, _guard(placed.lane, best_t))
            return placed
        for lane in self.lanes:
            if lane.inflight:
                break
        else:
            return self.idle[b]
        # _waits() and completions() inlined: this runs on every offloaded call while a backend is busy.
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
        placed = self.placed[best][b]
        if best_wait and placed.guard is not None:
            return _Placed(placed.lane, placed.work, _guard(placed.lane, best_t))
        return placed


def _guard(lane: _Lane, expected_s: float) -> float | None:
    """How long a cluster call may take before it is computed locally (None: not a cluster)."""
    return expected_s * CLUSTER_GUARD_FACTOR + CLUSTER_GUARD_FLOOR_S if lane.backend is DASK else None


def _first(item: tuple[float, _Lane, float]) -> float:
    return item[0]


# A table entry: (spec or None, threshold or None, reason, statistics or None, lane or None). Tuples are the
# cheapest thing to unpack. Spec and statistics are None together (not a registered kernel); the lane is where
# the kernel's offloaded calls go (None: no executor installed).
_Entry = tuple[KernelSpec | None, int | None, str, KernelStats | None, "_Lane | None"]

_UNLOADED: Final = object()

_ADAPTED: Final = "adapted"
"""Reasons of entries whose threshold online adaptation chose (see :mod:`_adapt`) start with this."""
_adapted: tuple[object, dict[str, tuple[int | None, str]]] = (None, {})
"""The profile adaptation worked from, and its thresholds: used only while that profile is installed."""

# Reasons of entries the profile decides (trusted: status ok, same code, same executor kind, this host).
_FROM_PROFILE: Final = "profile"
_NEVER_PAYS: Final = "profile: offloading never pays for this kernel"
_THREAD_LANE: Final = "profile: releases the GIL, thread pool"
"""Reasons of entries sent to the thread lane start with this (not an offload threshold adaptation tunes)."""
PRIMARY_ORDER: Final = ("process",)
"""With several executors installed, caller-decided calls (``offload_if=True``) and kernels the profile does not
send elsewhere go to the first of these that is installed, else to the first executor installed."""


class _Snapshot:
    __slots__ = (
        "backend",
        "caller_decided",
        "dropped",
        "executor",
        "executors",
        "gil_free",
        "installed",
        "lanes",
        "primary",
        "primary_name",
        "profile",
        "profile_problem",
        "table",
    )

    def __init__(
        self,
        profile: Profile | object | None,
        profile_problem: str | None,
        executors: Mapping[str, Executor],
        primary_name: str | None = None,
        dropped: frozenset[str] = frozenset(),
        previous: _Snapshot | None = None,
    ) -> None:
        self.profile = profile
        self.profile_problem = profile_problem
        self.executors: dict[str, Executor] = dict(executors)
        # A lane carries its backlog (calls in flight) across snapshots while its executor stays installed.
        kept = previous.lanes if previous is not None else {}
        self.lanes = {
            name: kept[name] if name in kept and kept[name].executor is executor else _Lane(name, executor)
            for name, executor in self.executors.items()
        }
        self.installed = bool(self.lanes)
        if primary_name is None:
            primary_name = next((name for name in PRIMARY_ORDER if name in self.lanes), next(iter(self.lanes), None))
        self.primary_name = primary_name
        """Where caller-decided calls go. Kept when that executor fails and is dropped: its calls then run
        inline, never on another executor (a kernel holding the GIL must not land on the thread pool)."""
        self.primary: _Lane | None = self.lanes.get(primary_name) if primary_name is not None else None
        self.dropped = dropped
        """Executors dropped after they failed, until set_executor(s) is called: the primary's calls and the
        kernels profiled for a dropped process pool run inline; thread-lane kernels of a dropped thread pool
        fall back to their process threshold."""
        thread = self.executors.get(THREAD.name)
        kept_free = previous.gil_free if previous is not None else None
        self.gil_free: _Lane | None = (
            None
            if thread is None
            else (
                kept_free
                if kept_free is not None and kept_free.executor is thread
                else _Lane(THREAD.name, thread, modelled=False)
            )
        )
        """The thread lane for kernels the profile sends there because they release the GIL."""
        self.executor = self.primary.executor if self.primary is not None else None
        """The primary executor (``get_executor()``); None with no executor installed, or its lane dropped."""
        self.backend: Backend = self.primary.backend if self.primary is not None else INLINE
        self.table: dict[Callable[..., Any], _Entry] = {}
        self.caller_decided: set[Callable[..., Any]] = set()
        """Functions whose caller-decided calls were checked against this snapshot's profile."""


_snapshot = _Snapshot(_UNLOADED, None, {})
_lock = threading.RLock()
_warned: set[str] = set()


def _warn_once(
    key: str, message: str, category: type[OffloadTunerWarning] = OffloadTunerWarning, stacklevel: int = 3
) -> None:
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, category, stacklevel=stacklevel)


# ---------------------------------------------------------------------------------------------- state


def set_executor(executor: Executor | None) -> None:
    """Install the executor offloaded calls go to (``None``: everything runs inline); replaces every executor
    installed before (see :func:`set_executors` for several)."""
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(f"set_executor() needs a concurrent.futures-style executor, got {type(executor).__name__}")
    _install({} if executor is None else {backend_for(executor).name: executor})


def set_executors(executors: Mapping[str, Executor]) -> None:
    """Install several executors at once, by backend name: ``{"process": pool, "thread": threads}``.

    A kernel the profile measured to release the GIL goes to ``"thread"`` (from its thread threshold); every
    other kernel, and every caller-decided ``offload_if=True`` call, to ``"process"`` (or the one executor
    installed). Each executor fails alone: a broken process pool does not stop the thread pool. ``{}``: inline."""
    if not isinstance(executors, Mapping):
        raise TypeError(f"set_executors() needs a mapping of backend name -> executor, got {type(executors).__name__}")
    for name, executor in executors.items():
        if not callable(getattr(executor, "submit", None)):
            raise TypeError(
                f"set_executors(): {name!r} needs a concurrent.futures-style executor, got {type(executor).__name__}"
            )
        kind = backend_for(executor).name
        if name != kind:
            raise ValueError(
                f"set_executors(): a {type(executor).__name__} is a {kind!r} backend; install it under "
                f"{kind!r}, not {name!r}"
            )
    _install(executors)


def _install(executors: Mapping[str, Executor]) -> None:
    global _snapshot, _placers
    with _lock:
        _placers = (None, {})  # the user's executors change: let the old ones go
        old = _snapshot
        _snapshot = _Snapshot(old.profile, old.profile_problem, executors, previous=old)


def get_executor() -> Executor | None:
    """The executor caller-decided calls go to (the process pool when several are installed)."""
    return _snapshot.executor


def get_executors() -> dict[str, Executor]:
    """Every installed executor by backend name (a copy)."""
    return dict(_snapshot.executors)


def load_profile(path: Any = None, *, strict: bool = False, check_host: bool = True) -> Profile | None:
    """Install a profile process-wide by swapping one reference; calls in flight are unaffected.

    ``path=None`` loads ``$OFFLOAD_TUNER_PROFILE`` or the per-host default location. A profile that
    cannot be used (missing, corrupt, wrong schema, another host) is reported by one warning naming
    the file and the reason, and kernels fall back to their defaults; ``strict=True`` raises
    :class:`ProfileError` instead.
    """
    global _snapshot
    target = configured_profile_path() if path is None else path
    profile: Profile | None = None
    problem: str | None = None
    try:
        profile = read_profile(target)
        if check_host:
            mismatches = host_mismatches(profile.host)
            if mismatches:
                raise ProfileError(f"{profile.source}: calibrated on another host ({'; '.join(mismatches)})")
    except ProfileError as exc:
        if strict:
            raise
        profile, problem = None, str(exc)
        hint = " (run `offload-tuner calibrate` on this host)" if problem.endswith("no such file") else ""
        _warn_once(
            f"profile:{problem}", f"offload-tuner: profile not used, kernels use their defaults: {problem}{hint}"
        )
    with _lock:
        _snapshot = _Snapshot(
            profile, problem, _snapshot.executors, _snapshot.primary_name, _snapshot.dropped, _snapshot
        )
    return profile


def unload_profile() -> None:
    """Forget the installed profile; the next decision loads the configured one lazily again."""
    global _snapshot
    with _lock:
        _snapshot = _Snapshot(
            _UNLOADED, None, _snapshot.executors, _snapshot.primary_name, _snapshot.dropped, _snapshot
        )


def current_profile() -> Profile | None:
    profile = _ensure_loaded().profile
    return profile if isinstance(profile, Profile) else None


def _ensure_loaded() -> _Snapshot:
    """The snapshot, after loading the configured profile if nothing was loaded yet (first decision)."""
    snap = _snapshot
    if snap.profile is not _UNLOADED:
        return snap
    with _lock:
        if _snapshot.profile is _UNLOADED:
            load_profile(None)
        return _snapshot


# ------------------------------------------------------------------------------------------- decisions


def _resolve(fn: Callable[..., Any]) -> tuple[_Snapshot, _Entry]:
    """Slow path, once per (snapshot, function): work out the threshold and the reason, cache it."""
    snap = _ensure_loaded()
    entry = snap.table.get(fn)
    if entry is None:
        spec, threshold, reason, lane = _entry_for(snap, fn)
        if lane is None and threshold is not None and snap.installed:  # its executor was dropped: nowhere to go
            threshold, reason = None, f"{reason}; no executor left for it: inline"
        entry = (spec, threshold, reason, stats_for(fn), lane)
        if entry[0] is not None:  # registered kernels only: a stream of lambdas must not grow the table
            snap.table[fn] = entry
    return snap, entry


def _entry_for(snap: _Snapshot, fn: Callable[..., Any]) -> tuple[KernelSpec | None, int | None, str, _Lane | None]:
    spec = spec_for(fn)
    if spec is None:
        return None, None, "not a registered kernel: inline unless offload_if says otherwise", None
    default = spec.default_threshold
    default_text = "inline" if default is None else f"default threshold {default}"
    primary = snap.primary
    profile = snap.profile
    if not isinstance(profile, Profile):
        return spec, default, f"{snap.profile_problem or 'no profile'}: {default_text}", primary
    entry = profile.kernels.get(spec.key)
    if entry is None:
        return spec, default, f"kernel not in profile: {default_text}", primary
    if entry.status != "ok":  # "failed", or "untrusted": too few samples or too narrow a range to trust
        return spec, default, f"calibration {entry.status} for this kernel: {default_text}", primary
    if entry.code_fingerprint is not None and entry.code_fingerprint != spec.code_fingerprint():
        _warn_once(
            f"code:{profile.source}:{spec.key}",
            f"offload-tuner: kernel {spec.key} changed since it was calibrated ({profile.source}); "
            "using its default until it is calibrated again",
        )
        return spec, default, f"kernel code changed since calibration: {default_text}", primary
    thread = entry.thread
    if (
        snap.gil_free is not None
        and thread is not None
        and thread.threshold is not None
        and (thread.gil_hold <= GIL_RELEASING_MAX)
    ):
        process_lane = snap.lanes.get(profile.executor_kind or PRIMARY_ORDER[0])
        return (
            spec,
            thread.threshold,
            (f"{_THREAD_LANE} (calibration measured the event loop held up {thread.gil_hold:.0%} of its run time)"),
            _placed(snap, profile, spec, entry, process_lane, thread_lane=snap.gil_free),
        )
    kind = profile.executor_kind
    lane = snap.lanes.get(kind) if kind is not None else primary
    if lane is None and DASK.name in snap.lanes and profile.cluster is not None and kind not in snap.dropped:
        lane = _placed(snap, profile, spec, entry, None)  # only a cluster: it takes the offloaded calls
        if lane is not None:
            return spec, entry.threshold, _FROM_PROFILE if entry.threshold is not None else _NEVER_PAYS, lane
    if lane is None and (kind in snap.dropped or (kind is None and snap.primary_name in snap.dropped)):
        return spec, None, f"the {kind or snap.primary_name} executor failed and was dropped: inline", None
    if snap.installed and lane is None:
        installed = ", ".join(repr(name) for name in snap.lanes)
        _warn_once(
            f"kind:{profile.source}:{installed}",
            f"offload-tuner: profile {profile.source} was calibrated for a {kind!r} executor, the installed "
            f"{'ones are' if len(snap.lanes) > 1 else 'one is'} {installed}; kernels use their defaults",
        )
        return (
            spec,
            default if primary is not None else None,
            (f"profile calibrated for {kind} executor: {default_text if primary is not None else 'inline'}"),
            primary,
        )
    adapted = _adapted[1].get(spec.key) if _adapted[0] is profile else None
    if adapted is not None:
        return spec, adapted[0], adapted[1], _placed(snap, profile, spec, entry, lane)
    if entry.threshold is None:
        return spec, None, _NEVER_PAYS, lane
    return spec, entry.threshold, _FROM_PROFILE, _placed(snap, profile, spec, entry, lane)


_placement_on = True
"""Placement by expected completion; off, each kernel keeps its static lane (benchmarks compare the two)."""


def set_placement(on: bool) -> bool:
    """Placement by expected completion on or off (on by default); returns the previous setting. Off, a kernel's
    offloaded calls go to its static lane (the thread pool for a GIL-releasing kernel, else the process pool), and
    to a Dask cluster only when it is the one executor installed. For comparisons, not a production knob."""
    global _snapshot, _placement_on
    with _lock:
        previous, _placement_on = _placement_on, bool(on)
        current = _snapshot
        _snapshot = _Snapshot(
            current.profile, current.profile_problem, current.executors, current.primary_name, current.dropped, current
        )
    return previous


def _placed(
    snap: _Snapshot,
    profile: Profile,
    spec: KernelSpec,
    entry: Any,
    lane: _Lane | None,
    *,
    thread_lane: _Lane | None = None,
) -> _Lane | _Placer | None:
    """Where the kernel's offloaded calls go when several offload backends are installed: placed per call by
    expected completion (:mod:`_placement`) among its thread lane (``thread_lane``: it releases the GIL), the
    process pool (``lane``) and a Dask cluster calibration measured for it, each scored by the call's predicted
    latency there, the backend's queue, and the loop-thread time it blocks charged once per other caller (that
    time delays each of them). With one backend, or placement off, the static lane."""
    global _placers
    cluster_lane = snap.lanes.get(DASK.name)
    if not _placement_on or (cluster_lane is None and (thread_lane is None or lane is None)):
        return thread_lane or lane
    cached_for, cache = _placers  # one read: another thread may swap it meanwhile
    if cached_for is not profile:
        cache = {}
        _placers = (profile, cache)
    key = (spec.key, thread_lane, lane, cluster_lane)  # lanes by identity: carried across snapshots while installed
    placer = cache.get(key, _UNLOADED)
    if placer is _UNLOADED:
        placer = cache[key] = _build_placer(profile, spec, entry, lane, thread_lane, cluster_lane)
    return placer  # type: ignore[return-value]


_placers: tuple[object, dict[tuple, _Lane | _Placer | None]] = (None, {})
"""What :func:`_placed` built for the installed profile, by kernel and lanes: the snapshot swaps of adaptation
steps find the same lanes and reuse the placer instead of building its tables again. Emptied when the executors
change (set_executors, a pool rebuilt or dropped, a cluster back), so no entry keeps an old executor alive."""


def _build_placer(
    profile: Profile,
    spec: KernelSpec,
    entry: Any,
    lane: _Lane | None,
    thread_lane: _Lane | None,
    cluster_lane: _Lane | None,
) -> _Lane | _Placer | None:
    try:
        costs = isolated(KernelCosts.from_json(entry.data["costs"]))
        knobs = PolicyKnobs.from_json(profile.data.get("policy", {}))
        local = TransportModel.from_json(profile.data["transport"]["model"])
    except Exception:  # an entry without usable models (hand-written, older): the static lane
        return thread_lane or lane
    charge = max(0, knobs.concurrency - 1)
    candidates = []
    if thread_lane is not None:
        hand_off = profile.data.get("thread", {}).get("fixed_s") or 0.0
        table = thread_table(costs, hand_off, entry.thread.gil_hold)
        candidates.append(_candidate(thread_lane, table, charge, _slots(thread_lane, knobs.workers)))
    if lane is not None and lane.backend is THREAD and thread_lane is None:
        return lane  # a profile calibrated for a thread pool: its costs include no pickling to compare with
    if lane is not None and lane is not cluster_lane and lane is not thread_lane:
        candidates.append(_candidate(lane, lane_table(costs, local, knobs), charge, _slots(lane, knobs.workers)))
    if cluster_lane is not None:
        ratio = _cluster_ratio(profile, spec, cluster_lane)
        if ratio is not None:
            table = lane_table(cluster_costs(costs, ratio), profile.cluster.transport, knobs)  # type: ignore[union-attr]
            candidates.append(_candidate(cluster_lane, table, charge, profile.cluster.threads))  # type: ignore[union-attr]
    if not candidates:
        return thread_lane or lane
    return _Placer(tuple(candidates), knobs.cores)


def _candidate(lane: _Lane, table: Any, charge: int, slots: int) -> tuple:
    """(lane, score, work, slots, latency, loop, local) per size bucket; a cluster's workers are not this host's."""
    score = tuple(latency + charge * loop for latency, loop in zip(table.latency_s, table.loop_s))
    return (lane, score, table.work_s, slots, table.latency_s, table.loop_s, lane.backend is not DASK)


def _slots(lane: _Lane, default: int) -> int:
    workers = getattr(lane.executor, "_max_workers", None)
    return workers if isinstance(workers, int) and workers > 0 else default


def _cluster_ratio(profile: Profile, spec: KernelSpec, cluster_lane: _Lane) -> float | None:
    """The kernel's compute ratio on the installed cluster, if the profile measured this very cluster (one warning
    otherwise)."""
    cluster = profile.cluster
    if cluster is None:
        _warn_once(
            f"cluster-uncalibrated:{profile.source}",
            f"offload-tuner: a Dask cluster is installed but {profile.source} holds no measurements of one; "
            "kernels stay local (run `offload-tuner calibrate --dask ADDRESS`)",
        )
        return None
    from offload_tuner.runtime._dask import cluster_address

    address = cluster_address(cluster_lane.executor)
    if address != cluster.address:
        _warn_once(
            f"cluster-other:{profile.source}:{address}",
            f"offload-tuner: {profile.source} measured the Dask cluster at {cluster.address}, the installed one "
            f"is at {address}; kernels stay local (calibrate with --dask {address})",
        )
        return None
    return cluster.ratios.get(spec.key)


def _trusted(reason: str) -> bool:
    """Whether an entry with this reason is the profile's process-lane threshold (not a fallback): what the
    statistics' models, drift, exploration and adaptation work with."""
    return reason in (_FROM_PROFILE, _NEVER_PAYS) or reason.startswith(_ADAPTED)


def _from_profile(reason: str) -> bool:
    """Whether the profile decides calls with this reason: a trusted entry or the thread lane."""
    return _trusted(reason) or reason.startswith(_THREAD_LANE)


def profile_decides(fn: Callable[..., Any]) -> bool:
    """Whether the installed profile decides ``fn``'s calls (a trusted entry, not a fallback)."""
    return _trusted(_resolve(fn)[1][2])


def install_adapted(profile: Profile, table: dict[str, tuple[int | None, str]]) -> None:
    """Online adaptation's thresholds (kernel key -> threshold, reason) for ``profile``: installed by swapping
    the snapshot, so the hot path keeps reading one table. Ignored if another profile is installed by now."""
    global _snapshot, _adapted
    with _lock:
        _adapted = (profile, dict(table))
        current = _snapshot
        if current.profile is profile:
            _snapshot = _Snapshot(
                current.profile,
                current.profile_problem,
                current.executors,
                current.primary_name,
                current.dropped,
                current,
            )


def _note_caller_decision(snap: _Snapshot, fn: Callable[..., Any]) -> None:
    """First caller-decided call of ``fn`` under this snapshot: if a trusted profile entry would have decided
    instead, say so once per kernel. Loads the configured profile only if its file exists: with no profile
    there is nothing to override, and a caller who decides everything is not told to calibrate."""
    if spec_for(fn) is None:  # not a kernel: no profile entry to override (and a lambda per call must not pile up)
        return
    snap.caller_decided.add(fn)
    if snap.profile is _UNLOADED and not configured_profile_path().is_file():
        return
    snap, (spec, threshold, reason, _, _) = _resolve(fn)
    if spec is None or not _from_profile(reason):
        return
    verdict = "offloading never pays" if threshold is None else f"threshold {threshold}"
    source = snap.profile.source if isinstance(snap.profile, Profile) else "the profile"
    _warn_once(
        f"override:{spec.key}",
        f"offload-tuner: calls to {spec.key} pass offload_if=, which overrides its calibrated profile entry "
        f"({verdict}, {source}); drop offload_if= at those call sites to let the profile decide, "
        "or filter ProfileOverriddenWarning if the override is deliberate (said once per kernel)",
        ProfileOverriddenWarning,
        stacklevel=5,  # _warn_once, this, _offload_target, run_kernel(_sync), the caller
    )


def decide(fn: Callable[..., Any], *args: Any, offload_if: bool | None = None) -> Decision:
    """Where ``run_kernel(fn, *args, offload_if=...)`` would run this call, and why."""
    snap, (spec, threshold, reason, _, lane) = _resolve(fn)
    key = spec.key if spec is not None else None
    size = spec.checked_size(args) if spec is not None else None
    if not snap.installed:
        return Decision(False, INLINE.name, size, threshold, "no executor installed: inline", key)
    if offload_if is not None:
        offload = bool(offload_if)
        why = f"caller: offload_if={offload}"
        if _from_profile(reason) and size is not None:
            would = (
                "offloading never pays"
                if threshold is None
                else (f"size {size} {'>=' if size >= threshold else '<'} threshold {threshold}")
            )
            why += f", overriding the profile ({would})"
        lane = snap.primary
        if offload and lane is None:
            offload, why = False, f"{why}; the {snap.primary_name} executor was dropped after it failed: inline"
    elif threshold is None or size is None:
        offload, why = False, reason
    else:
        offload = size >= threshold
        relation = ">=" if offload else "<"
        why = f"{reason}: size {size} {relation} threshold {threshold}"
    if offload and lane.__class__ is _Placer and size is not None:
        lane_placer: _Placer = lane  # type: ignore[assignment]
        rows = lane_placer.completions(size)
        lane = min(rows, key=_first)[1]
        why += f"; placed on {lane.name}, the soonest by expected completion: " + lane_placer.describe(size)
    if offload and lane is not None and lane.backend is THREAD and getattr(_in_thread_lane, "active", False):
        offload, why = False, f"{why}; called from a kernel running in the thread pool: inline (see run_kernel)"
    return Decision(
        offload, lane.backend.name if offload and lane is not None else INLINE.name, size, threshold, why, key
    )


def _offload_target(fn: Callable[..., Any], args: tuple, offload_if: bool | None) -> _Lane | Timed | None:
    """The hot path shared by run_kernel and its twin: the lane to offload to, None for inline, or a
    :class:`Timed` for a call picked for timing. Counts every call of a registered kernel that the profile
    decides (:mod:`_stats`), and those run with no executor (without loading a profile for them). Written out
    in one function: each Python call here costs about as much as the counting itself."""
    snap = _snapshot
    if offload_if is not None and snap.installed:
        # The caller decided, as the old gate did: no size is needed, none is counted (the statistics are of
        # the calls the profile decides; dropping offload_if is what retune and drift then help with).
        if fn not in snap.caller_decided:
            _note_caller_decision(snap, fn)
        return snap.primary if offload_if else None
    if not snap.installed:  # everything inline; still counted: the mix is worth knowing before offloading
        offload, threshold, lane = False, None, None
        stats = _stats_by_fn.get(fn)
        if stats is None:
            stats = stats_for(fn)
            if stats is None:  # not a registered kernel
                return None
        n = _size_or_none(stats.spec, args)  # the size only feeds the statistics here
        if n is None:
            return None
    else:
        entry = snap.table.get(fn)
        if entry is None:
            snap, entry = _resolve(fn)  # a lazy load may swap the snapshot
            if not snap.installed:  # set_executor(None) raced this first call: inline, as it now says
                return None
        spec, threshold, reason, stats, lane = entry
        if stats is None:  # not a registered kernel: no threshold, inline
            return None
        if threshold is None:  # as above
            n = _size_or_none(spec, args)  # type: ignore[arg-type]
            if n is None:
                return None
            offload = False
        else:
            size = stats.size
            if size is None:  # the default size, len(args[0]), without a Python call
                try:
                    n = len(args[0])
                except Exception:  # no argument, no len(), a __len__ that raises: the error names the kernel
                    n = spec.checked_size(args)  # type: ignore[union-attr]
            else:
                n = size(*args)
                if type(n) is not int or n < 0:
                    n = spec.checked_size(args)  # type: ignore[union-attr]  # raises a clear error for junk
            offload = n >= threshold
    counts = stats.offload if offload else stats.inline
    b = n.bit_length()
    try:
        c = counts[b] + 1
    except IndexError:  # a size of 2**64 or more: the top bucket
        b = BUCKETS - 1
        c = counts[b] + 1
    counts[b] = c
    if c & _sample_mask != _sample_phase:
        if not offload:
            return None
        return lane if lane.__class__ is not _Placer else lane.place(n)  # type: ignore[union-attr]
    if (
        c & _explore_mask == _explore_phase
        and threshold is not None
        and lane is not None
        and (threshold >> EXPLORE_NEAR_SHIFT <= n < threshold << EXPLORE_NEAR_SHIFT)
        and _trusted(reason)
    ):
        # Adapting: this timed call near the threshold runs the other way, so both sides stay measured. It
        # stays counted under the decision (the counts advance, so the next call is not picked again).
        offload = not offload
        stats.explored += 1
    if offload and lane.__class__ is _Placer:
        return Timed(lane.place(n), stats, n)  # type: ignore[union-attr]
    return Timed(lane if offload else None, stats, n)


def _size_or_none(spec: KernelSpec, args: tuple) -> int | None:
    """The size for statistics only: None when size() fails or returns junk (a call that does not depend on
    its size must not fail on it)."""
    try:
        n = spec.size(*args)
    except Exception:
        return None
    return n if type(n) is int and n >= 0 else None


_sample_mask, _sample_phase = _stats.sampling(_stats._sample_every)
_explore_mask, _explore_phase = 0, -1
"""Exploration's bit test (:func:`_stats.exploration`); the phase -1 matches no call: off unless adapting."""
_exploring = False


def set_exploration(on: bool) -> None:
    """Online adaptation's exploration on or off (:mod:`_adapt`)."""
    global _exploring, _explore_mask, _explore_phase
    _exploring = on
    _explore_mask, _explore_phase = _stats.exploration(_stats._sample_every) if on else (0, -1)


def sample_every(every: int | None = None) -> int:
    """Time one call in ``every`` of each kernel, size bucket and decision (rounded down to a power of two;
    0: time none, counting goes on). Returns the previous value; with no argument, the current one."""
    global _sample_mask, _sample_phase
    previous = _stats._sample_every
    if every is None:
        return previous
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"sample_every() needs an int >= 0, got {every!r}")
    _stats._sample_every = _stats.power_of_two_at_most(every)
    _sample_mask, _sample_phase = _stats.sampling(_stats._sample_every)
    set_exploration(_exploring)
    return previous


# --------------------------------------------------------------------------------------------- running


async def run_kernel(
    fn: Callable[..., Any], *args: Any, offload_if: bool | None = None, timeout: float | None = None
) -> Any:
    """Run ``fn(*args)`` inline or on the installed executor and return its result.

    ``offload_if=True``/``False`` is the caller's word and stands (the old boolean gate). ``None`` lets
    the installed profile decide from the kernel's input size. No executor installed: inline. Unknown
    kernel or no usable profile: the kernel's ``default_threshold`` (``None`` = inline).

    ``timeout`` (seconds) bounds the wait for an offloaded call and raises :class:`TimeoutError`; the
    worker cannot be stopped mid-call, so it finishes and its result is dropped. Inline calls are plain
    function calls and are not bounded.

    Never loses work: arguments that cannot be pickled, a result that cannot be pickled, an executor that
    is broken (a worker was killed), shut down, or cancelled the call all make the pure kernel run inline,
    with one warning per cause.
    """
    target = _offload_target(fn, args, offload_if)
    if target is None:
        return fn(*args)
    if target.__class__ is _Lane:
        return await _offload(target, fn, args, timeout)  # type: ignore[arg-type]
    if target.__class__ is _Placed:
        return await _offload_placed(target, fn, args, timeout)  # type: ignore[arg-type]
    return await _timed(target, fn, args, timeout)  # type: ignore[arg-type]


async def _timed(call: Timed, fn: Callable[..., Any], args: tuple, timeout: float | None) -> Any:
    """A call picked for timing (one in ``sample_every``): run it as decided and record what it cost."""
    if call.lane is None:
        return _inline_timed(call, fn, args)
    if call.lane.__class__ is _Placed:
        return await _offload_placed(call.lane, fn, args, timeout, call)
    return await _offload(call.lane, fn, args, timeout, call if call.lane.modelled else None)


async def _offload_placed(
    placed: _Placed, fn: Callable[..., Any], args: tuple, timeout: float | None, call: Timed | None = None
) -> Any:
    """A call placement sent to a lane: counted in that lane's backlog until it completes."""
    with placed as lane:
        if lane.backend is DASK:
            return await _offload_cluster(lane, fn, args, timeout, placed.guard or CLUSTER_GUARD_FLOOR_S)
        return await _offload(lane, fn, args, timeout, call if lane.modelled else None)


def _enter(lane: _Lane, work: float) -> None:
    """A placed call joins its lane's backlog. Under the lane's lock: the synchronous twin may run in several
    threads beside the event loop, and a lost update would leave the count off for good."""
    with lane.lock:
        lane.inflight += 1
        lane.work += work


def _settle(lane: _Lane, work: float) -> None:
    """A placed call completed: out of its lane's backlog; an idle lane's backlog is exactly zero again."""
    with lane.lock:
        lane.inflight -= 1
        if lane.inflight > 0:
            lane.work -= work
        else:
            lane.inflight, lane.work = 0, 0.0


def _guard_message(guard: float) -> str:
    return (
        f"no result within {guard:.1f} s ({CLUSTER_GUARD_FACTOR:g}x its expected completion "
        f"+ {CLUSTER_GUARD_FLOOR_S:g} s)"
    )


def _left(timeout: float | None, started: float) -> float | None:
    """What is left of the caller's ``timeout`` for a local re-run: the caller's bound holds across both tries."""
    return None if timeout is None else max(0.0, timeout - (perf_counter() - started))


async def _offload_cluster(
    lane: _Lane, fn: Callable[..., Any], args: tuple, timeout: float | None, guard: float
) -> Any:
    """A call on the Dask cluster. Whatever the cluster does, the caller gets the kernel's result or the kernel's
    own exception: a cluster that cannot take the call, loses it, or does not answer within ``guard`` seconds is
    dropped (one warning, retried later) and the call is computed locally. The caller's ``timeout`` keeps its
    meaning (:class:`TimeoutError`) and bounds both tries together."""
    import asyncio

    from offload_tuner.runtime._dask import ClusterUnavailable, cluster_ready, is_cluster_failure

    started = perf_counter()
    payload = _payload_or_none(fn, args)
    if payload is None:
        return fn(*args)
    loop = asyncio.get_running_loop()
    limit = guard if timeout is None else min(guard, timeout)
    failure: BaseException | None = None
    future: Any = None
    try:
        if not cluster_ready(lane.executor):  # a lost scheduler: a submit would wait on a dead connection
            raise ClusterUnavailable(f"Dask cluster {lane.name!r} is not connected")
        argument: Any = payload
        if _scatters(payload):  # scatter blocks for a round trip: on helper threads of its own, bounded
            from offload_tuner.runtime._dask import cluster_client, scatter_payload, scatter_pool

            scattering = loop.run_in_executor(
                scatter_pool(), scatter_payload, cluster_client(lane.executor), payload, limit
            )
            done, _ = await asyncio.wait({scattering}, timeout=limit)
            if not done:
                raise ClusterUnavailable(f"scatter did not complete within {limit:.1f} s")
            argument = scattering.result()  # a Dask future: the task below reads the scattered payload
        # Through the executor, so cancelling the asyncio future cancels the Dask task too.
        future = loop.run_in_executor(lane.executor, invoke_pickled, argument)
        left = max(0.0, limit - (perf_counter() - started))
        # Waited on, not wait_for()'s TimeoutError: a kernel that raises TimeoutError itself must reach the caller.
        done, _ = await asyncio.wait({future}, timeout=left)
        if not done:
            _overran(future, timeout, guard)
        blob = future.result()
    except ResultNotPicklable as exc:
        return _rerun_inline_for_result(fn, args, exc)
    except PayloadNotLoadable as exc:
        return _rerun_inline_for_payload(fn, args, exc)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            if future is not None:
                future.cancel()
            raise  # our caller was cancelled
        failure = exc
    except TimeoutError:
        raise  # the caller's own bound (a cluster's silence is ClusterUnavailable, above)
    except Exception as exc:
        if not is_cluster_failure(exc):
            raise  # the kernel's own exception, re-raised by Dask as itself
        failure = exc
    if failure is not None:  # outside the try: the local re-run's own errors are the kernel's, not the cluster's
        return await _after_cluster_failure(lane, fn, args, _left(timeout, started), failure)
    return pickle.loads(blob)


def _overran(future: Any, timeout: float | None, guard: float) -> NoReturn:
    """A cluster call past its bound, in either calling convention: cancel it (the Dask task too), then raise
    the caller's own ``TimeoutError`` when its timeout was the tighter bound, else the guard's
    ``ClusterUnavailable`` (the cluster is treated as lost)."""
    from offload_tuner.runtime._dask import ClusterUnavailable

    future.cancel()
    if timeout is not None and timeout <= guard:
        raise TimeoutError(f"offloaded call did not complete within {timeout} s")
    raise ClusterUnavailable(_guard_message(guard))


def _scatters(payload: bytes) -> bool:
    """Whether this payload goes to the cluster by scatter (the installed profile measured it cheaper)."""
    profile = _snapshot.profile
    cluster = profile.cluster if isinstance(profile, Profile) else None
    return cluster is not None and cluster.scatter_from_bytes is not None and len(payload) >= cluster.scatter_from_bytes


async def _after_cluster_failure(
    lane: _Lane, fn: Callable[..., Any], args: tuple, timeout: float | None, exc: BaseException
) -> Any:
    """Drop the cluster (retried later) and compute the call locally: on the process pool if one is installed
    (the call was worth offloading), else inline."""
    _drop_lane(lane, exc)
    local = _snapshot.lanes.get(PRIMARY_ORDER[0])
    if local is None or local.backend is DASK:
        return fn(*args)
    return await _offload(local, fn, args, timeout)


def _inline_timed(call: Timed, fn: Callable[..., Any], args: tuple) -> Any:
    started = perf_counter()
    result = fn(*args)
    if call.stats.record("inline", call.n, perf_counter() - started):
        _check_drift(call.stats)
    return result


def run_kernel_sync(
    fn: Callable[..., Any], *args: Any, offload_if: bool | None = None, timeout: float | None = None
) -> Any:
    """The synchronous twin of :func:`run_kernel` for code without an event loop (blocks the caller)."""
    target = _offload_target(fn, args, offload_if)
    if target is None:
        return fn(*args)
    call: Timed | None = None
    if target.__class__ is _Lane:
        lane: _Lane = target  # type: ignore[assignment]
    elif target.__class__ is _Placed:
        return _offload_placed_sync(target, fn, args, timeout)  # type: ignore[arg-type]
    else:
        call = target  # type: ignore[assignment]
        if call.lane is None:
            return _inline_timed(call, fn, args)
        if call.lane.__class__ is _Placed:
            return _offload_placed_sync(call.lane, fn, args, timeout, call)
        lane = call.lane
        if not lane.modelled:
            call = None
    return _offload_sync(lane, fn, args, timeout, call)


def _offload_placed_sync(
    placed: _Placed, fn: Callable[..., Any], args: tuple, timeout: float | None, call: Timed | None = None
) -> Any:
    """:func:`_offload_placed` for the synchronous twin."""
    with placed as lane:
        if lane.backend is DASK:
            return _offload_cluster_sync(lane, fn, args, timeout, placed.guard or CLUSTER_GUARD_FLOOR_S)
        return _offload_sync(lane, fn, args, timeout, call if lane.modelled else None)


def _offload_cluster_sync(lane: _Lane, fn: Callable[..., Any], args: tuple, timeout: float | None, guard: float) -> Any:
    """:func:`_offload_cluster` for the synchronous twin."""
    from concurrent.futures import CancelledError
    from concurrent.futures import wait as wait_futures

    from offload_tuner.runtime._dask import ClusterUnavailable, cluster_ready, is_cluster_failure

    started = perf_counter()
    payload = _payload_or_none(fn, args)
    if payload is None:
        return fn(*args)
    limit = guard if timeout is None else min(guard, timeout)
    failure: BaseException | None = None
    future: Any = None
    try:
        if not cluster_ready(lane.executor):
            raise ClusterUnavailable(f"Dask cluster {lane.name!r} is not connected")
        argument: Any = payload
        if _scatters(payload):
            from offload_tuner.runtime._dask import cluster_client, scatter_payload, scatter_pool

            scattering = scatter_pool().submit(scatter_payload, cluster_client(lane.executor), payload, limit)
            if not wait_futures([scattering], timeout=limit).done:
                raise ClusterUnavailable(f"scatter did not complete within {limit:.1f} s")
            argument = scattering.result()
        future = lane.executor.submit(invoke_pickled, argument)
        left = max(0.0, limit - (perf_counter() - started))
        if not wait_futures([future], timeout=left).done:
            _overran(future, timeout, guard)
        blob = future.result()
    except ResultNotPicklable as exc:
        return _rerun_inline_for_result(fn, args, exc)
    except PayloadNotLoadable as exc:
        return _rerun_inline_for_payload(fn, args, exc)
    except CancelledError as exc:
        failure = exc
    except TimeoutError:
        raise
    except BaseException as exc:
        if future is not None and not isinstance(exc, Exception):  # KeyboardInterrupt: free the worker too
            future.cancel()
        if not isinstance(exc, Exception) or not is_cluster_failure(exc):
            raise
        failure = exc
    if failure is not None:
        return _after_cluster_failure_sync(lane, fn, args, _left(timeout, started), failure)
    return pickle.loads(blob)


def _after_cluster_failure_sync(
    lane: _Lane, fn: Callable[..., Any], args: tuple, timeout: float | None, exc: BaseException
) -> Any:
    _drop_lane(lane, exc)
    local = _snapshot.lanes.get(PRIMARY_ORDER[0])
    if local is None or local.backend is DASK:
        return fn(*args)
    return _offload_sync(local, fn, args, timeout, None)


def _offload_sync(lane: _Lane, fn: Callable[..., Any], args: tuple, timeout: float | None, call: Timed | None) -> Any:
    if lane.backend is DASK:  # the cluster as the only or primary executor: the same protection as when placed
        return _offload_cluster_sync(lane, fn, args, timeout, CLUSTER_GUARD_FLOOR_S)
    started = perf_counter()
    executor = lane.executor
    from concurrent.futures import BrokenExecutor, CancelledError

    if lane.backend is THREAD and getattr(_in_thread_lane, "active", False):
        return fn(*args)  # a kernel running in a thread pool calls another: waiting on the same pool could hang
    pickled = lane.backend.pickles_on_caller
    payload = _payload_or_none(fn, args) if pickled else None
    if pickled and payload is None:
        return fn(*args)
    try:
        if pickled:
            future = executor.submit(invoke_pickled, payload)
        elif lane.backend is THREAD:
            future = executor.submit(_run_in_thread_lane, fn, *args)
        else:
            future = executor.submit(fn, *args)
        submitted = perf_counter()
        result = future.result(timeout)
    except ResultNotPicklable as exc:
        return _rerun_inline_for_result(fn, args, exc)
    except PayloadNotLoadable as exc:
        return _rerun_inline_for_payload(fn, args, exc)
    except (BrokenExecutor, CancelledError) as exc:
        return _rerun_inline_after_executor_failure(lane, fn, args, exc)
    except RuntimeError as exc:
        if not _is_shutdown_error(exc):
            raise
        return _rerun_inline_after_executor_failure(lane, fn, args, exc)
    returned = perf_counter()
    value = pickle.loads(result) if pickled else result
    if call is not None:
        _record_offloaded(call, started, submitted, returned)
    return value


def _record_offloaded(call: Timed, started: float, submitted: float, returned: float) -> None:
    """The caller's thread was busy from the start to the submit and from the result to the unpickled value."""
    done = perf_counter()
    due = call.stats.record("loop", call.n, (submitted - started) + (done - returned))
    if call.stats.record("latency", call.n, done - started) or due:
        _check_drift(call.stats)


def _check_drift(stats: KernelStats) -> None:
    """Every ``DRIFT_CHECK_EVERY`` samples of a kernel: if its samples say the profile's model no longer
    describes it (the rule of ``offload-tuner drift``), say so once per kernel. Never fails a call."""
    key = stats.spec.key
    if f"drift:{key}" in _warned:
        return
    profile = _snapshot.profile
    if not isinstance(profile, Profile) or "transport" not in profile.data:
        return
    entry = profile.kernels.get(key)
    if entry is None or entry.status != "ok" or "costs" not in entry.data:
        return
    try:
        from offload_tuner.runtime._retune import drift, traffic_of

        results = drift({**profile.data, "kernels": {key: entry.data}}, {key: traffic_of(stats)})
    except Exception:  # a profile the runtime can use but whose models do not parse: nothing to compare
        return
    drifted = [b for r in results for b in r.drifted]
    if drifted:
        _warn_once(
            f"drift:{key}",
            f"offload-tuner: kernel {key} no longer behaves as calibrated in {profile.source}: "
            f"{drifted[0].sentence()}; run `offload-tuner calibrate` on this host again "
            f"(`offload-tuner drift --stats` shows every size; said once per kernel)",
        )


async def _offload(
    lane: _Lane, fn: Callable[..., Any], args: tuple, timeout: float | None, call: Timed | None = None
) -> Any:
    # Imported here: the inline path must not pay for asyncio or concurrent.futures.
    import asyncio
    from concurrent.futures import BrokenExecutor

    if lane.backend is THREAD and getattr(_in_thread_lane, "active", False):
        return fn(*args)  # see _in_thread_lane
    if lane.backend is DASK:  # the cluster as the only or primary executor: the same protection as when placed
        return await _offload_cluster(lane, fn, args, timeout, CLUSTER_GUARD_FLOOR_S)
    loop = asyncio.get_running_loop()
    started = perf_counter() if call is not None else 0.0
    pickled = lane.backend.pickles_on_caller
    payload = _payload_or_none(fn, args) if pickled else None
    if pickled and payload is None:
        return fn(*args)
    try:
        if pickled:
            future = loop.run_in_executor(lane.executor, invoke_pickled, payload)
        elif lane.backend is THREAD:
            future = loop.run_in_executor(lane.executor, _run_in_thread_lane, fn, *args)
        else:
            future = loop.run_in_executor(lane.executor, fn, *args)
        submitted = perf_counter() if call is not None else 0.0
        result = await (future if timeout is None else asyncio.wait_for(future, timeout))
    except ResultNotPicklable as exc:
        return _rerun_inline_for_result(fn, args, exc)
    except PayloadNotLoadable as exc:
        return _rerun_inline_for_payload(fn, args, exc)
    except BrokenExecutor as exc:
        return _rerun_inline_after_executor_failure(lane, fn, args, exc)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # our caller was cancelled: propagate, nothing to clean up
        return _rerun_inline_after_executor_failure(lane, fn, args, exc)  # the executor dropped the call
    except RuntimeError as exc:
        if not _is_shutdown_error(exc):
            raise
        return _rerun_inline_after_executor_failure(lane, fn, args, exc)
    if call is None:
        return pickle.loads(result) if pickled else result
    returned = perf_counter()
    value = pickle.loads(result) if pickled else result
    _record_offloaded(call, started, submitted, returned)
    return value


_in_thread_lane = threading.local()
"""``active`` is True while a thread pool's thread runs a kernel for us: a kernel that calls ``run_kernel_sync``
on another from there, for a thread pool, runs it inline instead of waiting on the pool it occupies (every
thread busy waiting would never end); ``decide()`` says so. A call for a process pool goes there as usual
(waiting on it cannot deadlock the threads). Such a nested call is counted under the decision it replaced."""


def _run_in_thread_lane(fn: Callable[..., Any], *args: Any) -> Any:
    _in_thread_lane.active = True
    try:
        return fn(*args)
    finally:
        _in_thread_lane.active = False


def _is_shutdown_error(exc: RuntimeError) -> bool:
    return "shutdown" in str(exc) or "interpreter" in str(exc)


def _rerun_inline_after_executor_failure(lane: _Lane, fn: Callable[..., Any], args: tuple, exc: BaseException) -> Any:
    """The executor lost the call: run the (pure) kernel inline and stop sending work to that executor. The
    other installed executors are left alone (a broken process pool does not stop the thread pool)."""
    _drop_lane(lane, exc)
    return fn(*args)


def _drop_lane(lane: _Lane, exc: BaseException) -> None:
    """Stop sending work to a failed executor: a pool we built is rebuilt, the user's is dropped (a cluster is
    tried again every :func:`_dask.retry_delay` seconds), one warning either way."""
    global _snapshot, _placers
    executor = lane.executor
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    with _lock:
        current = _snapshot
        if current.executors.get(lane.name) is executor:
            replacement = None if lane.backend is DASK else _rebuild(executor)
            executors, dropped = dict(current.executors), current.dropped
            if replacement is None:
                del executors[lane.name]
                dropped = dropped | {lane.name}
            else:
                executors[lane.name] = replacement
            _snapshot = _Snapshot(
                current.profile, current.profile_problem, executors, current.primary_name, dropped, current
            )
            _placers = (None, {})
            after = (
                "a new pool of the same shape is installed"
                if replacement
                else (
                    "the calls it would have run run inline until set_executor() or set_executors() installs a "
                    "working executor"
                    + (f" (the other executors stay: {', '.join(map(repr, executors))})" if executors else "")
                )
            )
            if lane.backend is DASK:
                from offload_tuner.runtime._dask import retry_delay

                delay = retry_delay(executor)
                after = f"its calls run locally; it is tried again every {delay:g} s until it answers (said once)"
                _retry_cluster_later(lane.name, executor, delay)
            _warn_once(
                f"executor:{id(executor)}",
                f"offload-tuner: the {lane.name} executor failed ({what}); the call was re-run locally and {after}",
            )


def _retry_cluster_later(name: str, executor: Executor, delay: float) -> None:
    timer = threading.Timer(delay, _retry_cluster, (name, executor, delay))
    timer.daemon = True
    timer.start()


def _retry_cluster(name: str, executor: Executor, delay: float) -> None:
    """Put a dropped cluster back once it answers again; give up if the user installed other executors since."""
    global _snapshot, _placers
    from offload_tuner.runtime._dask import cluster_closed, cluster_ready

    with _lock:
        current = _snapshot
        if name not in current.dropped or name in current.executors or cluster_closed(executor):
            return
        if not cluster_ready(executor):
            _retry_cluster_later(name, executor, delay)
            return
        executors = {**current.executors, name: executor}
        _snapshot = _Snapshot(
            current.profile, current.profile_problem, executors, current.primary_name, current.dropped - {name}, current
        )
        _placers = (None, {})


def _rebuild(executor: Executor) -> Executor | None:
    """A fresh pool for one that :func:`recommended_pool` built (we know its shape); None otherwise."""
    shape = getattr(executor, "_offload_tuner_shape", None)
    if shape is None:
        return None  # the user's executor: stop using it, but leave its lifecycle to them
    try:
        executor.shutdown(wait=False, cancel_futures=True)
    except Exception:  # a broken pool may complain on shutdown; it is being dropped either way
        pass
    from offload_tuner.runtime._backends import recommended_pool

    return recommended_pool(**shape)


def _payload_or_none(fn: Callable[..., Any], args: tuple) -> bytes | None:
    try:
        return dumps_call(fn, args)
    except Exception as exc:  # TypeError, AttributeError, PicklingError, RecursionError...
        name = getattr(fn, "__qualname__", repr(fn))
        _warn_once(
            f"unpicklable-args:{name}",
            f"offload-tuner: arguments of {name} cannot be pickled ({type(exc).__name__}: {exc}); "
            "running such calls inline",
        )
        return None


def _rerun_inline_for_payload(fn: Callable[..., Any], args: tuple, exc: Exception) -> Any:
    """The worker could not load the call (its environment lacks the kernel's module, or a class of an argument):
    not the kernel's error. The kernel runs here instead, and such calls are said once."""
    name = getattr(fn, "__qualname__", repr(fn))
    _warn_once(
        f"unloadable-payload:{name}",
        f"offload-tuner: a worker could not load a call of {name} ({exc}); the call ran inline (said once: the "
        "workers' environment should import what the kernel and its arguments need)",
    )
    return fn(*args)


def _rerun_inline_for_result(fn: Callable[..., Any], args: tuple, exc: Exception) -> Any:
    name = getattr(fn, "__qualname__", repr(fn))
    _warn_once(
        f"unpicklable-result:{name}",
        f"offload-tuner: the result of {name} cannot be pickled ({exc}); re-running such calls inline",
    )
    return fn(*args)
