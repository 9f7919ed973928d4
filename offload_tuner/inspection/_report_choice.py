"""What decided a kernel's choice under load beyond the makespans, for ``explain`` (issue 29): the objective (and
under the latency objective each candidate's p99 call latency), the p99 loop lag predicted for a long stream per
candidate, the octaves measured before an unsettled choice was taken, and the choice's regret bound. Old profiles
without these records print nothing here; ``show`` and ``calibrate`` print :func:`objective_text`."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from typing import Any

from offload_tuner.calibration._lagmodel import LAG_MARGIN


def choice_lines(
    load: Mapping[str, Any],
    threshold: int | None,
    format_threshold: Callable[[int | None], str],
    format_seconds: Callable[[float | None], str],
) -> list[str]:
    """The lines ``explain`` adds under the concurrent phase's table (``_report``'s formatters passed in: it
    imports this module)."""
    lines = _latency_lines(load, format_threshold, format_seconds)
    predicted = [c for c in load["candidates"] if "long_lag_p99_s" in c]
    if predicted:
        ruled = set(load.get("predicted_over_budget") or ())
        cells = ", ".join(
            f"{format_threshold(c['threshold'])} {format_seconds(c['long_lag_p99_s'])}"
            + (" (ruled out)" if c["threshold"] in ruled else "")
            for c in predicted
        )
        lines.append(
            f"  p99 loop lag predicted for a long stream of the mix (the callers' queueing included; a candidate "
            f"is ruled out when {LAG_MARGIN:g}x its prediction passes the loop budget): {cells}"
        )
    settle = load.get("settle") or {}
    if settle.get("measured"):
        added = ", ".join(format_threshold(t) for t in settle["measured"])
        lines.append(f"  not taken on one short phase: {settle['why']}; measured in between first: {added}")
    if "regret_bound" in load:
        best = (
            "the best measured" if load.get("best") == threshold else f"the best ({format_threshold(load.get('best'))})"
        )
        what = "a higher p99 call latency" if load.get("objective") == "latency" else "slower"
        lines.append(
            f"  regret bound: a rerun may read {format_threshold(threshold)} up to {load['regret_bound']:.0%} {what} "
            f"than {best} (two standard errors of the difference, the noise at its 90% upper bound)"
        )
    return lines


def objective_text(profile: Mapping[str, Any]) -> str:
    """Which objective decided the profile's thresholds under load, in a sentence."""
    objective = (profile.get("policy") or {}).get("objective", "throughput")
    if objective == "latency":
        return (
            "objective: latency (calibrate --objective latency): each threshold is the candidate with the lowest p99 "
            "call latency under load, the fastest makespan among ties, within the loop budget"
        )
    return (
        "objective: throughput (the default): each threshold is the fastest makespan under load within the loop budget"
    )


def _latency_lines(
    load: Mapping[str, Any],
    format_threshold: Callable[[int | None], str],
    format_seconds: Callable[[float | None], str],
) -> list[str]:
    """Under the latency objective: what decided, and each candidate's median p99 call latency (the table above
    shows makespans)."""
    if load.get("objective") != "latency":
        return []
    cells = ", ".join(
        f"{format_threshold(c['threshold'])} {format_seconds(statistics.median(c['latency_p99_s']))}"
        for c in load["candidates"]
        if c.get("latency_p99_s")
    )
    return [
        "  decided by the latency objective: the lowest p99 call latency (as the callers saw it, waits for the loop "
        f"included), the fastest makespan among ties; the noise and tie band above are the latency's: {cells}"
    ]
