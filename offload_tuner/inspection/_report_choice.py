"""What decided a kernel's choice under load beyond the makespans, for ``explain`` (issue 29): the p99 loop lag
predicted for a long stream per candidate, the octaves measured before an unsettled choice was taken, and the
choice's regret bound. Old profiles without these records print nothing here."""

from __future__ import annotations

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
    lines = []
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
        lines.append(
            f"  regret bound: a rerun may read {format_threshold(threshold)} up to {load['regret_bound']:.0%} slower "
            f"than {best} (two standard errors of the difference, the noise at its 90% upper bound)"
        )
    return lines
