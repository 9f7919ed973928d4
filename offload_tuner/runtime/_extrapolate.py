"""Beyond the calibrated top, where the measurement could not decide, the fitted model's best estimate does (pure).

Calibration chooses a threshold by measuring candidates over the mix; past the largest size it measured it has no
say. Where the measured choice offloads nothing past that top ("never", or a threshold above it) and production
sends larger calls, they ran inline however much offloading them would have paid. The profile entry then records
an **extrapolated offload size** (``extrapolated_offload``): the smallest size ``S`` past the top from which the
fitted curves under load (as the loop budget's guard reads them) predict that a stream of size-``S`` calls
completes at least ``EXTRAPOLATION_MARGIN`` times faster when the service shares it with the pool than inline
alone, at every size from ``S`` up to the guard (from which the budget offloads anyway) or, with none, to
``GUARD_SEARCH_TOP``. The runtime offloads from ``S`` as it does from the guard (folded into the threshold once,
when the entry is resolved); within the calibrated range the measured choice still decides.

**The shared stream.** The per-size view of :mod:`_policy` (:func:`~_policy.stream_threshold`) compares a
saturated stream offloaded entirely with one run inline entirely; a threshold does neither to the sizes past the
top of a mix: the calls below it keep the loop busy while the pool takes the ones above. The shared stream says
what that split is worth at one size: a share ``x`` of the calls offloaded, the rest inline, the same resources
as :func:`~_policy.makespan` (the loop thread, the workers, the cores they share, the callers' waiting), ``x``
chosen best. Its period is at most the inline period (``x = 0``); the gain is their ratio. A kernel whose
offloaded cost grows faster than its inline time sees the gain fall towards 1 with size, so no ``S`` holds up to
the end of the search: it gets none. The margin keeps a flat extrapolation (offloading about as fast as inline)
from flipping calls the measurement left inline.
"""

from __future__ import annotations

import itertools
import math

from offload_tuner.runtime._policy import (
    GUARD_SEARCH_TOP,
    KernelCosts,
    PolicyKnobs,
    Prediction,
    TransportModel,
    _switch_point,
    predict,
)

EXTRAPOLATION_MARGIN = 1.25
"""The shared stream's predicted gain from which calls past the calibrated top are offloaded: the fits under load
err by 5-15% inside the measured range (more past it), so a smaller predicted gain is not one to act on unseen."""


def shared_stream_gain(p: Prediction, knobs: PolicyKnobs) -> float:
    """A stream of calls of ``p``'s size: its period inline over its period with the best share offloaded (>= 1).

    Each resource's time per call is linear in the share ``x`` offloaded, so the period, their maximum, is convex
    in ``x``: its minimum over [0, 1] lies at an end or where two of the lines cross."""
    inline = p.inline_s
    lines = (  # (at x = 0, at x = 1) per resource, as _policy.makespan weighs them
        (inline, p.offload_loop_s),
        (0.0, p.offload_worker_s / knobs.workers),
        (inline / knobs.cores, (p.offload_loop_s + p.offload_worker_s) / knobs.cores),
        (inline / knobs.concurrency, p.offload_latency_s / knobs.concurrency),
    )
    shares = {0.0, 1.0}
    for (a0, a1), (b0, b1) in itertools.combinations(lines, 2):
        slope = (a1 - a0) - (b1 - b0)
        if slope != 0 and 0 < (x := (b0 - a0) / slope) < 1:
            shares.add(x)
    best = min(max(a + (b - a) * x for a, b in lines) for x in shares)
    return inline / best if best > 0 else 1.0


def extrapolated_offload(
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    measured_range: tuple[float, float],
    threshold: int | None,
    guard: int | None,
) -> tuple[int, float] | None:
    """``(S, gain at S)``: from which size past the calibrated top the runtime offloads calls the measured
    ``threshold`` would run inline, or None: the threshold offloads from within the range already, no size up to
    the ``guard`` (or ``GUARD_SEARCH_TOP``) keeps the shared stream's gain at ``EXTRAPOLATION_MARGIN``, or the one
    found is no smaller than the threshold or the guard (which then decide)."""
    top = measured_range[1]
    if threshold is not None and threshold <= top:
        return None
    first = math.floor(top) + 1
    end = guard if guard is not None else GUARD_SEARCH_TOP
    if first >= end:
        return None

    def pays(n: int) -> bool:  # below the first size past the top: the verdict there (the search spans [0, end])
        return shared_stream_gain(predict(costs, transport, knobs, max(n, first)), knobs) >= EXTRAPOLATION_MARGIN

    found = _switch_point(pays, costs, measured_range, end)
    if found is None:
        return None
    size = max(found, first)
    if size >= end or (threshold is not None and size >= threshold):
        return None
    return size, shared_stream_gain(predict(costs, transport, knobs, size), knobs)
