"""Plain-text tables of a profile, shared by ``calibrate`` and ``show`` (no third-party imports)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f} us"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def format_threshold(value: int | None) -> str:
    return "never" if value is None else ("always" if value == 0 else str(value))


def format_interval(interval: Sequence[int | None] | None) -> str:
    if not interval:
        return "-"
    lo, hi = interval
    return f"[{'-' if lo is None else lo}, {'never' if hi is None else hi}]"


def summary_rows(profile: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per kernel: what the final table shows, as data (``show --json`` prints these)."""
    rows = []
    for key, entry in profile.get("kernels", {}).items():
        at = entry.get("at_threshold") or {}
        fit = entry.get("fit_error") or {}
        rows.append(
            {
                "kernel": key,
                "status": entry.get("status", "ok"),
                "threshold": entry.get("threshold"),
                "interval": entry.get("interval"),
                "fit_error_compute": fit.get("compute"),
                "fit_error_offload_latency": fit.get("offload_latency"),
                "inline_s_at_threshold": at.get("inline_s"),
                "offload_loop_s_at_threshold": at.get("offload_loop_s"),
                "offload_latency_s_at_threshold": at.get("offload_latency_s"),
                "error": entry.get("error"),
            }
        )
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def format_table(profile: Mapping[str, Any]) -> str:
    headers = ["kernel", "threshold", "90% interval", "fit err", "model err", "inline@thr", "loop@thr", "latency@thr", "status"]
    body = []
    for row in summary_rows(profile):
        body.append(
            [
                row["kernel"],
                format_threshold(row["threshold"]),
                format_interval(row["interval"]),
                _pct(row["fit_error_compute"]),
                _pct(row["fit_error_offload_latency"]),
                format_seconds(row["inline_s_at_threshold"]),
                format_seconds(row["offload_loop_s_at_threshold"]),
                format_seconds(row["offload_latency_s_at_threshold"]),
                row["status"] + (f": {row['error']}" if row["error"] else ""),
            ]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *body)] if body else [len(h) for h in headers]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    notes = (
        "fit err: cross-validated error of the compute model; model err: predicted vs measured offloaded "
        "round trips; @thr: predicted per call at the threshold (inline; loop-thread time and latency offloaded)"
    )
    return "\n".join(lines) + "\n" + notes
