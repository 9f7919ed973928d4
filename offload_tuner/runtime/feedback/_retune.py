"""Production statistics against the profile's models (pure): the observed mix and timings in, a drift
verdict and retuned thresholds out. ``offload-tuner drift`` and ``retune`` print what these return.

* **Traffic.** A stats file holds one section per service process; :func:`traffic` adds their counts and
  pools their samples per kernel.
* **Drift.** Per kernel, kind (inline compute; offloaded: caller-thread time and latency) and log2 size
  bucket, the median of observed / predicted over the bucket's samples, against the band the model spans
  from idle (its isolated fits) to the reference load (its load factors): 1.0 inside it. A model predicting a
  single-caller service's inline calls well above what they took (its load factor) sees the service being
  idler than the reference workload, not drift. No verdict on fewer than
  ``MIN_SAMPLES`` samples; a bucket drifted when that median is off by more than ``DRIFT_RATIO`` either way
  (StarPU counts a sample beyond 1.5x of its model as an error). A kernel needs recalibration when any
  bucket of a *judged* kind drifted: inline compute and the caller-thread time. Latency is reported, not
  judged: in production it includes the wait for a free worker, which the model's per-call latency leaves
  to the makespan's pool term (the mix-shift benchmark saw it far off on a kernel whose model was right).
* **Retune.** The threshold recomputed from the profile's models for the observed mix (bucket counts,
  spread over each bucket) and the observed timings (the inline and caller-thread terms scaled by their
  median observed / predicted ratio, from ``MIN_SAMPLES`` samples on; with fewer timed offloaded calls, the
  worker's side by the inline one too, since it runs the same code; latency, for the reason above, is not
  used), without measuring again; the predicted gain is the corrected model's makespan of the observed
  mix under the old threshold over the new one. This is the model's proposal: where the mix has no timed
  offloaded call, the offloaded side is unverified there, and the result says so (``offload_observed``).
  **Within the loop budget.** No proposal runs inline a size of the mix that the corrected model predicts to
  block the loop past the profile's ``loop_budget_s`` while offloading blocks it less: the threshold is capped at
  the smallest such size (the budget size), the threshold in force too when it is past it, and the result says
  so (``budget``). An O(n^2) kernel calibrated at 16, served 64-180, retuned to 190 without this: every call
  inline, p99 loop lag 254 ms against 3 ms at 16. A profile without a budget keeps the makespan's choice.
  **Not past the objective.** A profile calibrated for p99 call latency (``policy.objective``) keeps its
  thresholds: a makespan gain says nothing about the tail it was chosen for, and a throughput proposal would
  quietly undo that choice. Only the loop budget moves them; the result says what the makespan proposed (``held``).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from offload_tuner.runtime._policy import (
    KernelCosts,
    LoadFactors,
    PolicyKnobs,
    Prediction,
    TransportModel,
    budget_capped,
    budget_threshold,
    mix_optimum,
    predict,
    workload_makespan,
)
from offload_tuner.runtime._stats import SAMPLE_KINDS, bucket_floor, bucket_of

MIN_GAIN = 0.01
"""Retune keeps the old threshold unless the new one is predicted at least this much faster on the mix, and
more than the kernel's calibration could resolve under load (its ``tie_band``, see :func:`retune_kernel`)."""
MAX_TIE_BAND = 0.5
"""A profile's tie band is clamped to this (calibration writes 0.03-0.4; a larger one would block every retune)."""
MIN_SAMPLES = 8
"""Samples a bucket (drift) or a kernel (retune's timing correction) needs before it counts."""
DRIFT_RATIO = 1.5
"""Observed / predicted beyond this (or below its inverse) is drift."""
POINTS_PER_BUCKET = 8
"""A bucket's calls are spread over this many log-spaced sizes of its octave, or of the part its timed calls span."""
MIN_SHAPE_SAMPLES = 4
"""Timed calls a bucket needs before their sizes, not the whole octave, say where its calls lie."""
SHAPE_KINDS = ("inline", "loop")
"""Sample kinds that time each timed call once (an offloaded call's latency is its ``loop`` sample's twin)."""
FACTOR_LIMITS = (0.2, 5.0)
"""A correction beyond these says the model is wrong, not loaded: drift, and the factor is clamped."""
KIND_LABELS = {"inline": "inline compute", "loop": "caller-thread time offloaded", "latency": "offloaded latency"}
JUDGED_KINDS = ("inline", "loop")
"""Kinds drift judges and retune corrects: latency includes queueing for a worker (see the module docstring)."""


@dataclass
class Traffic:
    """One kernel's statistics over every process of the file."""

    inline: dict[int, float] = field(default_factory=dict)
    """Bucket floor -> calls run inline (whole counts from a stats file; online adaptation's decayed mix is
    fractional)."""
    offload: dict[int, float] = field(default_factory=dict)
    samples: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: {k: [] for k in SAMPLE_KINDS})
    """Kind -> (size, seconds), oldest first."""
    guarded: int = 0
    """Offloaded calls the loop budget's guard decided, as the processes counted them (``stats()``'s ``guarded``)."""
    guarded_exact: bool = True
    """False where a process apportioned a size bucket its threshold splits (see ``_stats.guard_decided``)."""
    extrapolated: int = 0
    """Offloaded calls the profile's extrapolated offload size decided (``stats()``'s ``extrapolated``)."""
    extrapolated_exact: bool = True

    @property
    def calls(self) -> float:
        return sum(self.inline.values()) + sum(self.offload.values())

    def mix(self) -> dict[int, float]:
        """Bucket floor -> calls, whatever the decision."""
        out = dict(self.inline)
        for floor, n in self.offload.items():
            out[floor] = out.get(floor, 0) + n
        return out

    def sampled_sizes(self) -> list[int]:
        """The sizes of the timed calls, one per call (inline, or offloaded's caller-thread time): a sample of
        the mix finer than its log2 buckets, since every call is timed with the same probability."""
        return [size for kind in SHAPE_KINDS for size, _ in self.samples.get(kind, ())]


def traffic_of(stats: Any) -> Traffic:
    """One kernel's live statistics (:class:`offload_tuner.runtime._stats.KernelStats`) as :class:`Traffic`: read
    through the same JSON form a stats file holds, so the runtime and the CLI judge the same numbers."""
    key = stats.spec.key
    return traffic({"processes": {"live": {"kernels": {key: stats.to_json()}}}})[key]


def traffic(document: Mapping[str, Any]) -> dict[str, Traffic]:
    """Per kernel key, the counts added and the samples pooled (by time) over the document's processes."""
    out: dict[str, Traffic] = {}
    timed: dict[str, dict[str, list[tuple[float, int, float]]]] = {}
    for section in document["processes"].values():
        for key, kernel in section["kernels"].items():
            t = out.setdefault(key, Traffic())
            for decision in ("inline", "offload"):
                counts = getattr(t, decision)
                for floor, n in kernel["calls"].get(decision, {}).items():
                    counts[int(floor)] = counts.get(int(floor), 0) + n
            guarded = kernel.get("guarded")
            if guarded is not None:
                t.guarded += guarded["calls"]
                t.guarded_exact = t.guarded_exact and guarded["exact"]
            extrapolated = kernel.get("extrapolated")
            if extrapolated is not None:
                t.extrapolated += extrapolated["calls"]
                t.extrapolated_exact = t.extrapolated_exact and extrapolated["exact"]
            rows = timed.setdefault(key, {k: [] for k in SAMPLE_KINDS})
            for kind, samples in kernel["samples"].items():
                rows[kind].extend((stamp, size, seconds) for stamp, size, seconds in samples)
    for key, rows in timed.items():
        for kind, samples in rows.items():
            out[key].samples[kind] = [(size, seconds) for _, size, seconds in sorted(samples)]
    return out


# ------------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class KernelModel:
    """What a profile knows about one kernel: its costs (load factors included) and its threshold."""

    key: str
    costs: KernelCosts
    threshold: int | None
    workload_range: tuple[float, float]
    tie_band: float = 0.0
    """The relative makespan difference calibration's concurrent phase could not resolve (0 without one)."""


def kernel_models(profile: Mapping[str, Any]) -> tuple[TransportModel, PolicyKnobs, dict[str, KernelModel]]:
    """The transport model, the policy knobs and every kernel with fitted costs (failed ones are left out)."""
    transport = TransportModel.from_json(profile["transport"]["model"])
    knobs = PolicyKnobs.from_json(profile.get("policy", {}))
    models = {}
    for key, entry in profile["kernels"].items():
        if "costs" in entry and entry.get("status", "ok") == "ok":
            costs = KernelCosts.from_json(entry["costs"])
            lo, hi = entry.get("workload_range") or costs.compute.size_range
            load = entry.get("load")
            band = load.get("tie_band", 0.0) if isinstance(load, Mapping) else 0.0
            numeric = isinstance(band, (int, float)) and not isinstance(band, bool)
            band = min(float(band), MAX_TIE_BAND) if numeric and band >= 0 else 0.0  # NaN: not >= 0
            models[key] = KernelModel(key, costs, entry["threshold"], (float(lo), float(hi)), band)
    return transport, knobs, models


def predicted(kind: str, p: Prediction) -> float:
    return {"inline": p.inline_s, "loop": p.offload_loop_s, "latency": p.offload_latency_s}[kind]


# ------------------------------------------------------------------------------------------------ drift


@dataclass(frozen=True)
class BucketDrift:
    kind: str
    floor: int
    samples: int
    ratio: float | None
    """Median observed / predicted; None with fewer than ``MIN_SAMPLES`` samples."""

    @property
    def judged(self) -> bool:
        return self.ratio is not None and self.kind in JUDGED_KINDS

    @property
    def drifted(self) -> bool:
        ratio = self.ratio
        return ratio is not None and self.kind in JUDGED_KINDS and not (1 / DRIFT_RATIO <= ratio <= DRIFT_RATIO)

    def sentence(self) -> str:
        sizes = f"sizes {self.floor}-{max(self.floor, 2 * self.floor - 1)}"
        label = KIND_LABELS[self.kind]
        if self.ratio is None:
            return f"{label} at {sizes}: {self.samples} sample(s), {MIN_SAMPLES} needed for a verdict"
        note = "" if self.kind in JUDGED_KINDS else " (not judged: includes the wait for a free worker)"
        return (
            f"{label} at {sizes}: {self.ratio:.2f}x the model, idle to under load (median of {self.samples} "
            f"samples){note}"
        )


@dataclass(frozen=True)
class KernelDrift:
    key: str
    buckets: tuple[BucketDrift, ...]

    @property
    def drifted(self) -> tuple[BucketDrift, ...]:
        return tuple(b for b in self.buckets if b.drifted)

    @property
    def judged(self) -> int:
        return sum(1 for b in self.buckets if b.judged)


def drift(profile: Mapping[str, Any], observed: Mapping[str, Traffic]) -> list[KernelDrift]:
    """Observed against modelled costs per kernel, kind and size bucket (kernels of the profile only)."""
    transport, knobs, models = kernel_models(profile)
    out = []
    for key, model in models.items():
        t = observed.get(key)
        if t is None:
            continue
        idle = replace(model.costs, load=LoadFactors())
        buckets = []
        for kind in SAMPLE_KINDS:
            by_floor: dict[int, list[tuple[float, float]]] = {}
            for size, seconds in t.samples[kind]:
                n = max(1, size)
                a = predicted(kind, predict(model.costs, transport, knobs, n))
                b = predicted(kind, predict(idle, transport, knobs, n))
                if min(a, b) > 0:
                    by_floor.setdefault(bucket_floor(bucket_of(size)), []).append(
                        (seconds / max(a, b), seconds / min(a, b))
                    )
            for floor in sorted(by_floor):
                pairs = by_floor[floor]
                ratio = _band_ratio(pairs) if len(pairs) >= MIN_SAMPLES else None
                buckets.append(BucketDrift(kind, floor, len(pairs), ratio))
        out.append(KernelDrift(key, tuple(buckets)))
    return out


def _band_ratio(pairs: Sequence[tuple[float, float]]) -> float:
    """Observed against the band the model spans, from idle (calibration's single calls) to the reference load
    (its load factors): the median ratio to the band's far edge, 1.0 inside it. A service busier or idler
    than the reference workload moves inside the band; a kernel that changed leaves it."""
    above = statistics.median(p[0] for p in pairs)  # observed / the slower prediction
    below = statistics.median(p[1] for p in pairs)  # observed / the faster prediction
    return above if above > 1 else (below if below < 1 else 1.0)


# ----------------------------------------------------------------------------------------------- retune


@dataclass(frozen=True)
class Retuned:
    key: str
    old: int | None
    new: int | None
    calls: float
    factors: Mapping[str, tuple[float, int]]
    """Kind -> (median observed / predicted applied, samples); kinds with too few samples are left out."""
    offload_observed: bool
    """Whether timed offloaded calls back the offloaded side of the model in this mix (else it is the
    calibrated model's word alone there)."""
    gain: float
    """Predicted makespan of the observed mix under the old threshold over the new one, minus 1."""
    costs: KernelCosts
    """The costs with the observed corrections folded into their load factors."""
    budget_size: int | None = None
    """Smallest size of the mix's range predicted past the loop budget inline (None: none, or no budget)."""
    budget: str | None = None
    """Why the loop budget decided ``new`` (None: the makespan's choice was within it)."""
    held: str | None = None
    """Why the makespan's proposal (``proposed``) was not taken although it differs (None: it was, or it is the
    threshold in force): a profile calibrated for p99 call latency, which these models do not predict."""
    proposed: int | None = None
    """What the makespan alone proposed, within the loop budget (equal to ``new`` unless ``held``)."""
    as_measured: bool = False
    """The threshold in force stays the one calibration measured (a latency profile the budget did not move, whether
    or not the makespan proposed another): what was measured with it stays with it."""


def retune(profile: Mapping[str, Any], observed: Mapping[str, Traffic]) -> list[Retuned]:
    """Thresholds for the observed mix and timings, from the profile's models (kernels with traffic only)."""
    transport, knobs, models = kernel_models(profile)
    return [
        retune_kernel(model, transport, knobs, t, model.threshold)
        for key, model in models.items()
        if (t := observed.get(key)) is not None and t.calls > 0
    ]


def retune_kernel(
    model: KernelModel, transport: TransportModel, knobs: PolicyKnobs, t: Traffic, current: int | None
) -> Retuned:
    """One kernel's threshold for its observed mix and timings; ``current`` is the threshold in force (the
    profile's, or the last one online adaptation chose), kept unless the new one is predicted better by
    ``MIN_GAIN`` and by the kernel's ``tie_band``."""
    factors: dict[str, tuple[float, int]] = {}
    for kind in JUDGED_KINDS:
        ratios = [
            seconds / e
            for size, seconds in t.samples[kind]
            if (e := predicted(kind, predict(model.costs, transport, knobs, max(1, size)))) > 0
        ]
        if len(ratios) >= MIN_SAMPLES:
            factors[kind] = (min(max(statistics.median(ratios), FACTOR_LIMITS[0]), FACTOR_LIMITS[1]), len(ratios))
    load = model.costs.load
    inline = factors.get("inline", (1.0, 0))[0]
    # With fewer than MIN_SAMPLES timed offloaded calls, nothing tells a slower loop from a heavier kernel,
    # and the kernel's code runs in the workers too: the inline correction applies there alike. Scaled on
    # the loop alone, a kernel timed slower than its model inline (all calls inline) looked cheaper offloaded
    # and retuned to a threshold slower than the oracle (never) in the mix-shift benchmark.
    worker = 1.0 if "loop" in factors else inline
    corrected = replace(
        model.costs,
        load=LoadFactors(
            round(load.inline * inline, 4),
            round(load.offload_loop * factors.get("loop", (1.0, 0))[0], 4),
            round(load.offload_worker * worker, 4),
        ),
    )
    sizes, weights = mix_points(t.mix(), t.sampled_sizes())
    cap = budget_threshold(corrected, transport, knobs, (sizes[0], sizes[-1]))
    free = mix_optimum(corrected, transport, knobs, sizes, weights)
    new = budget_capped(free, cap)
    old_span = mix_makespan(corrected, transport, knobs, sizes, weights, current)
    new_span = mix_makespan(corrected, transport, knobs, sizes, weights, new)
    free_span = mix_makespan(corrected, transport, knobs, sizes, weights, free)
    # No better on this mix (both keep every observed call inline, say), or better by less than calibration
    # could measure: the threshold in force was chosen by measurement under load where the model's own choice
    # lost, and a small predicted gain re-proposes that loser (the mix-shift benchmark saw a gain predicted
    # inside the tie band turn out a clear loss when measured). Not when the one in force is past the budget.
    small = max(MIN_GAIN, model.tie_band)
    if old_span / new_span - 1 < small and budget_capped(current, cap) == current:
        new, new_span = current, old_span
    unbounded = current if old_span / free_span - 1 < small else free  # what the makespan alone would keep
    note = None if budget_capped(unbounded, cap) == unbounded else budget_reason(corrected, transport, knobs, cap)
    observed_offload = len(t.samples["loop"]) >= MIN_SAMPLES
    proposed, held = new, None
    if knobs.objective == "latency":  # the budget alone moves the threshold in force, and says so only if it did
        kept = budget_capped(current, cap)
        note = None if kept == current else budget_reason(corrected, transport, knobs, cap)
        if new != kept:
            new, new_span, held = kept, mix_makespan(corrected, transport, knobs, sizes, weights, kept), LATENCY_HELD
    gain = old_span / new_span - 1
    as_is = knobs.objective == "latency" and new == current  # as calibration measured it
    return Retuned(
        model.key, current, new, t.calls, factors, observed_offload, gain, corrected, cap, note, held, proposed, as_is
    )


LATENCY_HELD = (
    "kept: the profile was calibrated for p99 call latency (--objective latency), which these models (makespans) do "
    "not predict, so only the loop budget moves its threshold; to follow the observed mix, state it and calibrate "
    "again with --objective latency"
)


def budget_reason(costs: KernelCosts, transport: TransportModel, knobs: PolicyKnobs, size: int | None) -> str:
    """The sentence saying the loop budget decided a threshold: inline from ``size`` on blocks the loop past it."""
    budget = knobs.loop_budget_s
    if size is None or budget is None:
        raise ValueError("budget_reason() needs a budget size and a loop budget")
    inline = predict(costs, transport, knobs, size).inline_s
    return (
        f"kept within the loop budget: inline from size {size} is predicted at {inline * 1e3:.3g} ms > budget "
        f"{budget * 1e3:g} ms"
    )


def mix_points(mix: Mapping[int, float], sampled: Sequence[int] = ()) -> tuple[list[float], list[float]]:
    """A bucketed mix as sizes (ascending) and weights: each bucket's calls spread log-evenly over
    ``POINTS_PER_BUCKET`` sizes of its octave ``[floor, 2 * floor)`` or, where ``sampled`` (the sizes of timed
    calls) holds ``MIN_SHAPE_SAMPLES`` of the bucket, of the part they span (their extremes, not their
    quantiles: a few samples place a bucket's edges well, its density within them poorly). Why: a mix of
    sizes 64-80 fills a sixth of its octave, and spread over the whole octave it put the best split at 83,
    where no observed call is offloaded (a much slower threshold in the mix-shift benchmark)."""
    seen: dict[int, list[int]] = {}
    for size in sampled:
        seen.setdefault(bucket_floor(bucket_of(size)), []).append(size)
    sizes: list[float] = []
    weights: list[float] = []
    for floor in sorted(mix):
        count = mix[floor]
        if count <= 0:
            continue
        if floor <= 1:
            sizes.append(float(max(1, floor)))
            weights.append(float(count))
            continue
        lo, hi = _span(seen.get(floor, ()), floor)
        points = [lo * (hi / lo) ** ((i + 0.5) / POINTS_PER_BUCKET) for i in range(POINTS_PER_BUCKET)]
        sizes.extend(points)
        weights.extend([count / POINTS_PER_BUCKET] * POINTS_PER_BUCKET)
    return sizes, weights


def _span(observed: Sequence[int], floor: int) -> tuple[float, float]:
    """Where a bucket's calls lie: the octave ``[floor, 2 * floor)``, or with ``MIN_SHAPE_SAMPLES`` timed calls
    their extremes widened by one average gap (log) each way, within the octave (k samples' extremes fall
    short of the range they come from by about a (k+1)-th of it at each end)."""
    if len(observed) < MIN_SHAPE_SAMPLES:
        return float(floor), float(2 * floor)
    lo, hi = float(min(observed)), float(max(observed)) + 1
    gap = (hi / lo) ** (1 / (len(observed) - 1))
    return max(float(floor), lo / gap), min(float(2 * floor), hi * gap)


def mix_makespan(
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    sizes: Sequence[float],
    weights: Sequence[float],
    threshold: int | None,
) -> float:
    """The model's makespan of the weighted mix when calls from ``threshold`` up are offloaded."""
    predictions = [predict(costs, transport, knobs, n) for n in sizes]
    k = len(sizes) if threshold is None else next((i for i, n in enumerate(sizes) if n >= threshold), len(sizes))
    return workload_makespan(predictions, knobs, k, weights)


def retuned_profile(
    profile: Mapping[str, Any], results: Sequence[Retuned], stats_source: str, when: str
) -> dict[str, Any]:
    """The profile with the retuned thresholds and corrected load factors; what it was before is kept in each
    kernel's ``retuned`` section (the calibrated interval no longer applies and is dropped)."""
    out = {**profile, "kernels": {k: dict(v) for k, v in profile["kernels"].items()}}
    for r in results:
        entry = out["kernels"][r.key]
        entry["retuned"] = {
            "from_stats": stats_source,
            "at": when,
            "calibrated_threshold": entry.get("retuned", {}).get("calibrated_threshold", r.old),
            "previous_threshold": r.old,
            "calls": r.calls,
            "factors": {kind: {"ratio": ratio, "samples": n} for kind, (ratio, n) in r.factors.items()},
            "offload_observed": r.offload_observed,
            "predicted_gain": r.gain,
        }
        if r.budget is not None:
            entry["retuned"]["budget"] = r.budget
        if r.held is not None:
            entry["retuned"]["held"] = {"proposed": r.proposed, "why": r.held}
        entry["threshold"] = r.new
        entry["costs"] = r.costs.to_json()
        if r.as_measured:
            continue  # a threshold held as measured keeps what was measured with it, the shared choice included
        entry.pop("interval", None)
        entry.pop("extrapolated_offload", None)  # production's mix was weighed: the model's guess past the top goes
        entry.pop("extrapolation_withheld", None)
        if (entry.get("shared") or {}).get("lane") == "process":  # the shared choice is what retune replaced
            entry["shared"] = {**entry["shared"], "retuned_to": r.new}
    return out
