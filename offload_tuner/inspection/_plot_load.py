"""The kernel figure's under-load panel: each candidate threshold's measured makespan, the tie band and the
interval a rerun may choose, and the shading of the calibrated and workload ranges on every panel."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from offload_tuner.inspection._plot_common import _COLORS
from offload_tuner.inspection._report import format_threshold


def _load_panel(ax: Any, load: Mapping[str, Any], xmin: float, xmax: float) -> None:
    """The concurrent phase: each candidate threshold's measured makespan (median, min..max over rounds) and
    the corrected model's prediction; the tie band above the best. "always" and "never" sit at the edges."""

    def where(threshold: Any) -> float:
        if threshold is None:
            return xmax / 1.15
        return xmin * 1.15 if threshold == 0 else float(threshold)

    candidates = load.get("candidates") or []
    if not candidates:
        return
    medians = [statistics.median(c["makespan_s"]) for c in candidates]
    best = min(medians)
    band = float(load.get("tie_band") or 0.0)
    ax.axhspan(
        best * 1e3,
        best * (1 + band) * 1e3,
        color="tab:green",
        alpha=0.15,
        lw=0,
        label=f"within the noise band ({band:.0%}) of the best: ties",
    )
    tied = load.get("tied") or []
    for c, med in zip(candidates, medians):
        _candidate(ax, c, where(c["threshold"]), med, "tab:green" if c["threshold"] in tied else "0.35")
    ax.scatter([], [], marker="o", facecolor="white", edgecolor="0.35", label="measured makespan: median, min..max")
    ax.scatter([], [], marker="x", color=_COLORS["loop"], label="corrected model's prediction")
    ax.set_ylabel(f"makespan under load (ms)\n{load.get('callers')} callers, {load.get('calls')} calls", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)


def _candidate(ax: Any, c: Mapping[str, Any], x: float, med: float, color: str) -> None:
    """One candidate threshold's makespans (median, min..max) and the corrected model's prediction."""
    lo, hi = min(c["makespan_s"]) * 1e3, max(c["makespan_s"]) * 1e3
    ax.errorbar(
        [x],
        [med * 1e3],
        yerr=[[med * 1e3 - lo], [hi - med * 1e3]],
        fmt="o",
        ms=6,
        color=color,
        mfc="white",
        mew=1.6,
        capsize=3,
        zorder=4,
    )
    ax.scatter([x], [c["predicted_s"] * 1e3], marker="x", s=30, color=_COLORS["loop"], zorder=5)
    if c["threshold"] in (None, 0):
        ax.annotate(
            format_threshold(c["threshold"]),
            (x, med * 1e3),
            xytext=(0, 8),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )


# ------------------------------------------------------------------------------- context on every panel


def _shade_context(ax: Any, xmin: float, xmax: float, rng: tuple[float, float] | None, lo_i: Any, hi_i: Any) -> None:
    """Greyed extrapolation region and shaded threshold interval (on any size axis)."""
    if rng is not None:
        lo, hi = rng
        if lo > xmin:
            ax.axvspan(
                xmin,
                lo,
                color=_COLORS["extrapolated"],
                zorder=0,
                lw=0,
                label="outside the calibrated sizes (extrapolated)",
            )
        if hi < xmax:
            ax.axvspan(
                hi,
                xmax,
                color=_COLORS["extrapolated"],
                zorder=0,
                lw=0,
                label="_outside" if lo > xmin else "outside the calibrated sizes (extrapolated)",
            )
    if lo_i is not None:
        left = max(float(lo_i), xmin)
        right = xmax if hi_i is None else max(float(hi_i), left)
        what = "interval of the threshold (where reruns land)" + (
            " (upper: never, shaded to the edge)" if hi_i is None else ""
        )
        if right == left:
            ax.axvline(left, color=_COLORS["interval"], lw=4, alpha=0.6, zorder=1, label=what)
        else:
            ax.axvspan(left, right, color=_COLORS["interval"], alpha=0.35, zorder=1, lw=0, label=what)
