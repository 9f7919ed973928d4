"""The decision: where one call runs, in O(1) on the hot path, and why (:func:`decide`, for inspection).

Fallback rules (the documented safe default): with no executor installed everything runs inline; a function
never registered with ``@kernel`` is offloaded to the primary executor, as the original gate's default
``offload_if=True`` did (one warning per function suggests ``@kernel``); a kernel without a usable profile entry (no profile, profile rejected, kernel missing, calibration failed, code
changed since calibration, profile calibrated for another kind of executor) uses its registered
``default_threshold``, which is ``None`` (inline, the behaviour of a plain call) unless the user set one.

``offload_if=True/False`` always stands. When it overrides a trusted profile entry, one
:class:`ProfileOverriddenWarning` per kernel says so: a service migrated by swapping the import keeps its old
constant at every call site and would otherwise gain nothing without being told. The check runs on a
kernel's first caller-decided call per snapshot (one set lookup per call after that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from offload_tuner.runtime import _state, _stats
from offload_tuner.runtime._backends import INLINE, THREAD
from offload_tuner.runtime._entries import FROM_PROFILE, TRUSTED, Entry, Origin, Row, guard_reason, resolve
from offload_tuner.runtime._host import configured_profile_path
from offload_tuner.runtime._lanes import Booking, Lane, inside_thread_lane
from offload_tuner.runtime._observe import stats_for
from offload_tuner.runtime._placer import Placer
from offload_tuner.runtime._profile import Profile
from offload_tuner.runtime._registry import KernelSpec, spec_for
from offload_tuner.runtime._stats import BUCKETS, EXPLORE_NEAR_SHIFT, Timed
from offload_tuner.runtime._stats import _by_fn as _stats_by_fn
from offload_tuner.runtime._warn import ProfileOverriddenWarning, warn_once


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one call runs and why; what :func:`decide` returns for inspection and tests. ``origin`` says what
    decided (the profile, adaptation, a default, the caller...) without parsing ``reason``."""

    offload: bool
    backend: str
    size: int | None
    threshold: int | None
    reason: str
    kernel: str | None = None
    origin: Origin = Origin.DEFAULT


def decide(fn: Callable[..., Any], *args: Any, offload_if: bool | None = None) -> Decision:
    """Where ``run_kernel(fn, *args, offload_if=...)`` would run this call, and why."""
    snap, (spec, threshold, reason, _, lane, origin) = resolve(fn)
    key = spec.key if spec is not None else None
    size = spec.checked_size(args) if spec is not None else None
    if not snap.installed:
        return Decision(False, INLINE.name, size, threshold, "no executor installed: inline", key, Origin.NO_EXECUTOR)
    if offload_if is not None:
        offload, why, lane = _caller_verdict(snap, offload_if, origin, threshold, size)
        origin = Origin.CALLER
    elif origin is Origin.UNREGISTERED:  # the original gate's default: offloaded (lane is the primary)
        offload, why = True, reason
    elif threshold is None or size is None:
        offload, why = False, reason
    else:
        offload = size >= threshold
        guarded = guard_reason(snap, spec, origin, size, reason) if offload and spec is not None else None
        why = guarded or f"{reason}: size {size} {'>=' if offload else '<'} threshold {threshold}"
    if offload and isinstance(lane, Placer) and size is not None:
        lane, why = _placed_on(lane, size, why)
    if offload and isinstance(lane, Lane) and lane.backend is THREAD and inside_thread_lane():
        offload, why = False, f"{why}; called from a kernel running in the thread pool: inline (see run_kernel)"
    backend = lane.backend.name if offload and isinstance(lane, Lane) else INLINE.name
    return Decision(offload, backend, size, threshold, why, key, origin)


def _caller_verdict(
    snap: _state.Snapshot, offload_if: bool, origin: Origin, threshold: int | None, size: int | None
) -> tuple[bool, str, Lane | None]:
    offload = bool(offload_if)
    why = f"caller: offload_if={offload}"
    if origin in FROM_PROFILE and size is not None:
        would = (
            "offloading never pays"
            if threshold is None
            else f"size {size} {'>=' if size >= threshold else '<'} threshold {threshold}"
        )
        why += f", overriding the profile ({would})"
    if offload and snap.primary is None:
        offload, why = False, f"{why}; the {snap.primary_name} executor was dropped after it failed: inline"
    return offload, why, snap.primary


def _placed_on(placer: Placer, size: int, why: str) -> tuple[Lane, str]:
    lane = min(placer.completions(size), key=lambda c: c.at).lane
    return lane, f"{why}; placed on {lane.name}, the soonest by expected completion: " + placer.describe(size)


def _note_caller_decision(snap: _state.Snapshot, fn: Callable[..., Any]) -> None:
    """First caller-decided call of ``fn`` under this snapshot: if a trusted profile entry would have decided
    instead, say so once per kernel. Loads the configured profile only if its file exists: with no profile
    there is nothing to override, and a caller who decides everything is not told to calibrate."""
    if spec_for(fn) is None:  # not a kernel: no profile entry to override (and a lambda per call must not pile up)
        return
    snap.caller_decided.add(fn)
    if snap.profile is _state.UNLOADED and not configured_profile_path().is_file():
        return
    snap, entry = resolve(fn)
    if entry.spec is None or entry.origin not in FROM_PROFILE:
        return
    verdict = "offloading never pays" if entry.threshold is None else f"threshold {entry.threshold}"
    source = snap.profile.source if isinstance(snap.profile, Profile) else "the profile"
    warn_once(
        f"override:{entry.spec.key}",
        f"offload-tuner: calls to {entry.spec.key} pass offload_if=, which overrides its calibrated profile entry "
        f"({verdict}, {source}); drop offload_if= at those call sites to let the profile decide, "
        "or filter ProfileOverriddenWarning if the override is deliberate (said once per kernel)",
        ProfileOverriddenWarning,
        stacklevel=5,  # warn_once, this, offload_target, run_kernel(_sync), the caller
    )


def offload_target(
    fn: Callable[..., Any], args: tuple[Any, ...], offload_if: bool | None
) -> Lane | Booking | Timed | None:
    """The hot path shared by run_kernel and run_kernel_sync: the lane to offload to (or the placer's booking),
    None for inline, or a :class:`Timed` for a call picked for timing. Counts every call of a registered kernel
    that the profile decides (:mod:`_stats`), and those run with no executor (without loading a profile for
    them). One piece on purpose: each Python call here costs about as much as the counting itself."""
    snap = _state._snapshot
    if offload_if is not None and snap.installed:
        # The caller decided, as the old gate did: no size is needed, none is counted (the statistics are of
        # the calls the profile decides; dropping offload_if is what retune and drift then help with).
        if fn not in snap.caller_decided:
            _note_caller_decision(snap, fn)
        return snap.primary if offload_if else None
    if not snap.installed:  # everything inline; still counted: the mix is worth knowing before offloading
        offload, threshold, lane, origin = False, None, None, Origin.NO_EXECUTOR
        stats = _stats_by_fn.get(fn)
        if stats is None:
            stats = stats_for(fn)
            if stats is None:  # not a registered kernel
                return None
        n = _size_or_none(stats.spec, args)  # the size only feeds the statistics here
        if n is None:
            return None
    else:
        entry: Row | Entry | None = snap.table.get(fn)  # a plain Row: it unpacks faster than an Entry
        if entry is None:
            snap, entry = resolve(fn)  # a lazy load may swap the snapshot
            if not snap.installed:  # set_executor(None) raced this first call: inline, as it now says
                return None
        spec, threshold, _, stats, lane, origin = entry
        if stats is None:  # not a registered kernel: the primary lane (Origin.UNREGISTERED), else None: inline
            return lane  # type: ignore[return-value]  # a Lane or None for these entries, never a Placer
        if threshold is None:  # as above
            n = _size_or_none(spec, args)  # type: ignore[arg-type]  # stats is set, so spec is too
            if n is None:
                return None
            offload = False
        else:
            size = stats.size
            if size is None:  # the default size, len(args[0]), without a Python call
                try:
                    n = len(args[0])
                except Exception:  # no argument, no len(), a __len__ that raises: the error names the kernel
                    n = spec.checked_size(args)  # type: ignore[union-attr]  # stats is set, so spec is too
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
        # offload implies a threshold, hence a lane; a Placer books the call (unnarrowed: `is`, not isinstance)
        return lane if lane.__class__ is not Placer else lane.place(n)  # type: ignore[return-value]  # see above
    if (
        c & _explore_mask == _explore_phase
        and threshold is not None
        and lane is not None
        and (threshold >> EXPLORE_NEAR_SHIFT <= n < threshold << EXPLORE_NEAR_SHIFT)
        and origin in TRUSTED
    ):
        # Adapting: this timed call near the threshold runs the other way, so both sides stay measured. It
        # stays counted under the decision (the counts advance, so the next call is not picked again).
        offload = not offload
        stats.explored += 1
    if offload and lane.__class__ is Placer:
        return Timed(lane.place(n), stats, n)
    return Timed(lane if offload else None, stats, n)


def _size_or_none(spec: KernelSpec, args: tuple[Any, ...]) -> int | None:
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
    """Online adaptation's exploration on or off (:mod:`offload_tuner.runtime.feedback._adapt`)."""
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
