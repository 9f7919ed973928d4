"""The runtime's process-wide state: one immutable :class:`Snapshot` (profile + installed executors as lanes +
per-function decision table), swapped by reference.

Installing a profile or an executor swaps the reference; a call in flight keeps the snapshot it started with, so
every decision is made from one consistent profile. Failed executors are dropped (or rebuilt) here too: that is
a swap like any other. Nothing here decides or runs a call.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from offload_tuner.runtime import _log, _shm
from offload_tuner.runtime._backends import (
    DASK,
    INLINE,
    THREAD,
    Backend,
    backend_for,
    configured_processes,
    recommended_pool,
)
from offload_tuner.runtime._host import configured_profile_path, describe_mode, host_check_mode, host_mismatches
from offload_tuner.runtime._lanes import Lane
from offload_tuner.runtime._profile import Profile, ProfileError, read_profile
from offload_tuner.runtime._warn import warn_once

if TYPE_CHECKING:
    from concurrent.futures import Executor


class _Unloaded:
    """No profile was loaded yet: the first decision loads the configured one."""

    def __repr__(self) -> str:
        return "UNLOADED"


UNLOADED: Final = _Unloaded()

PRIMARY_ORDER: Final = ("process",)
"""With several executors installed, caller-decided calls (``offload_if=True``) and kernels the profile does not
send elsewhere go to the first of these that is installed, else to the first executor installed."""


class Adapted(NamedTuple):
    """Online adaptation's thresholds and reasons by kernel key, for the profile it worked from."""

    profile: Profile | None
    thresholds: Mapping[str, tuple[int | None, str]]


NOT_ADAPTED: Final = Adapted(None, {})


class Snapshot:
    """Everything a decision reads, consistent with itself. Built by :func:`swap` from the previous one:
    lanes (and their backlog) are carried while their executor stays installed, the placers while the profile
    and the executors stay, the adapted thresholds while the profile stays."""

    __slots__ = (
        "adapted",
        "backend",
        "caller_decided",
        "dropped",
        "executor",
        "executors",
        "gil_free",
        "installed",
        "lanes",
        "placers",
        "primary",
        "primary_name",
        "profile",
        "profile_problem",
        "table",
    )

    def __init__(
        self,
        *,
        profile: Profile | _Unloaded | None,
        profile_problem: str | None,
        executors: Mapping[str, Executor],
        primary_name: str | None = None,
        dropped: frozenset[str] = frozenset(),
        adapted: Adapted = NOT_ADAPTED,
        previous: Snapshot | None = None,
    ) -> None:
        self.profile = profile
        self.profile_problem = profile_problem
        self.executors: dict[str, Executor] = dict(executors)
        kept: dict[str, Lane] = previous.lanes if previous is not None else {}
        self.lanes: dict[str, Lane] = {
            name: kept[name] if name in kept and kept[name].executor is executor else Lane(name, executor)
            for name, executor in self.executors.items()
        }
        self.installed = bool(self.lanes)
        if primary_name is None:
            primary_name = next((name for name in PRIMARY_ORDER if name in self.lanes), next(iter(self.lanes), None))
        self.primary_name = primary_name
        """Where caller-decided calls go. Kept when that executor fails and is dropped: its calls then run
        inline, never on another executor (a kernel holding the GIL must not land on the thread pool)."""
        self.primary: Lane | None = self.lanes.get(primary_name) if primary_name is not None else None
        self.dropped = dropped
        """Executors dropped after they failed, until set_executor(s) is called: the primary's calls and the
        kernels profiled for a dropped process pool run inline; thread-lane kernels of a dropped thread pool
        fall back to their process threshold."""
        self.gil_free = _thread_lane(self.executors.get(THREAD.name), previous)
        """The thread lane for kernels the profile sends there because they release the GIL."""
        self.executor = self.primary.executor if self.primary is not None else None
        """The primary executor (``get_executor()``); None with no executor installed, or its lane dropped."""
        self.backend: Backend = self.primary.backend if self.primary is not None else INLINE
        self.adapted = adapted if adapted.profile is profile else NOT_ADAPTED
        same = previous is not None and previous.profile is profile and previous.executors == self.executors
        self.placers: dict[Any, Any] = previous.placers if same and previous is not None else {}
        """What placement built for this profile and these executors, by kernel and lanes (:mod:`_placer`): the
        swaps of adaptation steps reuse it; a change of executors lets it go, so no entry keeps an old one alive."""
        self.table: dict[Callable[..., Any], Any] = {}
        """Per function, its resolved entry (:mod:`_decision`); filled lazily, once per snapshot."""
        self.caller_decided: set[Callable[..., Any]] = set()
        """Functions whose caller-decided calls were checked against this snapshot's profile."""


def _thread_lane(thread: Executor | None, previous: Snapshot | None) -> Lane | None:
    if thread is None:
        return None
    kept = previous.gil_free if previous is not None else None
    return kept if kept is not None and kept.executor is thread else Lane(THREAD.name, thread, modelled=False)


_snapshot = Snapshot(profile=UNLOADED, profile_problem=None, executors={})
_lock = threading.RLock()


def current() -> Snapshot:
    """The snapshot in force (one read of a module global: what the hot path does inline)."""
    return _snapshot


def swap(**changes: Any) -> Snapshot:
    """Install a snapshot made from the current one with ``changes`` (keyword arguments of :class:`Snapshot`)."""
    global _snapshot
    with _lock:
        old = _snapshot
        fields: dict[str, Any] = {
            "profile": old.profile,
            "profile_problem": old.profile_problem,
            "executors": old.executors,
            "primary_name": old.primary_name,
            "dropped": old.dropped,
            "adapted": old.adapted,
        }
        fields.update(changes)
        _snapshot = Snapshot(**fields, previous=old)
        return _snapshot


def set_executor(executor: Executor | None) -> None:
    """Install the executor offloaded calls go to (``None``: everything runs inline); replaces every executor
    installed before (see :func:`set_executors` for several). Installing the very executor installed now changes
    nothing (cheap: a service may call this per request)."""
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(f"set_executor() needs a concurrent.futures-style executor, got {type(executor).__name__}")
    install({} if executor is None else {backend_for(executor).name: executor})


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
    install(executors)


def install(executors: Mapping[str, Executor]) -> None:
    """Swap in these executors (and forget which ones were dropped); a no-op when they are installed already,
    none dropped, so the resolved entries, lanes and placers are kept."""
    snap = _snapshot
    if not snap.dropped and _same_executors(snap.executors, executors):
        return
    if "concurrent.futures.process" in sys.modules:  # a process pool may be among them (never imported for one)
        from offload_tuner.runtime._pool_repair import repair

        for executor in executors.values():
            repair(executor)
    swap(executors=executors, primary_name=None, dropped=frozenset())


def _same_executors(installed: Mapping[str, Executor], wanted: Mapping[str, Executor]) -> bool:
    if len(installed) != len(wanted):
        return False
    return all(installed.get(name) is executor for name, executor in wanted.items())


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
    target = configured_profile_path() if path is None else path
    profile: Profile | None = None
    problem: str | None = None
    try:
        profile = read_profile(target)
        if check_host:
            _check_host(profile)
        _check_shape(profile)
    except ProfileError as exc:
        if strict:
            raise
        profile, problem = None, str(exc)
        hint = " (run `offload-tuner calibrate` on this host)" if problem.endswith("no such file") else ""
        warn_once(f"profile:{problem}", f"offload-tuner: profile not used, kernels use their defaults: {problem}{hint}")
    swap(profile=profile, profile_problem=problem)
    _apply_transport(profile)
    kind = profile.executor_kind if profile is not None else None
    _log.profile_event(str(target), problem, kind, len(profile.kernels) if profile is not None else 0)
    return profile


def _apply_transport(profile: Profile | None) -> None:
    """The shared-memory transport's size from the profile's calibration (its default without one)."""
    section = profile.data.get("transport", {}).get("shared_memory") if profile is not None else None
    if isinstance(section, dict) and section.get("source") != "off":
        _shm.apply_calibrated(section.get("min_bytes"))
    else:
        _shm.apply_calibrated(_shm.DEFAULT_MIN_BYTES)


def _check_host(profile: Profile) -> None:
    """Refuse a profile measured on other hardware, naming the fields that differ and the check in force."""
    mode = host_check_mode()
    mismatches = host_mismatches(profile.host, mode=mode)
    if mismatches:
        raise ProfileError(
            f"{profile.source}: calibrated on another host ({'; '.join(mismatches)}; {describe_mode(mode)})"
        )


def _check_shape(profile: Profile) -> None:
    """Say once (per profile and shape) when the profile was calibrated for another number of service processes:
    its thresholds were measured with that many loops and pools sharing the cores. It is still used."""
    recorded = profile.executor.get("processes", 1)
    here = configured_processes()
    if recorded == here:
        return
    warn_once(
        f"shape:{profile.source}:{recorded}:{here}",
        f"offload-tuner: {profile.source} was calibrated for {recorded} service process(es) on this host, and "
        f"this service runs with {here} (OFFLOAD_TUNER_PROCESSES, else WEB_CONCURRENCY, else 1); its thresholds "
        f"assume the other shape. Run `offload-tuner calibrate --processes {here}`, or set "
        f"OFFLOAD_TUNER_PROCESSES={recorded} if that is the real number",
    )


def unload_profile() -> None:
    """Forget the installed profile; the next decision loads the configured one lazily again."""
    swap(profile=UNLOADED, profile_problem=None)


def current_profile() -> Profile | None:
    """The installed profile (loading the configured one first if none was), None if there is no usable one."""
    profile = ensure_loaded().profile
    return profile if isinstance(profile, Profile) else None


def ensure_loaded() -> Snapshot:
    """The snapshot, after loading the configured profile if nothing was loaded yet (first decision)."""
    snap = _snapshot
    if snap.profile is not UNLOADED:
        return snap
    with _lock:
        if _snapshot.profile is UNLOADED:
            load_profile(None)
        return _snapshot


# ------------------------------------------------------------------------------------- failed executors


def drop_lane(lane: Lane, exc: BaseException, kernel: str | None = None) -> bool:
    """Stop sending work to a failed executor: a pool we built is rebuilt, the user's is dropped (a cluster is
    tried again every :func:`_dask.retry_delay` seconds), one warning either way and one record on the
    ``offload_tuner`` logger naming ``kernel`` (the call that met the failure). False: another call did it."""
    executor = lane.executor
    what = _log.describe(exc)
    with _lock:
        current = _snapshot
        if current.executors.get(lane.name) is not executor:
            return False  # dropped or replaced by another call already
        replacement = None if lane.backend is DASK else _rebuild(executor)
        executors, dropped = dict(current.executors), current.dropped
        if replacement is None:
            del executors[lane.name]
            dropped = dropped | {lane.name}
        else:
            executors[lane.name] = replacement
        swap(executors=executors, dropped=dropped)
        if lane.backend is DASK:
            after = _retry_cluster_later(lane.name, executor)
        elif replacement is not None:
            after = "a new pool of the same shape is installed"
        else:
            after = (
                "the calls it would have run run inline until set_executor() or set_executors() installs a "
                "working executor"
                + (f" (the other executors stay: {', '.join(map(repr, executors))})" if executors else "")
            )
        message = f"the {lane.name} executor failed ({what}); the call was re-run locally and {after}"
        warn_once(f"executor:{id(executor)}", f"offload-tuner: {message}")
        event = (
            "cluster_lost" if lane.backend is DASK else "executor_dropped" if replacement is None else "pool_rebuilt"
        )
        _log.event(event, _log.WARNING, message, kernel=kernel, backend=lane.backend.name, reason=what)
        return True


def _retry_cluster_later(name: str, executor: Executor) -> str:
    """Schedule the dropped cluster's retry; returns what the warning says about it."""
    # Imported on use: _dask imports asyncio and concurrent.futures, which a service without a cluster never needs.
    from offload_tuner.runtime._dask import retry_delay

    delay = retry_delay(executor)
    _schedule_retry(name, executor, delay)
    return f"its calls run locally; it is tried again every {delay:g} s until it answers (said once)"


def _schedule_retry(name: str, executor: Executor, delay: float) -> None:
    timer = threading.Timer(delay, _retry_cluster, (name, executor, delay))
    timer.daemon = True
    timer.start()


def _retry_cluster(name: str, executor: Executor, delay: float) -> None:
    """Put a dropped cluster back once it answers again; give up if the user installed other executors since."""
    from offload_tuner.runtime._dask import cluster_closed, cluster_ready  # see _retry_cluster_later

    with _lock:
        current = _snapshot
        if name not in current.dropped or name in current.executors or cluster_closed(executor):
            return
        if not cluster_ready(executor):
            _schedule_retry(name, executor, delay)
            return
        swap(executors={**current.executors, name: executor}, dropped=current.dropped - {name})
        _log.event("cluster_recovered", _log.INFO, f"the {name} executor answers again: back in use", kernel=None,
                   backend=name, reason="connected again")  # fmt: skip


def _rebuild(executor: Executor) -> Executor | None:
    """A fresh pool for one that :func:`recommended_pool` built (we know its shape); None otherwise."""
    shape = getattr(executor, "_offload_tuner_shape", None)
    if shape is None:
        return None  # the user's executor: stop using it, but leave its lifecycle to them
    try:
        executor.shutdown(wait=False, cancel_futures=True)
    except Exception:  # a broken pool may complain on shutdown; it is being dropped either way
        pass
    return recommended_pool(**shape)
