"""Prometheus metrics (the ``[prometheus]`` extra): a collector that reads ``stats()`` when it is scraped.

The call path already counts every call and times a sample of them (:mod:`offload_tuner.runtime._stats`); this
module only reads those numbers when Prometheus asks, so exporting costs the service's calls nothing, and no state
is kept between scrapes. Metrics (this process's; ``reset_stats()`` zeroes the counters, which Prometheus reads as
a counter reset):

``offload_tuner_calls_total{kernel, decision, backend}`` (counter)
    Calls the profile decided, as ``stats()`` counts them (``offload_if=`` calls are the caller's, not counted).
    ``decision`` is ``inline`` or ``offloaded``. ``backend`` is ``inline`` for inline calls; for offloaded ones,
    where the kernel's offloaded calls go under the executors installed now (``process``, ``thread``, ``dask``,
    ``executor``; ``dask+process`` and the like when they are placed per call among several; ``unknown`` before
    the kernel's first call under the current executors). ``stats()`` counts per decision, not per backend: a
    service that changed executors sees its earlier calls under the current backend.
``offload_tuner_explored_calls_total{kernel}`` (counter)
    Calls online adaptation ran the other way than decided (they are counted under their decision above).
``offload_tuner_sampled_calls{kernel, decision, timing}`` (gauge)
    Timed calls in the window the quantiles below are taken over: the most recent ``SAMPLE_CAP`` (256) per timing.
``offload_tuner_sampled_seconds{kernel, decision, timing, quantile}`` (gauge)
    Quantiles 0.5, 0.9 and 0.99 of that window. ``timing``: ``compute`` (an inline call), ``round_trip`` (an
    offloaded call, submit to result) and ``caller_blocked`` (the caller's thread time of an offloaded call:
    pickling, submitting, unpickling). Gauges over a sliding window, not a cumulative summary: the runtime keeps
    a bounded ring of samples, not their running sum, so ``rate()`` of a ``_sum`` would be meaningless.
``offload_tuner_needs_recalibration{kernel, reason}`` (gauge, 1 or 0)
    The verdict of ``offload-tuner drift`` on this process's samples against the installed profile's model (the
    rule the runtime's drift warning uses, :func:`offload_tuner.runtime.feedback._retune.drift`). ``reason``:
    ``compute_slower``, ``compute_faster``, ``caller_blocked_slower`` or ``caller_blocked_faster`` (the first
    drifted size bucket), ``within_model``, or ``too_few_samples``. Only kernels with a cost model in the installed
    profile; nothing without a profile.
``offload_tuner_drift_ratio{kernel, timing}`` (gauge)
    Per judged timing, the size bucket's observed / modelled ratio farthest from 1 (1.0 inside the band the model
    spans from idle to the reference load); above 1.5 or below 1/1.5 is drift.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from offload_tuner.runtime import _state
from offload_tuner.runtime._lanes import Lane
from offload_tuner.runtime._placer import Placer
from offload_tuner.runtime._profile import Profile
from offload_tuner.runtime._registry import spec_by_key
from offload_tuner.runtime._stats_document import stats_document
from offload_tuner.runtime.feedback._retune import KernelDrift, drift, traffic

PREFIX: Final = "offload_tuner_"
DECISIONS: Final = (("inline", "inline"), ("offload", "offloaded"))
"""The stats document's decision -> the label value."""
TIMINGS: Final = (
    ("inline", "inline", "compute"),
    ("offloaded", "loop", "caller_blocked"),
    ("offloaded", "latency", "round_trip"),
)
"""(decision, the stats document's sample kind, the ``timing`` label)."""
TIMING_OF_KIND: Final = {kind: timing for _, kind, timing in TIMINGS}
QUANTILES: Final = (0.5, 0.9, 0.99)
HELP: Final = {
    "calls": "Calls the profile decided, by kernel, decision (inline/offloaded) and backend",
    "explored_calls": "Calls online adaptation ran the other way than decided (also counted under their decision)",
    "sampled_calls": "Timed calls in the sliding window the sampled_seconds quantiles are taken over",
    "sampled_seconds": "Quantiles of the timed calls' seconds over the most recent samples (a sliding window)",
    "needs_recalibration": "1 when the kernel's samples left its cost model (offload-tuner drift), else 0",
    "drift_ratio": "Observed / modelled seconds farthest from 1 over the kernel's size buckets, per judged timing",
}


class StatsCollector(Collector):
    """Reads ``stats()`` and the installed profile at each scrape; holds nothing between scrapes."""

    def collect(self) -> Iterator[Metric]:
        document = stats_document()
        kernels = _kernels(document)
        yield from _call_families(kernels, _state.current())
        yield from _timing_families(kernels)
        yield from _drift_families(document, kernels)

    def describe(self) -> Iterator[Metric]:
        """The families' names, without reading anything (a registry checks names for clashes on register)."""
        yield from _call_families({}, _state.current())
        yield from _timing_families({})
        yield from _drift_verdicts([])


def register(registry: CollectorRegistry | None = None) -> StatsCollector:
    """A new :class:`StatsCollector`, registered with ``registry`` (the default: ``prometheus_client.REGISTRY``)."""
    collector = StatsCollector()
    (REGISTRY if registry is None else registry).register(collector)
    return collector


def _kernels(document: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """Kernel key -> its sections, one per process of the document (``stats()`` has one)."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for section in document["processes"].values():
        for key, kernel in section["kernels"].items():
            out.setdefault(key, []).append(kernel)
    return out


def _call_families(kernels: Mapping[str, list[Mapping[str, Any]]], snap: _state.Snapshot) -> Iterator[Metric]:
    calls = CounterMetricFamily(PREFIX + "calls", HELP["calls"], labels=["kernel", "decision", "backend"])
    explored = CounterMetricFamily(PREFIX + "explored_calls", HELP["explored_calls"], labels=["kernel"])
    for key, sections in sorted(kernels.items()):
        for decision, label in DECISIONS:
            count = sum(n for s in sections for n in s["calls"].get(decision, {}).values())
            backend = "inline" if decision == "inline" else offload_backend(snap, key)
            calls.add_metric([key, label, backend], count)
        explored.add_metric([key], sum(s.get("explored", 0) for s in sections))
    yield calls
    yield explored


def offload_backend(snap: _state.Snapshot, key: str) -> str:
    """Where the kernel's offloaded calls go under ``snap``'s executors, read from what the call path resolved for
    it (nothing is resolved here: a scrape must not load a profile or build a placer)."""
    spec = spec_by_key(key)
    row = snap.table.get(spec.fn) if spec is not None else None
    lane = row[4] if row is not None else None
    if isinstance(lane, Placer):
        return "+".join(sorted({each.backend.name for each in lane.lanes}))
    if isinstance(lane, Lane):
        return lane.backend.name
    return "unknown"


def _timing_families(kernels: Mapping[str, list[Mapping[str, Any]]]) -> Iterator[Metric]:
    labels = ["kernel", "decision", "timing"]
    counts = GaugeMetricFamily(PREFIX + "sampled_calls", HELP["sampled_calls"], labels=labels)
    seconds = GaugeMetricFamily(PREFIX + "sampled_seconds", HELP["sampled_seconds"], labels=[*labels, "quantile"])
    for key, sections in sorted(kernels.items()):
        for decision, kind, timing in TIMINGS:
            values = sorted(row[2] for s in sections for row in s["samples"].get(kind, ()))
            counts.add_metric([key, decision, timing], len(values))
            for q in QUANTILES if values else ():
                seconds.add_metric([key, decision, timing, str(q)], quantile(values, q))
    yield counts
    yield seconds


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated between the two nearest ranks (numpy's default)."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _drift_families(document: Mapping[str, Any], kernels: Mapping[str, Any]) -> Iterator[Metric]:
    """Per kernel with a model in the installed profile, the drift verdict on this process's samples: one kernel
    at a time, as the runtime's check does, so one model that does not parse leaves the others' verdicts."""
    profile = _state.current().profile  # read, never loaded here
    verdicts: list[KernelDrift] = []
    if isinstance(profile, Profile) and "transport" in profile.data:
        observed = traffic(document)
        for key in sorted(kernels):
            entry = profile.kernels.get(key)
            if entry is None or entry.status != "ok" or "costs" not in entry.data:
                continue
            try:
                verdicts += drift({**profile.data, "kernels": {key: entry.data}}, {key: observed[key]})
            except Exception:  # a profile the runtime can use but whose model does not parse: no verdict
                continue
    yield from _drift_verdicts(verdicts)


def _drift_verdicts(verdicts: Iterable[KernelDrift]) -> Iterator[Metric]:
    needs = GaugeMetricFamily(PREFIX + "needs_recalibration", HELP["needs_recalibration"], labels=["kernel", "reason"])
    ratios = GaugeMetricFamily(PREFIX + "drift_ratio", HELP["drift_ratio"], labels=["kernel", "timing"])
    for verdict in verdicts:
        drifted = verdict.drifted
        if drifted:
            first = drifted[0]
            reason = f"{TIMING_OF_KIND[first.kind]}_{'slower' if (first.ratio or 1.0) > 1 else 'faster'}"
        else:
            reason = "within_model" if verdict.judged else "too_few_samples"
        needs.add_metric([verdict.key, reason], 1.0 if drifted else 0.0)
        worst: dict[str, float] = {}
        for bucket in verdict.buckets:
            if bucket.judged and bucket.ratio is not None:
                kind, ratio = bucket.kind, bucket.ratio
                if kind not in worst or _distance(ratio) > _distance(worst[kind]):
                    worst[kind] = ratio
        for kind, ratio in sorted(worst.items()):
            ratios.add_metric([verdict.key, TIMING_OF_KIND[kind]], ratio)
    yield needs
    yield ratios


def _distance(ratio: float) -> float:
    """How far a ratio is from 1, either way (0.5 is as far as 2)."""
    return abs(math.log(ratio)) if ratio > 0 else math.inf
