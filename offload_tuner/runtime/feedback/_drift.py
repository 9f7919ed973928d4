"""The drift check: when a kernel's timed samples are due, compare them with its model in the installed profile
(the rule of ``offload-tuner drift``) and say once per kernel when they no longer match; and where the loop budget's
guard offloaded calls past the calibrated top, whether the extrapolation it relied on holds (:func:`guard_checks`),
and likewise for the extrapolated offload size (:func:`extrapolation_checks`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from offload_tuner.runtime import _log, _state
from offload_tuner.runtime._observe import Observer
from offload_tuner.runtime._profile import Profile, measured_top
from offload_tuner.runtime._stats import KernelStats
from offload_tuner.runtime._warn import warn_once, warned


class DriftCheck(Observer):
    """Subscribed at import of ``offload_tuner``; runs on the thread whose call was timed, at most once per
    ``_stats.DRIFT_CHECK_INTERVAL_S`` per kernel, and never again for a kernel once it drifted."""

    def samples_due(self, stats: KernelStats) -> None:
        key = stats.spec.key
        if f"drift:{key}" in warned:
            return
        profile = _state.current().profile
        if not isinstance(profile, Profile) or "transport" not in profile.data:
            return
        entry = profile.kernels.get(key)
        if entry is None or entry.status != "ok" or "costs" not in entry.data:
            return
        # Imported on use: the models' statistics are not every service's business until a check is due.
        from offload_tuner.runtime.feedback._retune import drift, traffic_of

        try:
            own = {**profile.data, "kernels": {key: entry.data}}
            observed = {key: traffic_of(stats)}
            results = drift(own, observed)
            guards: list[GuardCheck | ExtrapolationCheck] = []
            guards += guard_checks(own, observed) if entry.guard is not None else []
            guards += extrapolation_checks(own, observed) if entry.extrapolated is not None else []
        except Exception:  # a profile the runtime can use but whose models do not parse: nothing to compare
            return
        broken = [g for g in guards if g.holds is False]
        if broken:
            warn_once(
                f"guard:{key}",
                f"offload-tuner: kernel {key}: {broken[0].sentence} (`offload-tuner drift --stats` shows it; said "
                "once per kernel)",
            )
        drifted = [b for r in results for b in r.drifted]
        if drifted:
            sentence = drifted[0].sentence()
            warn_once(
                f"drift:{key}",
                f"offload-tuner: kernel {key} no longer behaves as calibrated in {profile.source}: "
                f"{sentence}; run `offload-tuner calibrate` on this host again "
                f"(`offload-tuner drift --stats` shows every size; said once per kernel)",
            )
            _log.event(
                "drift_detected",
                _log.WARNING,
                f"kernel {key} no longer behaves as calibrated in {profile.source}: {sentence}",
                kernel=key,
                backend=profile.executor_kind,
                reason=sentence,
                source=profile.source,
            )


# ------------------------------------------------------------------------------------------ the guard's word


@dataclass(frozen=True)
class GuardCheck:
    """The loop budget's guard (issue 29) against production: once calls it offloaded beyond the calibrated top are
    timed, whether what it relied on holds there (:func:`guard_checks`)."""

    key: str
    guard: int
    holds: bool | None
    """None: too few timed calls for a verdict."""
    sentence: str
    timed: int
    """Timed offloaded calls at sizes the guard decided beyond the calibrated top."""
    corrected: int | None = None
    """The guard size with production's timings folded into the models (where inline calls were timed past the
    top); None where not computed, or where no size then needs the guard."""


def guard_checks(profile: Mapping[str, Any], observed: Mapping[str, Any]) -> list[GuardCheck]:
    """Per kernel whose profile entry has a guard folded over its threshold ("never", or a threshold past the
    guard), once production timed offloaded calls the guard decided beyond the calibrated top: does the
    extrapolation it relied on hold there? The guard offloads a size because inline it is predicted to block the
    loop past the budget while offloading blocks it less. Two checks, each with ``MIN_SAMPLES`` timed calls:

    * offloading spared the loop: the offloaded calls' caller-thread time (median over them) below the inline
      time at their sizes, as extrapolated, or as timed where inline calls were timed past the top;
    * the inline extrapolation itself, where calls were timed inline past the top (those between the top and the
      guard, and any that exploration ran inline): their median against the model's band (idle to under load)
      within ``DRIFT_RATIO``, as ``drift`` judges a bucket. Off, the guard stands at the wrong size, and the size
      production's timings put it at is given.

    ``observed``: kernel key -> :class:`offload_tuner.runtime.feedback._retune.Traffic`."""
    from offload_tuner.runtime.feedback._retune import kernel_models

    transport, knobs, models = kernel_models(profile)
    out = []
    for key, model in models.items():
        entry = profile["kernels"][key]
        guard = entry.get("guard")
        t = observed.get(key)
        if not isinstance(guard, Mapping) or t is None or knobs.loop_budget_s is None:
            continue
        size, threshold = int(guard["size"]), model.threshold
        if threshold is not None and threshold <= size:
            continue  # not folded: the threshold decides every offloaded call
        measured = entry.get("calibrated_range") or list(model.costs.compute.size_range)
        top = float(measured[1])
        decided = [
            (n, s) for n, s in t.samples["loop"] if n >= size and n > top and (threshold is None or n < threshold)
        ]
        if decided:
            out.append(_check(key, model, transport, knobs, size, (float(measured[0]), top), decided, t))
    return out


@dataclass(frozen=True)
class _Timings:
    """The guard's sizes as production timed them: the offloaded calls it decided against the extrapolation, and
    inline calls timed past the top (where there are enough) against theirs."""

    loop_band: float
    loop_factor: float
    inline_band: float | None
    inline_factor: float | None
    far: list[tuple[int, float]]


def _band(kind: str, samples: list[tuple[int, float]], model: Any, transport: Any, knobs: Any) -> tuple[float, float]:
    """Observed against the model's band (idle to under load), and against the loaded prediction alone."""
    from offload_tuner.runtime._policy import LoadFactors, predict
    from offload_tuner.runtime.feedback._retune import _band_ratio

    costs, idle = model.costs, replace(model.costs, load=LoadFactors())
    pairs, loaded = [], []
    for n, s in samples:
        a = _seconds(kind, predict(costs, transport, knobs, max(1, n)))
        b = _seconds(kind, predict(idle, transport, knobs, max(1, n)))
        if min(a, b) > 0:
            pairs.append((s / max(a, b), s / min(a, b)))
            loaded.append(s / a)
    return _band_ratio(pairs), statistics.median(loaded)


def _timings(model: Any, transport: Any, knobs: Any, top: float, decided: list[tuple[int, float]], t: Any) -> _Timings:
    from offload_tuner.runtime.feedback._retune import MIN_SAMPLES

    far = [(n, s) for n, s in t.samples["inline"] if n > top]
    inline_band, inline_factor = (
        _band("inline", far, model, transport, knobs) if len(far) >= MIN_SAMPLES else (None, None)
    )
    loop_band, loop_factor = _band("loop", decided, model, transport, knobs)
    return _Timings(loop_band, loop_factor, inline_band, inline_factor, far)


def _inline_at(n: int, model: Any, transport: Any, knobs: Any, timings: _Timings) -> float:
    """Inline time at ``n``: as production timed it past the top, else the least the model predicts."""
    from offload_tuner.runtime._policy import LoadFactors, predict

    p = predict(model.costs, transport, knobs, max(1, n))
    if timings.inline_factor is not None:
        return p.inline_s * timings.inline_factor
    return min(p.inline_s, predict(replace(model.costs, load=LoadFactors()), transport, knobs, max(1, n)).inline_s)


def _corrected(model: Any, transport: Any, knobs: Any, measured: tuple[float, float], timings: _Timings) -> int | None:
    """The guard size with production's timings folded into the load factors (clamped as ``retune`` clamps them);
    None where inline calls were not timed past the top, or where no size then needs the guard."""
    from offload_tuner.runtime._policy import LoadFactors, guard_size
    from offload_tuner.runtime.feedback._retune import FACTOR_LIMITS

    if timings.inline_factor is None:
        return None
    lo, hi = FACTOR_LIMITS
    load = model.costs.load
    scaled = replace(
        model.costs,
        load=LoadFactors(
            load.inline * min(max(timings.inline_factor, lo), hi),
            load.offload_loop * min(max(timings.loop_factor, lo), hi),
            load.offload_worker,
        ),
    )
    found = guard_size(scaled, transport, knobs, measured)
    return None if found is None else found[0]


def _check(
    key: str,
    model: Any,
    transport: Any,
    knobs: Any,
    size: int,
    measured: tuple[float, float],
    decided: list[tuple[int, float]],
    t: Any,
) -> GuardCheck:
    from offload_tuner.runtime.feedback._retune import MIN_SAMPLES

    top, budget = measured[1], knobs.loop_budget_s
    span = f"sizes {min(n for n, _ in decided)}-{max(n for n, _ in decided)}"
    where = f"the guard (inline from size {size}, beyond the calibrated top {top:g})"
    if len(decided) < MIN_SAMPLES:
        return GuardCheck(
            key,
            size,
            None,
            f"{where}: {len(decided)} timed offloaded call(s) it decided at {span}, {MIN_SAMPLES} needed for a "
            "verdict on its extrapolation",
            len(decided),
        )
    timings = _timings(model, transport, knobs, top, decided, t)
    blocked = statistics.median(s for _, s in decided)
    spared = statistics.median(s / _inline_at(n, model, transport, knobs, timings) for n, s in decided)
    inline_median = statistics.median(_inline_at(n, model, transport, knobs, timings) for n, _ in decided)
    basis = "as timed past the top" if timings.inline_factor is not None else "as extrapolated"
    offloaded = (
        f"{len(decided)} timed offloaded calls it decided at {span} blocked the loop {blocked * 1e3:.3g} ms (median, "
        f"{timings.loop_band:.2f}x the extrapolation) against {inline_median * 1e3:.3g} ms inline there ({basis}; "
        f"budget {budget * 1e3:.3g} ms)"
    )
    corrected = _corrected(model, transport, knobs, measured, timings)
    holds, sentence = _verdict(where, offloaded, spared, timings, corrected)
    return GuardCheck(key, size, holds, sentence, len(decided), corrected)


def _verdict(where: str, offloaded: str, spared: float, timings: _Timings, corrected: int | None) -> tuple[bool, str]:
    from offload_tuner.runtime.feedback._retune import DRIFT_RATIO, MIN_SAMPLES

    restate = (
        "calibrate with the real mix stated (@kernel(workload=...) or the plan's workload_range) so the ladder "
        "measures these sizes"
    )
    if spared >= 1:
        return False, f"{where} does not hold: offloading did not spare the loop: {offloaded}; {restate}"
    band, far = timings.inline_band, timings.far
    if band is not None and not (1 / DRIFT_RATIO <= band <= DRIFT_RATIO):
        moved = (
            f"with production's timings inline passes the budget from about size {corrected}"
            if corrected is not None
            else "with production's timings no size needs the guard"
        )
        return False, (
            f"{where} does not hold: {len(far)} inline calls timed past the top (sizes {min(n for n, _ in far)}-"
            f"{max(n for n, _ in far)}) took {band:.2f}x the extrapolation: {moved}; {restate}"
        )
    checked = (
        f"; {len(far)} inline calls timed past the top: {band:.2f}x the extrapolation"
        if band is not None
        else f"; the guard's size rests on the extrapolation still (fewer than {MIN_SAMPLES} inline calls timed past the top)"
    )
    return True, f"{where} holds: {offloaded}{checked}"


def _seconds(kind: str, p: Any) -> float:
    return float({"inline": p.inline_s, "latency": p.offload_latency_s}.get(kind, p.offload_loop_s))


# ------------------------------------------------------------------------------ the extrapolated offload size


@dataclass(frozen=True)
class ExtrapolationCheck:
    """The extrapolated offload size (``extrapolated_offload``, :mod:`offload_tuner.runtime._extrapolate`) against
    production: once calls it offloaded past the calibrated top are timed, whether offloading them still pays by
    the shared stream's gain with production's timings folded into the models (:func:`extrapolation_checks`)."""

    key: str
    size: int
    holds: bool | None
    """None: too few timed calls for a verdict."""
    sentence: str
    timed: int
    gain: float | None = None
    """The shared stream's gain at the decided calls' median size with production's timings (None: no verdict)."""


def extrapolation_checks(profile: Mapping[str, Any], observed: Mapping[str, Any]) -> list[ExtrapolationCheck]:
    """Per kernel whose profile entry has an extrapolated offload size folded over its threshold, once production
    timed offloaded calls it decided (from the size up to the threshold and the guard, past the calibrated top),
    ``MIN_SAMPLES`` of them at least: the models' load factors scaled by what production timed there (the
    offloaded calls' caller-thread time and latency; inline calls timed past the top, where there are enough),
    clamped as ``retune`` clamps them, and the shared stream's gain at their median size recomputed. Offloading
    them holds while that gain stays past the tie tolerance (5%); at 1 the pool no longer pays for those sizes.
    ``observed``: kernel key -> :class:`offload_tuner.runtime.feedback._retune.Traffic`."""
    from offload_tuner.runtime.feedback._retune import kernel_models

    transport, knobs, models = kernel_models(profile)
    out = []
    for key, model in models.items():
        entry, t = profile["kernels"][key], observed.get(key)
        section, guard = entry.get("extrapolated_offload"), entry.get("guard")
        if not isinstance(section, Mapping) or t is None:
            continue
        size, threshold = int(section["size"]), model.threshold
        if threshold is not None and threshold <= size:
            continue  # not folded: the threshold decides every offloaded call
        top = measured_top(entry) or float(model.costs.compute.size_range[1])  # where the extrapolation starts
        if size <= top:
            continue  # within the mix measured under load (an older profile): the runtime ignores it
        end = min(threshold or math.inf, int(guard["size"]) if isinstance(guard, Mapping) else math.inf)
        decided = [(n, s) for n, s in t.samples["loop"] if size <= n < end]  # size > top: past the top
        if decided:
            out.append(_extrapolation_check(key, model, transport, knobs, size, top, decided, t, end))
    return out


def _extrapolation_check(
    key: str,
    model: Any,
    transport: Any,
    knobs: Any,
    size: int,
    top: float,
    decided: list[tuple[int, float]],
    t: Any,
    end: float,
) -> ExtrapolationCheck:
    from offload_tuner.runtime._extrapolate import shared_stream_gain
    from offload_tuner.runtime._policy import TIE_TOLERANCE, LoadFactors, predict
    from offload_tuner.runtime.feedback._retune import FACTOR_LIMITS, MIN_SAMPLES

    where = f"the extrapolated offload size (from size {size}, beyond the calibrated top {top:g})"
    span = f"sizes {min(n for n, _ in decided)}-{max(n for n, _ in decided)}"
    if len(decided) < MIN_SAMPLES:
        return ExtrapolationCheck(
            key,
            size,
            None,
            f"{where}: {len(decided)} timed offloaded call(s) it decided at {span}, {MIN_SAMPLES} needed for a "
            "verdict on its extrapolation",
            len(decided),
        )

    def factor(kind: str, rows: list[tuple[int, float]]) -> float:
        if len(rows) < MIN_SAMPLES:
            return 1.0  # as extrapolated
        ratios = [s / max(_seconds(kind, predict(model.costs, transport, knobs, max(1, n))), 1e-12) for n, s in rows]
        return min(max(statistics.median(ratios), FACTOR_LIMITS[0]), FACTOR_LIMITS[1])

    latency = [(n, s) for n, s in t.samples["latency"] if size <= n < end]  # size > top: past the top
    inline = [(n, s) for n, s in t.samples["inline"] if n > top]
    loop_f, latency_f, inline_f = factor("loop", decided), factor("latency", latency), factor("inline", inline)
    load = model.costs.load
    scaled = replace(
        model.costs,
        load=LoadFactors(load.inline * inline_f, load.offload_loop * loop_f, load.offload_worker * latency_f),
    )
    at = int(statistics.median(n for n, _ in decided))
    gain = shared_stream_gain(predict(scaled, transport, knobs, at), knobs)
    basis = (
        f"{len(decided)} timed offloaded calls it decided at {span}: caller-thread time {loop_f:.2f}x the "
        f"extrapolation, latency {latency_f:.2f}x ({len(latency)} timed), inline "
        + (f"{inline_f:.2f}x ({len(inline)} timed past the top)" if len(inline) >= MIN_SAMPLES else "as extrapolated")
    )
    if gain <= 1 + TIE_TOLERANCE:
        sentence = (
            f"{where} does not hold: {basis}; with these timings a stream of size-{at} calls is {gain:.2f}x as fast "
            "shared with the pool: offloading them does not pay; calibrate with the real mix stated "
            "(@kernel(workload=...) or the plan's workload_range) so the ladder measures these sizes"
        )
        return ExtrapolationCheck(key, size, False, sentence, len(decided), gain)
    sentence = f"{where} holds: {basis}; a stream of size-{at} calls {gain:.2f}x as fast shared with the pool"
    return ExtrapolationCheck(key, size, True, sentence, len(decided), gain)
