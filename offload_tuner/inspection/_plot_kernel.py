"""One kernel's figure: measured samples, fitted curves, threshold and interval, validation round trips, the
compute fit's residuals, the size from which its buffers go through shared memory (or "transport: in band") and,
when the profile has one, the concurrent phase's candidates."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from offload_tuner.inspection._plot_common import (
    _COLORS,
    _calibrated_range,
    _compare_with,
    _costs,
    _entry,
    _fmt_seconds,
    _fmt_size,
    _geomspace,
    _host_label,
    _interval,
    _knobs,
    _log_axis,
    _old_label,
    _pct,
    _series,
    _transport,
    _wrap,
)
from offload_tuner.inspection._plot_load import _load_panel, _shade_context
from offload_tuner.inspection._report import (
    KernelTransport,
    format_interval,
    format_size,
    format_threshold,
    kernel_transport,
)
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, predict

Series = list[tuple[float, float, float, list[float]]]


@dataclass(frozen=True, slots=True)
class _View:
    """What the kernel figure's panels share, read once from the profile."""

    key: str
    entry: Mapping[str, Any]
    costs: KernelCosts
    transport: TransportModel | None
    knobs: PolicyKnobs
    t: Any
    lo_i: Any
    hi_i: Any
    rng: tuple[float, float] | None
    compute: Series
    caller: Series
    old: float | None
    """The plan's ``compare_with``: drawn only when set."""
    xmin: float
    xmax: float
    way: KernelTransport
    """How its offloaded calls travel: in band, or buffers through shared memory from a size."""

    def marks(self, ax: Any, *, label: bool) -> None:
        _threshold_marks(ax, self.t, self.lo_i, self.hi_i, self.rng, label=label, old=self.old)


def kernel_figure(profile_data: Mapping[str, Any], key: str) -> Figure:
    """One kernel on log-log axes: what was measured, what was fitted, where the threshold falls.

    A kernel without fitted costs (calibration failed) gets a placeholder figure stating the error.
    """
    entry = _entry(profile_data, key)
    try:
        costs = _costs(entry)
    except (KeyError, TypeError, ValueError) as exc:
        return _placeholder(profile_data, key, entry, f"its cost models cannot be read: {exc}")
    if costs is None:
        return _placeholder(profile_data, key, entry, entry.get("error") or "no fitted costs in the profile")
    view = _view(profile_data, key, entry, costs)
    load = entry.get("load") or {}
    fig = Figure(figsize=(11.5, 9.6 if load else 7.2), layout="constrained")
    if load:
        ax, res, under = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3.2, 1, 1.6]})
    else:
        ax, res = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3.2, 1]})
        under = None
    for a in (ax, res) if under is None else (ax, res, under):
        a.set_xscale("log")
        _shade_context(a, view.xmin, view.xmax, view.rng, view.lo_i, view.hi_i)
    _main_panel(ax, view)
    _residual_panel(res, view)
    bottom = res if under is None else under
    if under is not None:
        _load_panel(under, load, view.xmin, view.xmax)
        view.marks(under, label=False)
    bottom.set_xlabel("input size n (the kernel's own size units, log)")
    _log_axis(bottom.xaxis, _fmt_size)
    fig.suptitle(_title(profile_data, view), fontsize=11)
    return fig


def _view(profile_data: Mapping[str, Any], key: str, entry: Mapping[str, Any], costs: KernelCosts) -> _View:
    """The kernel's data, and an x extent that holds the calibrated range, the threshold, its interval and the
    constant to compare with, with some margin."""
    t = entry.get("threshold")
    lo_i, hi_i = _interval(entry)
    rng = _calibrated_range(entry, costs)
    samples = entry.get("samples") or {}
    compute = _series(samples, "compute")
    old = _compare_with(entry, key)
    points = [n for n, *_ in compute] + ([] if old is None else [old])
    points += [v for v in (t, lo_i, hi_i) if isinstance(v, (int, float)) and v > 0]
    if rng is not None:
        points += [v for v in rng if v > 0]
    if not points:  # nothing measured, no threshold: any decade will do
        points = [1.0, 1000.0]
    way = kernel_transport(profile_data, entry)
    if way.shared_from is not None and 0 < way.shared_from <= 10 * max(points):  # far past: said in the legend
        points.append(way.shared_from)
    xmin, xmax = max(min(points) / 2.5, 0.5), max(points) * 2.5
    return _View(
        key,
        entry,
        costs,
        _transport(profile_data),
        _knobs(profile_data),
        t,
        lo_i,
        hi_i,
        rng,
        compute,
        _series(samples, "caller_serial"),
        old,
        xmin,
        xmax,
        way,
    )


def _title(profile_data: Mapping[str, Any], view: _View) -> str:
    fit = view.entry.get("fit_error") or {}
    status = view.entry.get("status", "ok")
    status_note = {"untrusted": " (untrusted: the runtime uses the kernel's default)"}.get(status, "")
    form = view.costs.compute.form
    if form == "loglog_linear_interp":  # its residuals at the medians are ~0 by construction
        form = "log-log interpolation through the medians"
    return (
        f"{view.key}: threshold {format_threshold(view.t)}, interval {format_interval([view.lo_i, view.hi_i])}\n"
        f"{_host_label(profile_data)}; status {status}{status_note}\n"
        f"compute fit: {form}, held-out (cross-validated) error "
        f"{_pct(fit.get('compute', view.costs.compute.cv_error))}; transport: {view.way.text}"
    )


# ------------------------------------------------------------------------------------------ main panel


def _main_panel(ax: Any, view: _View) -> None:
    """Fitted curves under the measured points, validation round trips, the workload bar, the threshold."""
    ax.set_yscale("log")
    _fitted_curves(ax, view)
    _measured_points(ax, view)
    _validation_points(ax, view.entry.get("validation") or {})
    _workload_bar(ax, view)
    _shared_memory_mark(ax, view)
    view.marks(ax, label=True)
    ax.set_xlim(view.xmin, view.xmax)
    _log_axis(ax.yaxis, _fmt_seconds)
    ax.set_ylabel("seconds per call (log)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)


def _fitted_curves(ax: Any, view: _View) -> None:
    grid = _geomspace(view.xmin, view.xmax, 160)
    costs, knobs = view.costs, view.knobs
    ax.plot(
        grid,
        [costs.compute.predict(n) for n in grid],
        color=_COLORS["compute"],
        lw=2,
        label="C(n): inline compute = loop blocked inline (fit)",
    )
    ax.plot(
        grid,
        [costs.caller_serial.predict(n) for n in grid],
        color=_COLORS["caller_serial"],
        lw=1.6,
        label="Sc(n): caller-side pickling (fit)",
    )
    if view.transport is None:
        return
    preds = [predict(costs, view.transport, knobs, n) for n in grid]
    ax.plot(
        grid,
        [p.offload_loop_s for p in preds],
        color=_COLORS["loop"],
        lw=1.6,
        ls="-.",
        label="offloaded: loop blocked (Sc + executor CPU)",
    )
    ax.plot(
        grid,
        [p.offload_latency_s for p in preds],
        color=_COLORS["latency"],
        lw=1.6,
        ls="--",
        label="offloaded: latency of one call",
    )
    ax.plot(
        grid,
        [p.offload_period_s for p in preds],
        color=_COLORS["period"],
        lw=1.6,
        ls=":",
        label=f"per-size view: s per call offloaded in a saturated\n"
        f"stream of size-n calls ({knobs.concurrency} callers, {knobs.workers} workers,\n"
        f"{knobs.cores} cores); inline, that is C(n)",
    )


def _measured_points(ax: Any, view: _View) -> None:
    """Raw timings faintly, medians with MAD error bars."""
    for series, name, color, marker in (
        (view.compute, "C(n)", _COLORS["compute"], "o"),
        (view.caller, "Sc(n)", _COLORS["caller_serial"], "s"),
    ):
        if not series:
            continue
        raw_x = [n for n, _, _, raw in series for _ in raw]
        raw_y = [v for *_, raw in series for v in raw]
        ax.scatter(raw_x, raw_y, s=7, color=color, alpha=0.25, lw=0, zorder=3)
        xs, meds, mads = [s[0] for s in series], [s[1] for s in series], [s[2] for s in series]
        ax.errorbar(
            xs,
            meds,
            yerr=[[min(m, 0.9 * y) for m, y in zip(mads, meds)], mads],
            fmt=marker,
            ms=5,
            color=color,
            mfc="white",
            mew=1.4,
            capsize=2,
            zorder=4,
            label=f"{name} measured: median ± MAD (raw timings faint)",
        )


def _validation_points(ax: Any, validation: Mapping[str, Any]) -> None:
    """Real offloaded round trips against the predicted latency."""
    v_sizes = validation.get("size") or []
    v_meas = validation.get("measured_s") or []
    v_pred = validation.get("predicted_s") or []
    if not (v_sizes and v_meas):
        return
    ax.scatter(
        v_sizes,
        v_meas,
        marker="D",
        s=46,
        facecolor="none",
        edgecolor=_COLORS["latency"],
        lw=1.6,
        zorder=5,
        label=f"validation: measured offloaded round trips (model err {_pct(validation.get('median_abs_rel_error'))})",
    )
    for n, m, p in zip(v_sizes, v_meas, v_pred):
        ax.plot([n, n], [m, p], color=_COLORS["latency"], lw=1, zorder=5)


def _workload_bar(ax: Any, view: _View) -> None:
    workload = view.entry.get("workload_range")
    if not (isinstance(workload, (list, tuple)) and len(workload) == 2):
        return
    # The threshold minimises the makespan of a mix of sizes over this range (see _policy), so it need not sit
    # where any single-size curve crosses C(n).
    ax.plot(
        [max(workload[0], view.xmin), min(workload[1], view.xmax)],
        [0.012, 0.012],
        color="0.25",
        lw=3,
        solid_capstyle="butt",
        transform=ax.get_xaxis_transform(),
        zorder=6,
        label=f"workload range {workload[0]:g}..{workload[1]:g}: the mix of sizes\n"
        f"the threshold is chosen for (log-uniform)",
    )


def _shared_memory_mark(ax: Any, view: _View) -> None:
    """Where the kernel's buffers switch to shared memory (the offloaded curves step there); a legend entry saying
    "transport: in band" when they never do."""
    start = view.way.shared_from
    if start is None:
        ax.plot([], [], color="none", label=f"transport: in band ({view.way.note})")
        return
    if start <= 0:
        ax.plot(
            [],
            [],
            color=_COLORS["shared_memory"],
            lw=1.4,
            label="transport: buffers through shared memory at every size",
        )
        return
    beyond = "" if view.xmin <= start <= view.xmax else " (beyond the plotted sizes)"
    ax.axvline(
        start,
        color=_COLORS["shared_memory"],
        ls=(0, (4, 2)),
        lw=1.4,
        zorder=5,
        label=f"buffers through shared memory from size {format_size(start)}{beyond}\n(offloaded costs step there)",
    )


# -------------------------------------------------------------------------------------- residual panel


def _residual_panel(res: Any, view: _View) -> None:
    """Residuals of the compute fit at each measured size."""
    if view.compute:
        _residuals(res, view)
    else:
        res.text(0.5, 0.5, "no compute samples stored", transform=res.transAxes, ha="center", va="center")
    res.axhline(0, color="0.3", lw=0.8)
    view.marks(res, label=False)
    res.set_ylabel("C(n) fit residual\n(measured / fit − 1, %)", fontsize=9)
    res.grid(True, which="major", alpha=0.3)


def _residuals(res: Any, view: _View) -> None:
    fit = view.costs.compute
    rel = [
        (n, med / fit.predict(n) - 1, mad / fit.predict(n), raw)
        for n, med, mad, raw in view.compute
        if fit.predict(n) > 0
    ]
    raw_x = [n for n, *_, raw in rel for _ in raw]
    raw_y = [100 * (v / fit.predict(n) - 1) for n, *_, raw in rel for v in raw]
    # The axis fits the medians and most raw timings; rare spikes are pinned to the edge and counted.
    ordered = sorted(abs(v) for v in raw_y)
    typical = ordered[int(0.95 * (len(ordered) - 1))] if ordered else 0.0
    lim = 1.15 * max([100 * (abs(r[1]) + r[2]) for r in rel] + [typical, 5.0])
    inside = [(x, y) for x, y in zip(raw_x, raw_y) if abs(y) <= lim]
    outside = [(x, math.copysign(lim * 0.97, y)) for x, y in zip(raw_x, raw_y) if abs(y) > lim]
    res.scatter(
        [x for x, _ in inside], [y for _, y in inside], s=7, color=_COLORS["compute"], alpha=0.25, lw=0, zorder=3
    )
    if outside:
        _pinned(res, outside, lim)
    res.errorbar(
        [r[0] for r in rel],
        [100 * r[1] for r in rel],
        yerr=[100 * r[2] for r in rel],
        fmt="o",
        ms=4,
        color=_COLORS["compute"],
        mfc="white",
        capsize=2,
        zorder=4,
    )
    res.set_ylim(-lim, lim)


def _pinned(res: Any, outside: list[tuple[float, float]], lim: float) -> None:
    """Raw timings beyond the axis, drawn at its edge and counted."""
    res.scatter(
        [x for x, _ in outside],
        [y for _, y in outside],
        s=16,
        marker="^",
        color=_COLORS["compute"],
        alpha=0.5,
        lw=0,
        zorder=3,
    )
    res.text(
        0.99,
        0.04,
        f"{len(outside)} raw timing(s) beyond ±{lim:.0f}% pinned to the edge (▲)",
        transform=res.transAxes,
        ha="right",
        va="bottom",
        fontsize=8,
        color="0.3",
    )


# ------------------------------------------------------------------------------------------ load panel


def _threshold_marks(
    ax: Any, t: Any, lo_i: Any, hi_i: Any, rng: tuple[float, float] | None, *, label: bool, old: float | None
) -> None:
    """The threshold (or a note saying always/never) and, when the plan names one, the constant to compare with."""
    if old is not None:
        ax.axvline(old, color=_COLORS["old"], ls="--", lw=1.2, zorder=2, label=_old_label(old) if label else None)
    if isinstance(t, (int, float)) and t > 0:
        ax.axvline(t, color=_COLORS["threshold"], lw=1.8, zorder=6, label=f"threshold {t}" if label else None)
    elif label:
        top = f" (up to {rng[1]:g})" if rng is not None else ""
        text = (
            "always offloaded (threshold 0)"
            if t == 0
            else f"never offloaded: it does not pay at any calibrated size{top}"
        )
        ax.text(
            0.5,
            0.97,
            text,
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=11,
            fontweight="bold",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.5"},
            zorder=7,
        )


def _placeholder(profile: Mapping[str, Any], key: str, entry: Mapping[str, Any], reason: str) -> Figure:
    fig = Figure(figsize=(9, 2.6), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    ax.text(
        0.5,
        0.5,
        f"{key}\nstatus {entry.get('status', '?')}: nothing to plot\n{_wrap(str(reason), 100)}",
        ha="center",
        va="center",
        fontsize=10,
        transform=ax.transAxes,
    )
    fig.suptitle(f"{key} ({_host_label(profile)})", fontsize=11)
    return fig
