"""Every kernel of a profile on one log size axis: calibrated range, threshold with interval, never, failures."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from offload_tuner.inspection._plot_common import (
    _COLORS,
    _calibrated_range,
    _compare_with,
    _costs,
    _fmt_size,
    _host_label,
    _interval,
    _kernels,
    _log_axis,
    _old_label,
    _wrap,
)

Row = tuple[str, Mapping[str, Any], "tuple[float, float] | None"]


def overview_figure(profile_data: Mapping[str, Any]) -> Figure:
    """Every kernel on one log size axis: calibrated range, threshold with interval, ``never``, failures."""
    kernels = _kernels(profile_data)
    rows: list[Row] = []
    for key, entry in kernels.items():
        try:
            costs = _costs(entry)
        except (KeyError, TypeError, ValueError):
            costs = None
        rows.append((key, entry, _calibrated_range(entry, costs)))
    olds = [_compare_with(entry, key) for key, entry, _ in rows]
    xmin, xmax = _extent(rows, olds)

    fig = Figure(figsize=(11, 1.2 + 0.62 * max(len(rows), 1)), layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    old_marks(ax, olds)
    once = _labeller()
    for i, (_key, entry, rng) in enumerate(rows):
        _row(ax, i, entry, rng, xmin, xmax, once)
    ax.set_yticks(range(len(rows)), [_wrap(key, 48) for key, _, _ in rows], fontsize=9)
    _log_axis(ax.xaxis, _fmt_size)
    ax.set_xlabel("input size n (each kernel's own size units, log)")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)
    created = profile_data.get("created")
    ax.set_title(
        f"Offload thresholds: {_host_label(profile_data)}" + (f", calibrated {created}" if created else ""), fontsize=11
    )
    return fig


def old_marks(ax: Any, olds: Sequence[float | None]) -> None:
    """The constants to compare with, one per row of a kernels-as-rows figure (none for rows without one): a
    line across the figure when every row has the same one, else a tick on each row that has one."""
    present = [v for v in olds if v is not None]
    if not present:
        return
    if len(present) == len(olds) and len(set(present)) == 1:
        ax.axvline(present[0], color=_COLORS["old"], ls="--", lw=1.2, label=_old_label(present[0]))
        return
    labelled: set[float] = set()
    for i, value in enumerate(olds):
        if value is None:
            continue
        label = None if value in labelled else _old_label(value)
        labelled.add(value)
        ax.vlines(value, i - 0.4, i + 0.4, color=_COLORS["old"], ls="--", lw=1.2, label=label)


def _extent(rows: Sequence[Row], olds: Sequence[float | None]) -> tuple[float, float]:
    values: list[float] = [v for v in olds if v is not None]
    for _, entry, rng in rows:
        values += [v for v in (entry.get("threshold"), *_interval(entry)) if isinstance(v, (int, float)) and v > 0]
        values += [v for v in (rng or ()) if v > 0]
    if not values:  # no kernel has anything on the size axis: any decade will do
        values = [1.0, 1000.0]
    return max(min(values) / 3, 0.5), max(values) * 3


def _labeller() -> Callable[[str], str]:
    """A legend label the first time a name is drawn, a hidden one after."""
    labelled: set[str] = set()

    def once(name: str) -> str:
        if name in labelled:
            return "_" + name
        labelled.add(name)
        return name

    return once


def _row(
    ax: Any,
    i: int,
    entry: Mapping[str, Any],
    rng: tuple[float, float] | None,
    xmin: float,
    xmax: float,
    once: Callable[[str], str],
) -> None:
    """One kernel: calibrated sizes, interval, threshold (or always/never), status."""
    status = entry.get("status", "ok")
    if rng is not None:
        ax.hlines(
            i, max(rng[0], xmin), rng[1], lw=9, color=_COLORS["extrapolated"], zorder=1, label=once("calibrated sizes")
        )
    if status == "failed" and "costs" not in entry:
        ax.text(
            xmin * 1.15,
            i,
            f"calibration failed: {_wrap(str(entry.get('error') or '?'), 90)}",
            va="center",
            ha="left",
            color="tab:red",
            fontsize=9,
            zorder=4,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
        )
        return
    _interval_bar(ax, i, entry, xmin, xmax, once)
    _threshold_mark(ax, i, entry.get("threshold"), "tab:blue" if status == "ok" else "tab:gray", rng, xmin, xmax, once)
    if status != "ok":
        ax.annotate(
            status,
            (xmax, i),
            xytext=(-4, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=8,
            color="tab:gray",
        )


def _interval_bar(
    ax: Any, i: int, entry: Mapping[str, Any], xmin: float, xmax: float, once: Callable[[str], str]
) -> None:
    lo_i, hi_i = _interval(entry)
    if lo_i is None:
        return
    left = max(float(lo_i), xmin)
    right = xmax if hi_i is None else float(hi_i)
    ax.hlines(i, left, right, lw=3, color="goldenrod", zorder=2, label=once("interval (to the edge: upper is never)"))
    for end in (left, right):
        if end < xmax:
            ax.vlines(end, i - 0.18, i + 0.18, color="goldenrod", lw=1.5, zorder=2)


def _threshold_mark(
    ax: Any,
    i: int,
    t: Any,
    color: str,
    rng: tuple[float, float] | None,
    xmin: float,
    xmax: float,
    once: Callable[[str], str],
) -> None:
    if isinstance(t, (int, float)) and t > 0:
        ax.plot([t], [i], "D", color=color, ms=8, zorder=3, label=once("threshold"))
        ax.annotate(
            f"{t:g}", (t, i), xytext=(0, 9), textcoords="offset points", ha="center", fontsize=9, fontweight="bold"
        )
    elif t == 0:
        ax.text(xmin * 1.15, i, "always offloaded", va="center", fontsize=9, fontweight="bold")
    else:
        top = rng[1] if rng is not None else xmax / 3
        ax.plot([top], [i], ">", color="tab:red", ms=8, zorder=3, label=once("never offloaded (calibrated up to)"))
        ax.annotate(
            f"never (up to {top:g})",
            (top, i),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
            color="tab:red",
            fontweight="bold",
        )
