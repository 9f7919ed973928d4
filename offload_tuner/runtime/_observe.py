"""The hook the call path notifies and what learns from it subscribes to (drift, the stats file, adaptation).

The call path imports this module, never its observers: they sit above it (:mod:`offload_tuner.runtime.feedback`)
and subscribe themselves. As with distributed's scheduler plugins, an observer can never fail the call that
notified it: whatever it raises is reported once and dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from offload_tuner.runtime import _stats
from offload_tuner.runtime._stats import KernelStats
from offload_tuner.runtime._warn import warn_once


class Observer:
    """Subclass and override the events of interest; each is called on the thread of the call that caused it."""

    def kernel_seen(self, stats: KernelStats) -> None:
        """A registered kernel was called for the first time in this process (its counters were created)."""

    def samples_due(self, stats: KernelStats) -> None:
        """A kernel's timed samples are due for a comparison with its model (see ``_stats.DRIFT_CHECK_EVERY``)."""


_observers: tuple[Observer, ...] = ()
"""Swapped whole, never mutated: a notification in flight iterates the tuple it read."""


def subscribe(observer: Observer) -> None:
    """Start notifying ``observer`` (once: subscribing it again changes nothing)."""
    global _observers
    if observer not in _observers:
        _observers = (*_observers, observer)


def unsubscribe(observer: Observer) -> None:
    global _observers
    _observers = tuple(o for o in _observers if o is not observer)


def stats_for(fn: Callable[..., Any]) -> KernelStats | None:
    """:func:`_stats.stats_for`, telling the observers when it created a kernel's counters (its first call). Two
    threads making a kernel's first call at once may both tell: observers take that (start-up checks once)."""
    known = _stats._by_fn.get(fn)
    if known is not None:
        return known
    created = _stats.stats_for(fn)
    if created is not None:
        kernel_seen(created)
    return created


def kernel_seen(stats: KernelStats) -> None:
    for observer in _observers:
        try:
            observer.kernel_seen(stats)
        except Exception as exc:  # an observer never fails the observed
            _report(observer, exc)


def samples_due(stats: KernelStats) -> None:
    for observer in _observers:
        try:
            observer.samples_due(stats)
        except Exception as exc:  # an observer never fails the observed
            _report(observer, exc)


def _report(observer: Observer, exc: Exception) -> None:
    name = type(observer).__qualname__
    try:
        warn_once(f"observer:{name}", f"offload-tuner: {name} failed ({type(exc).__name__}: {exc}); calls go on")
    except Exception:  # warnings turned into errors: still not the caller's problem
        pass
