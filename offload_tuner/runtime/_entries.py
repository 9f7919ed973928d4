"""Entry resolution: once per (snapshot, function), what decides a kernel's calls, from where, and to which lane.

The slow path of every decision: the hot path (:mod:`_decision`) reads the cached :class:`Entry` and nothing
else. An entry says its :class:`Origin` explicitly; what is trusted (the statistics' models, drift, exploration,
adaptation and the override warning work only with the profile's own thresholds) is decided from it, never from
the wording of the human-readable reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from types import FunctionType
from typing import Any, Final, NamedTuple

from offload_tuner.runtime import _state
from offload_tuner.runtime._backends import DASK
from offload_tuner.runtime._lanes import Lane
from offload_tuner.runtime._observe import stats_for
from offload_tuner.runtime._placer import Placer, offload_lane
from offload_tuner.runtime._policy import GIL_RELEASING_MAX
from offload_tuner.runtime._profile import KernelEntry, Profile
from offload_tuner.runtime._registry import KernelSpec, kernel_name, spec_for
from offload_tuner.runtime._stats import KernelStats
from offload_tuner.runtime._warn import warn_once


class Origin(StrEnum):
    """What decided a call (``Decision.origin``); compares equal to its string value."""

    NOT_A_KERNEL = "not a kernel"
    """Not registered with ``@kernel`` and no executor installed: inline, nothing to offload to."""
    UNREGISTERED = "unregistered"
    """Not registered with ``@kernel``, an executor installed, no ``offload_if``: offloaded, as the original
    gate's ``offload_if=True`` default did (one warning per function suggests ``@kernel``)."""
    DEFAULT = "default"
    """No usable profile entry: the kernel's ``default_threshold``."""
    PROFILE = "profile"
    """The profile's (process-lane) threshold."""
    ADAPTED = "adapted"
    """Online adaptation's threshold for the installed profile."""
    THREAD_LANE = "thread lane"
    """The profile's thread threshold: the kernel releases the GIL."""
    DROPPED = "dropped"
    """Its executor failed and was dropped: inline."""
    CALLER = "caller"
    """``offload_if=`` at the call site."""
    NO_EXECUTOR = "no executor"


TRUSTED: Final = frozenset({Origin.PROFILE, Origin.ADAPTED})
"""The profile's process-lane threshold (not a fallback): what statistics, drift, exploration and adaptation
work with."""
FROM_PROFILE: Final = TRUSTED | {Origin.THREAD_LANE}
"""The profile decides these calls: passing ``offload_if=`` overrides it (and is said)."""

NEVER_PAYS: Final = "profile: offloading never pays for this kernel"
_THREAD_LANE_REASON: Final = "profile: releases the GIL, thread pool"


class Entry(NamedTuple):
    """A function's resolved decision inputs. The snapshot's table keeps them as a plain :data:`Row` with the
    same fields: the hot path unpacks it, and a plain tuple unpacks faster than a NamedTuple."""

    spec: KernelSpec | None
    """None for a function that is not a registered kernel (then ``stats`` is None too)."""
    threshold: int | None
    reason: str
    stats: KernelStats | None
    lane: Lane | Placer | None
    """Where the kernel's offloaded calls go (None: no executor for them)."""
    origin: Origin


Row = tuple[KernelSpec | None, int | None, str, KernelStats | None, Lane | Placer | None, Origin]
"""An :class:`Entry` as the snapshot's table stores it (``spec, threshold, reason, stats, lane, origin``)."""


class _Resolved(NamedTuple):
    spec: KernelSpec | None
    threshold: int | None
    reason: str
    lane: Lane | Placer | None
    origin: Origin


def resolve(fn: Callable[..., Any]) -> tuple[_state.Snapshot, Entry]:
    """Slow path, once per (snapshot, function): work out the threshold and the reason, cache it."""
    snap = _state.ensure_loaded()
    row: Row | None = snap.table.get(fn)
    if row is not None:
        return snap, Entry._make(row)
    spec, threshold, reason, lane, origin = _resolve_entry(snap, fn)
    if lane is None and threshold is not None and snap.installed:  # its executor was dropped: nowhere to go
        threshold, reason, origin = None, f"{reason}; no executor left for it: inline", Origin.DROPPED
    entry = Entry(spec, threshold, reason, stats_for(fn), lane, origin)
    if spec is not None or (_named(fn) and len(snap.table) < MAX_CACHED):
        snap.table[fn] = (spec, threshold, reason, entry.stats, lane, origin)
    return snap, entry


MAX_CACHED: Final = 4096
"""Entries a snapshot holds before it stops caching unregistered functions (registered kernels always are)."""


def _named(fn: Callable[..., Any]) -> bool:
    """A plain function defined at module (or class) level: there are finitely many, so caching them is safe.
    A stream of fresh lambdas, closures, partials or bound methods must not grow the table (nor keep what they
    hold alive): those are resolved on each call, the slower path."""
    return isinstance(fn, FunctionType) and "<" not in fn.__qualname__


def _resolve_entry(snap: _state.Snapshot, fn: Callable[..., Any]) -> _Resolved:
    spec = spec_for(fn)
    if spec is None:
        return _unregistered(snap, fn)
    profile = snap.profile
    unusable = _unusable(snap, spec)
    if unusable is not None or not isinstance(profile, Profile):
        return _default(snap, spec, unusable or snap.profile_problem or "no profile")
    entry = profile.kernels[spec.key]
    thread = entry.thread
    gil_free = snap.gil_free is not None and thread is not None and thread.gil_hold <= GIL_RELEASING_MAX
    if gil_free and thread is not None and thread.threshold is not None:
        process_lane = snap.lanes.get(profile.executor_kind or _state.PRIMARY_ORDER[0])
        held = f"calibration measured the event loop held up {thread.gil_hold:.0%} of its run time"
        lane = offload_lane(snap, profile, spec, entry, process_lane, thread_lane=snap.gil_free)
        return _Resolved(spec, thread.threshold, f"{_THREAD_LANE_REASON} ({held})", lane, Origin.THREAD_LANE)
    return _guarded(entry, _process_entry(snap, profile, spec, entry))


def _guarded(entry: KernelEntry, resolved: _Resolved) -> _Resolved:
    """The profile's extrapolated offload size and its guard folded into a trusted threshold once, here: the hot
    path then compares one number. From the extrapolated size up (the profile's own threshold only: an adapted one
    was weighed over production's mix, past the top included) and from the guard up (the loop budget: adaptation's
    too), calls are offloaded whatever the threshold ("never" included)."""
    if resolved.origin not in TRUSTED or resolved.lane is None:
        return resolved
    extrapolated = entry.extrapolated
    if extrapolated is not None and resolved.origin is Origin.PROFILE and _above(resolved.threshold, extrapolated.size):
        resolved = resolved._replace(
            threshold=extrapolated.size, reason=f"{resolved.reason}; {extrapolated.describe(entry.measured_top)}"
        )
    guard = entry.guard
    if guard is None or not _above(resolved.threshold, guard.size):
        return resolved
    return resolved._replace(threshold=guard.size, reason=f"{resolved.reason}; {guard.describe(entry.calibrated_top)}")


def _above(threshold: int | None, size: int) -> bool:
    """A threshold that runs calls of ``size`` inline ("never" included)."""
    return threshold is None or threshold > size


def folded(entry: KernelEntry, reason: str) -> tuple[int, str, str] | None:
    """Which of the entry's sizes past the threshold the resolved ``reason`` says was folded into it: ``(size, its
    words, its name)``, or None."""
    folds = (
        (entry.guard, entry.calibrated_top, "guard"),
        (entry.extrapolated, entry.measured_top, "extrapolated offload size"),
    )
    for fold, top, name in folds:
        if fold is not None and reason.endswith(f"; {fold.describe(top)}"):
            return fold.size, fold.describe(top), name
    return None


def guard_reason(snap: _state.Snapshot, spec: KernelSpec, origin: Origin, size: int, reason: str) -> str | None:
    """Why an offloaded call of ``size`` is offloaded where a guard or an extrapolated offload size was folded into
    its threshold (``reason``, the entry's): its words from its size up to the threshold the profile or adaptation
    chose, that choice's own words from there up. None where none was folded. For :func:`decide`, never the hot
    path."""
    profile = snap.profile
    if origin not in TRUSTED or not isinstance(profile, Profile) or spec.key not in profile.kernels:
        return None
    entry = profile.kernels[spec.key]
    fold = folded(entry, reason)
    if fold is None or size < fold[0]:
        return None
    at, words, name = fold
    adapted = snap.adapted.thresholds.get(spec.key) if origin is Origin.ADAPTED else None
    chosen = adapted[0] if adapted is not None else entry.threshold
    if chosen is not None and size >= chosen:
        return f"{reason.removesuffix(f'; {words}')}: size {size} >= threshold {chosen}"
    return f"{words}: size {size} >= {name} {at}"


def _unregistered(snap: _state.Snapshot, fn: Callable[..., Any]) -> _Resolved:
    """A function never registered with ``@kernel``: the original gate offloaded it by default (its
    ``offload_if=True``), so it goes to the primary executor, said once per function; inline with none."""
    if not snap.installed:
        return _Resolved(None, None, "not a registered kernel, no executor installed: inline", None,
                         Origin.NOT_A_KERNEL)  # fmt: skip
    name = kernel_name(fn)
    if snap.primary is None:
        return _Resolved(None, None, f"not a registered kernel; the {snap.primary_name} executor failed and was "
                         "dropped: inline", None, Origin.DROPPED)  # fmt: skip
    warn_once(
        f"unregistered:{name}",
        f"offload-tuner: {name} is not registered with @kernel, so its calls without offload_if= are offloaded "
        "(the original gate's default, offload_if=True); register it with @kernel(size=..., sample=...) and "
        "calibrate to let the profile decide by input size, or pass offload_if= (said once per function)",
        stacklevel=0,  # the caller's line, from run_kernel, run_kernel_sync or decide alike
    )
    reason = "not a registered kernel: offloaded, the original default (offload_if=True); register it with @kernel"
    return _Resolved(None, None, reason, snap.primary, Origin.UNREGISTERED)


def _unusable(snap: _state.Snapshot, spec: KernelSpec) -> str | None:
    """Why the profile has no usable entry for ``spec`` (None: it has one)."""
    profile = snap.profile
    if not isinstance(profile, Profile):
        return None
    entry = profile.kernels.get(spec.key)
    if entry is None:
        return "kernel not in profile"
    if entry.status != "ok":  # "failed", or "untrusted": too few samples or too narrow a range to trust
        return f"calibration {entry.status} for this kernel"
    if entry.code_fingerprint is not None and entry.code_fingerprint != spec.code_fingerprint():
        warn_once(
            f"code:{profile.source}:{spec.key}",
            f"offload-tuner: kernel {spec.key} changed since it was calibrated ({profile.source}); "
            "using its default until it is calibrated again",
        )
        return "kernel code changed since calibration"
    return None


def _default(snap: _state.Snapshot, spec: KernelSpec, why: str) -> _Resolved:
    default = spec.default_threshold
    text = "inline" if default is None else f"default threshold {default}"
    return _Resolved(spec, default, f"{why}: {text}", snap.primary, Origin.DEFAULT)


def _process_entry(snap: _state.Snapshot, profile: Profile, spec: KernelSpec, entry: KernelEntry) -> _Resolved:
    """A trusted entry outside the thread lane: the executor kind it was calibrated for, or a cluster."""
    kind = profile.executor_kind
    lane = snap.lanes.get(kind) if kind is not None else snap.primary
    if lane is None and DASK.name in snap.lanes and profile.cluster is not None and kind not in snap.dropped:
        cluster = offload_lane(snap, profile, spec, entry, None)  # only a cluster: it takes the offloaded calls
        if cluster is not None:
            return _trusted_entry(spec, entry.threshold, cluster)
    if lane is None and (kind in snap.dropped or (kind is None and snap.primary_name in snap.dropped)):
        return _Resolved(spec, None, f"the {kind or snap.primary_name} executor failed and was dropped: inline",
                         None, Origin.DROPPED)  # fmt: skip
    if snap.installed and lane is None:
        installed = ", ".join(repr(name) for name in snap.lanes)
        warn_once(
            f"kind:{profile.source}:{installed}",
            f"offload-tuner: profile {profile.source} was calibrated for a {kind!r} executor, the installed "
            f"{'ones are' if len(snap.lanes) > 1 else 'one is'} {installed}; kernels use their defaults",
        )
        if snap.primary is None:
            return _Resolved(spec, None, f"profile calibrated for {kind} executor: inline", None, Origin.DEFAULT)
        return _default(snap, spec, f"profile calibrated for {kind} executor")
    adapted = snap.adapted.thresholds.get(spec.key)
    if adapted is not None:
        return _Resolved(spec, adapted[0], adapted[1], offload_lane(snap, profile, spec, entry, lane), Origin.ADAPTED)
    if entry.threshold is None:
        return _Resolved(spec, None, NEVER_PAYS, lane, Origin.PROFILE)
    return _trusted_entry(spec, entry.threshold, offload_lane(snap, profile, spec, entry, lane))


def _trusted_entry(spec: KernelSpec, threshold: int | None, lane: Lane | Placer | None) -> _Resolved:
    return _Resolved(spec, threshold, "profile" if threshold is not None else NEVER_PAYS, lane, Origin.PROFILE)


def profile_decides(fn: Callable[..., Any]) -> bool:
    """Whether the installed profile decides ``fn``'s calls (a trusted entry, not a fallback)."""
    return resolve(fn)[1].origin in TRUSTED


def install_adapted(profile: Profile, table: Mapping[str, tuple[int | None, str]]) -> None:
    """Online adaptation's thresholds (kernel key -> threshold, reason) for ``profile``: installed by swapping
    the snapshot, so the hot path keeps reading one table. Ignored if another profile is installed by now."""
    with _state._lock:
        if _state.current().profile is profile:
            _state.swap(adapted=_state.Adapted(profile, dict(table)))
