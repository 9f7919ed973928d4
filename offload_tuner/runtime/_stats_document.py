"""The statistics as a document: what ``offload_tuner.stats()`` returns and the stats file and the Prometheus
collector read.

Apart from the counters (``_stats``) because one field needs the call path's view: ``guarded``, the offloaded
calls the profile's loop-budget guard decided (``extrapolated``: those its extrapolated offload size decided), is
read against the threshold in force now (``_entries.resolve``), and the counters sit below the call path in the
runtime's ranks. Everything here runs when the statistics are
read, never on the hot path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from offload_tuner.runtime import _state, _stats
from offload_tuner.runtime._entries import TRUSTED, Origin, folded, resolve
from offload_tuner.runtime._profile import Profile, current_hostname
from offload_tuner.runtime._stats import STATS_SCHEMA, KernelStats, guard_decided, process_id


def _guarded(fn: Callable[..., Any], stats: KernelStats) -> tuple[str, dict[str, Any]] | None:
    """The ``guarded`` (or ``extrapolated``) field of a kernel's statistics: where the installed profile's guard (or
    its extrapolated offload size) is folded into its threshold (:func:`offload_tuner.runtime._entries._guarded`),
    the offloaded calls it decided (:func:`guard_decided`), counted against the threshold in force now. Off the hot
    path: read from the counts the hot path keeps anyway, when the statistics are read. None where neither decides
    this kernel's calls."""
    snap = _state.current()
    profile = snap.profile
    if not snap.installed or not isinstance(profile, Profile):
        return None  # nothing loaded yet: reading the statistics never loads a profile
    entry = profile.kernels.get(stats.spec.key)
    if entry is None or (entry.guard is None and entry.extrapolated is None):
        return None
    snap, (_, threshold, reason, _, _, origin) = resolve(fn)
    fold = folded(entry, reason)
    if origin not in TRUSTED or fold is None or threshold != fold[0]:
        return None  # not folded: the profile's (or adaptation's) threshold is at or below both, or no lane
    adapted = snap.adapted.thresholds.get(stats.spec.key) if origin is Origin.ADAPTED else None
    chosen = adapted[0] if adapted is not None else entry.threshold
    sizes = [int(row[1]) for row in stats.samples["loop"].rows()]
    calls, exact = guard_decided(stats.offload, fold[0], chosen, sizes)
    if fold[2] == "guard":
        return "guarded", {"guard": fold[0], "threshold": chosen, "calls": calls, "exact": exact}
    return "extrapolated", {"size": fold[0], "threshold": chosen, "calls": calls, "exact": exact}


def _kernel_document(fn: Callable[..., Any], stats: KernelStats) -> dict[str, Any]:
    out = stats.to_json()
    try:
        decided = _guarded(fn, stats)
    except Exception:  # the statistics are read by a recorder thread and exporters: never fail them for this
        decided = None
    if decided is not None:
        out[decided[0]] = decided[1]
    return out


def stats_document() -> dict[str, Any]:
    """This process's statistics as JSON-able data (the stats file's format, with one process)."""
    now = time.time()
    process = {
        "pid": os.getpid(),
        "started": round(_stats._started, 3),
        "updated": round(now, 3),
        "sample_every": _stats._sample_every,
        "kernels": {s.spec.key: _kernel_document(fn, s) for fn, s in list(_stats._by_fn.items()) if s.seen()},
    }
    return {
        "schema": STATS_SCHEMA,
        "host": current_hostname(),
        "processes": {process_id(): process},
    }
