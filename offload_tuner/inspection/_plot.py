"""Figures of a profile: measured samples, fitted curves, thresholds (matplotlib; never imported by the runtime).

The one place for plots, shared by ``offload-tuner plot`` and the notebooks in ``notebooks/``:

* :func:`kernel_figure` — one kernel: samples, fitted curves, threshold and its interval, validation round
  trips, and the compute fit's residuals;
* :func:`overview_figure` — every kernel's threshold and interval against its calibrated range;
* :func:`comparison_table` / :func:`comparison_figure` — two profiles (e.g. two hosts) kernel by kernel;
* :func:`threshold_vs_budget_figure` — what-if: thresholds recomputed from the stored models under
  other loop budgets (nothing is measured);
* :func:`write_pngs` — one PNG per kernel plus ``overview.png``.

Figures are built with :class:`matplotlib.figure.Figure`, not pyplot: no window, no global figure list to
leak, and each call returns a figure the caller saves or displays. Everything is read from the profile's
JSON data (a ``dict``); the host is never checked, so a profile from another machine plots fine.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

if (
    "matplotlib.pyplot" not in sys.modules
    and not os.environ.get("MPLBACKEND")  # Jupyter's kernel sets it to its inline backend
    and sys.platform not in ("win32", "darwin")
    and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
):
    matplotlib.use("Agg")  # no display: never try a GUI backend if someone imports pyplot later

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from offload_tuner.inspection._report import format_interval, format_threshold
from offload_tuner.runtime._policy import (
    KernelCosts,
    PolicyKnobs,
    TransportModel,
    predict,
    recompute_thresholds,
)

OLD_CONSTANT = 256
"""The hand-picked ``offload_if=len(x) >= 256`` the per-kernel thresholds replace (drawn for reference)."""

_COLORS = {
    "compute": "tab:blue",
    "caller_serial": "tab:orange",
    "loop": "tab:red",
    "latency": "tab:purple",
    "period": "tab:green",
    "threshold": "black",
    "interval": "gold",
    "old": "0.45",
    "extrapolated": "0.88",
}


# ------------------------------------------------------------------------------------------ formatting


def _fmt_seconds(value: float, _pos: Any = None) -> str:
    if value <= 0 or not math.isfinite(value):
        return ""
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if value >= scale * 0.9999:
            return f"{value / scale:g} {unit}"
    return f"{value:.0e} s"


def _fmt_size(value: float, _pos: Any = None) -> str:
    if value <= 0 or not math.isfinite(value):
        return ""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _log_axis(axis: Any, formatter: Any) -> None:
    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(formatter))
    axis.set_minor_formatter(NullFormatter())


def _host_label(profile: Mapping[str, Any]) -> str:
    host = profile.get("host") or {}
    executor = profile.get("executor") or {}
    parts = [f"host {host.get('hostname', '?')}"]
    if host.get("logical_cores"):
        parts.append(f"{host['logical_cores']} cores")
    if host.get("python_version") or host.get("python_minor"):
        parts.append(f"Python {host.get('python_version') or host.get('python_minor')}")
    if executor.get("kind"):
        parts.append(f"{executor['kind']} pool x{executor.get('workers', '?')}")
    return ", ".join(parts)


def _pct(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _short(key: str) -> str:
    return key.rsplit(":", 1)[-1]


# -------------------------------------------------------------------------------------- profile access


def _kernels(profile: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    kernels = profile.get("kernels")
    if not isinstance(kernels, Mapping):
        raise ValueError("profile data has no 'kernels' object")
    return kernels


def _entry(profile: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    kernels = _kernels(profile)
    if key not in kernels:
        raise KeyError(f"kernel {key!r} is not in the profile (it has: {', '.join(kernels) or 'none'})")
    return kernels[key]


def _costs(entry: Mapping[str, Any]) -> KernelCosts | None:
    if "costs" not in entry:
        return None
    return KernelCosts.from_json(entry["costs"])


def _transport(profile: Mapping[str, Any]) -> TransportModel | None:
    try:
        return TransportModel.from_json(profile["transport"]["model"])
    except (KeyError, TypeError, ValueError):
        return None


def _knobs(profile: Mapping[str, Any]) -> PolicyKnobs:
    return PolicyKnobs.from_json(profile.get("policy") or {})


def _calibrated_range(entry: Mapping[str, Any], costs: KernelCosts | None) -> tuple[float, float] | None:
    rng = entry.get("calibrated_range")
    if isinstance(rng, (list, tuple)) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng):
        return float(rng[0]), float(rng[1])
    return costs.compute.size_range if costs is not None else None


def _interval(entry: Mapping[str, Any]) -> tuple[int | None, int | None]:
    interval = entry.get("interval")
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        return interval[0], interval[1]
    return None, None


def _mad(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    med = statistics.median(values)
    return statistics.median(abs(v - med) for v in values)


def _series(samples: Mapping[str, Any], name: str) -> list[tuple[float, float, float, list[float]]]:
    """(size, median, MAD, raw values) for each size with a positive median, from ``samples``."""
    sizes = samples.get("size") or []
    medians = samples.get(f"{name}_s") or []
    raws = samples.get(f"{name}_values_s") or [[] for _ in sizes]
    mads = samples.get(f"{name}_mad_s")
    out = []
    for i, (n, med) in enumerate(zip(sizes, medians)):
        raw = [v for v in (raws[i] if i < len(raws) else []) if isinstance(v, (int, float)) and v > 0]
        if not (isinstance(n, (int, float)) and n > 0 and isinstance(med, (int, float)) and med > 0):
            continue
        mad = mads[i] if mads is not None and i < len(mads) else _mad(raw)
        out.append((float(n), float(med), float(mad), raw))
    return out


def _geomspace(lo: float, hi: float, count: int) -> list[float]:
    if hi <= lo:
        return [lo]
    step = math.log(hi / lo) / (count - 1)
    return [lo * math.exp(step * i) for i in range(count)]


# --------------------------------------------------------------------------------------- kernel figure


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
    transport = _transport(profile_data)
    knobs = _knobs(profile_data)
    t = entry.get("threshold")
    lo_i, hi_i = _interval(entry)
    rng = _calibrated_range(entry, costs)
    samples = entry.get("samples") or {}
    compute = _series(samples, "compute")
    caller = _series(samples, "caller_serial")
    validation = entry.get("validation") or {}

    # x extent: the calibrated range, the threshold, its interval and the old constant, with some margin.
    points = [OLD_CONSTANT] + [n for n, *_ in compute]
    points += [v for v in (t, lo_i, hi_i) if isinstance(v, (int, float)) and v > 0]
    if rng is not None:
        points += [v for v in rng if v > 0]
    xmin, xmax = max(min(points) / 2.5, 0.5), max(points) * 2.5
    grid = _geomspace(xmin, xmax, 160)

    load = entry.get("load") or {}
    fig = Figure(figsize=(11.5, 9.6 if load else 7.2), layout="constrained")
    if load:
        ax, res, under = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3.2, 1, 1.6]})
    else:
        ax, res = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3.2, 1]})
        under = None
    for a in (ax, res) if under is None else (ax, res, under):
        a.set_xscale("log")
        _shade_context(a, xmin, xmax, rng, t, lo_i, hi_i)
    ax.set_yscale("log")

    # Fitted curves (lines) under the measured points.
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
    if transport is not None:
        preds = [predict(costs, transport, knobs, n) for n in grid]
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

    # Measured samples: raw timings faintly, medians with MAD error bars.
    for series, name, color, marker in (
        (compute, "C(n)", _COLORS["compute"], "o"),
        (caller, "Sc(n)", _COLORS["caller_serial"], "s"),
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

    # Validation: real offloaded round trips against the predicted latency.
    v_sizes = validation.get("size") or []
    v_meas = validation.get("measured_s") or []
    v_pred = validation.get("predicted_s") or []
    if v_sizes and v_meas:
        ax.scatter(
            v_sizes,
            v_meas,
            marker="D",
            s=46,
            facecolor="none",
            edgecolor=_COLORS["latency"],
            lw=1.6,
            zorder=5,
            label=f"validation: measured offloaded round trips "
            f"(model err {_pct(validation.get('median_abs_rel_error'))})",
        )
        for n, m, p in zip(v_sizes, v_meas, v_pred):
            ax.plot([n, n], [m, p], color=_COLORS["latency"], lw=1, zorder=5)

    workload = entry.get("workload_range")
    if isinstance(workload, (list, tuple)) and len(workload) == 2:
        # The threshold minimises the makespan of a mix of sizes over this range (see _policy), so it need
        # not sit where any single-size curve crosses C(n).
        ax.plot(
            [max(workload[0], xmin), min(workload[1], xmax)],
            [0.012, 0.012],
            color="0.25",
            lw=3,
            solid_capstyle="butt",
            transform=ax.get_xaxis_transform(),
            zorder=6,
            label=f"workload range {workload[0]:g}..{workload[1]:g}: the mix of sizes\n"
            f"the threshold is chosen for (log-uniform)",
        )
    _threshold_marks(ax, t, lo_i, hi_i, rng, label=True)
    ax.set_xlim(xmin, xmax)
    _log_axis(ax.yaxis, _fmt_seconds)
    ax.set_ylabel("seconds per call (log)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)

    # Residuals of the compute fit at each measured size.
    if compute:
        rel = [
            (n, med / costs.compute.predict(n) - 1, mad / costs.compute.predict(n), raw)
            for n, med, mad, raw in compute
            if costs.compute.predict(n) > 0
        ]
        raw_x = [n for n, *_, raw in rel for _ in raw]
        raw_y = [100 * (v / costs.compute.predict(n) - 1) for n, *_, raw in rel for v in raw]
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
    else:
        res.text(0.5, 0.5, "no compute samples stored", transform=res.transAxes, ha="center", va="center")
    res.axhline(0, color="0.3", lw=0.8)
    _threshold_marks(res, t, lo_i, hi_i, rng, label=False)
    res.set_ylabel("C(n) fit residual\n(measured / fit − 1, %)", fontsize=9)
    bottom = res if under is None else under
    if under is not None:
        _load_panel(under, load, t, xmin, xmax)
        _threshold_marks(under, t, lo_i, hi_i, rng, label=False)
    bottom.set_xlabel("input size n (the kernel's own size units, log)")
    _log_axis(bottom.xaxis, _fmt_size)
    res.grid(True, which="major", alpha=0.3)

    fit = entry.get("fit_error") or {}
    status = entry.get("status", "ok")
    status_note = {"untrusted": " (untrusted: the runtime uses the kernel's default)"}.get(status, "")
    form = costs.compute.form
    if form == "loglog_linear_interp":  # its residuals at the medians are ~0 by construction
        form = "log-log interpolation through the medians"
    fig.suptitle(
        f"{key}: threshold {format_threshold(t)}, interval {format_interval([lo_i, hi_i])}\n"
        f"{_host_label(profile_data)}; status {status}{status_note}\n"
        f"compute fit: {form}, held-out (cross-validated) error {_pct(fit.get('compute', costs.compute.cv_error))}",
        fontsize=11,
    )
    return fig


def _load_panel(ax: Any, load: Mapping[str, Any], t: Any, xmin: float, xmax: float) -> None:
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
        x = where(c["threshold"])
        lo, hi = min(c["makespan_s"]) * 1e3, max(c["makespan_s"]) * 1e3
        color = "tab:green" if c["threshold"] in tied else "0.35"
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
    ax.scatter([], [], marker="o", facecolor="white", edgecolor="0.35", label="measured makespan: median, min..max")
    ax.scatter([], [], marker="x", color=_COLORS["loop"], label="corrected model's prediction")
    ax.set_ylabel(f"makespan under load (ms)\n{load.get('callers')} callers, {load.get('calls')} calls", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)


def _shade_context(
    ax: Any, xmin: float, xmax: float, rng: tuple[float, float] | None, t: Any, lo_i: Any, hi_i: Any
) -> None:
    """Greyed extrapolation region, shaded threshold interval, the old constant (on any size axis)."""
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


def _threshold_marks(ax: Any, t: Any, lo_i: Any, hi_i: Any, rng: tuple[float, float] | None, *, label: bool) -> None:
    ax.axvline(
        OLD_CONSTANT,
        color=_COLORS["old"],
        ls="--",
        lw=1.2,
        zorder=2,
        label=f"old constant {OLD_CONSTANT}" if label else None,
    )
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


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:4]) or text


# -------------------------------------------------------------------------------------- overview figure


def overview_figure(profile_data: Mapping[str, Any]) -> Figure:
    """Every kernel on one log size axis: calibrated range, threshold with interval, ``never``, failures."""
    kernels = _kernels(profile_data)
    keys = list(kernels)
    rows = []
    for key in keys:
        entry = kernels[key]
        try:
            costs = _costs(entry)
        except (KeyError, TypeError, ValueError):
            costs = None
        rows.append((key, entry, _calibrated_range(entry, costs)))
    values = [OLD_CONSTANT]
    for _, entry, rng in rows:
        values += [v for v in (entry.get("threshold"), *_interval(entry)) if isinstance(v, (int, float)) and v > 0]
        values += [v for v in (rng or ()) if v > 0]
    xmin, xmax = max(min(values) / 3, 0.5), max(values) * 3

    fig = Figure(figsize=(11, 1.2 + 0.62 * max(len(rows), 1)), layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.axvline(OLD_CONSTANT, color=_COLORS["old"], ls="--", lw=1.2, label=f"old constant {OLD_CONSTANT}")
    labelled: set[str] = set()

    def once(name: str) -> str:
        if name in labelled:
            return "_" + name
        labelled.add(name)
        return name

    for i, (_key, entry, rng) in enumerate(rows):
        status = entry.get("status", "ok")
        t = entry.get("threshold")
        lo_i, hi_i = _interval(entry)
        if rng is not None:
            ax.hlines(
                i,
                max(rng[0], xmin),
                rng[1],
                lw=9,
                color=_COLORS["extrapolated"],
                zorder=1,
                label=once("calibrated sizes"),
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
            continue
        if lo_i is not None:
            left = max(float(lo_i), xmin)
            right = xmax if hi_i is None else float(hi_i)
            ax.hlines(
                i, left, right, lw=3, color="goldenrod", zorder=2, label=once("interval (to the edge: upper is never)")
            )
            for end in (left, right):
                if end < xmax:
                    ax.vlines(end, i - 0.18, i + 0.18, color="goldenrod", lw=1.5, zorder=2)
        color = "tab:blue" if status == "ok" else "tab:gray"
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
    ax.set_yticks(range(len(rows)), [_wrap(k, 48) for k in keys], fontsize=9)
    _log_axis(ax.xaxis, _fmt_size)
    ax.set_xlabel("input size n (each kernel's own size units, log)")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)
    created = profile_data.get("created")
    ax.set_title(
        f"Offload thresholds: {_host_label(profile_data)}" + (f", calibrated {created}" if created else ""), fontsize=11
    )
    return fig


# ------------------------------------------------------------------------------------------ comparison


def _bounds(entry: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """The threshold interval as numbers, ``never`` (``None``) as +inf; ``None`` when unknown."""
    if entry is None or entry.get("status") == "failed":
        return None
    lo, hi = _interval(entry)
    t = entry.get("threshold")
    if lo is None and hi is None and "interval" not in entry:
        lo = hi = t
    inf = math.inf
    lo_v = inf if lo is None else float(lo)
    hi_v = inf if hi is None else float(hi)
    return (min(lo_v, hi_v), max(lo_v, hi_v))


def _compute_ratio(ea: Mapping[str, Any] | None, eb: Mapping[str, Any] | None) -> tuple[float | None, list[float]]:
    """Median of C_b(n) / C_a(n) over the sizes both profiles measured (else 5 sizes across the overlap)."""
    try:
        ca, cb = (_costs(e) if e is not None else None for e in (ea, eb))
    except (KeyError, TypeError, ValueError):
        return None, []
    if ca is None or cb is None:
        return None, []
    sa = {float(n) for n in (ea.get("samples") or {}).get("size") or [] if n > 0}
    sb = {float(n) for n in (eb.get("samples") or {}).get("size") or [] if n > 0}
    sizes = sorted(sa & sb)
    if not sizes:
        lo = max(ca.compute.size_range[0], cb.compute.size_range[0], 1.0)
        hi = min(ca.compute.size_range[1], cb.compute.size_range[1])
        if hi < lo:
            return None, []
        sizes = sorted(set(_geomspace(lo, hi, 5)))
    ratios = [cb.compute.predict(n) / ca.compute.predict(n) for n in sizes if ca.compute.predict(n) > 0]
    return (statistics.median(ratios) if ratios else None), sizes


def comparison_table(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Two profiles kernel by kernel (kernels of ``a`` first, then those only in ``b``).

    ``threshold_ratio`` is ``threshold_b / threshold_a`` (``None`` unless both are positive sizes; ``note``
    says why); ``intervals_overlap`` compares the intervals with ``never`` as +infinity (``None`` if
    either is unknown); ``compute_ratio`` is the median of ``C_b(n) / C_a(n)`` from the fitted compute
    models at the sizes both profiles measured (``compute_sizes``; 5 sizes across the overlapping
    calibrated range when they share none).
    """
    ka, kb = _kernels(a), _kernels(b)
    rows = []
    for key in list(ka) + [k for k in kb if k not in ka]:
        ea, eb = ka.get(key), kb.get(key)
        ta = ea.get("threshold") if ea is not None else None
        tb = eb.get("threshold") if eb is not None else None
        ratio, note = None, ""
        if ea is None or eb is None:
            note = "only in " + ("b" if ea is None else "a")
        elif ea.get("status") == "failed" or eb.get("status") == "failed":
            note = "failed in " + " and ".join(s for s, e in (("a", ea), ("b", eb)) if e.get("status") == "failed")
        elif ta is None and tb is None:
            note = "never in both"
        elif ta is None or tb is None:
            note = "never in " + ("a" if ta is None else "b")
        elif ta == 0 or tb == 0:
            note = "always in " + " and ".join(s for s, v in (("a", ta), ("b", tb)) if v == 0)
        else:
            ratio = tb / ta
        ba, bb = _bounds(ea), _bounds(eb)
        overlap = None if ba is None or bb is None else (ba[0] <= bb[1] and bb[0] <= ba[1])
        compute_ratio, sizes = _compute_ratio(ea, eb)
        rows.append(
            {
                "kernel": key,
                "status_a": ea.get("status", "ok") if ea is not None else None,
                "status_b": eb.get("status", "ok") if eb is not None else None,
                "threshold_a": ta,
                "threshold_b": tb,
                "threshold_ratio": ratio,
                "interval_a": list(_interval(ea)) if ea is not None and "interval" in ea else None,
                "interval_b": list(_interval(eb)) if eb is not None and "interval" in eb else None,
                "intervals_overlap": overlap,
                "compute_ratio": compute_ratio,
                "compute_sizes": sizes,
                "note": note,
            }
        )
    return rows


def comparison_figure(a: Mapping[str, Any], b: Mapping[str, Any], labels: tuple[str, str] | None = None) -> Figure:
    """Left: each kernel's threshold and interval in ``a`` and ``b``. Right: compute time ratio b/a."""
    rows = comparison_table(a, b)
    la, lb = labels or (f"a: {_host_label(a)}", f"b: {_host_label(b)}")
    values = [OLD_CONSTANT]
    for prof in (a, b):
        for entry in _kernels(prof).values():
            values += [v for v in (entry.get("threshold"), *_interval(entry)) if isinstance(v, (int, float)) and v > 0]
    # Real sizes up to ``top``; beyond a gap, a separate "never" column (not a size).
    xmin, top = max(min(values) / 3, 0.5), max(values) * 2
    never_x = top * 6
    xmax = never_x * 2

    fig = Figure(figsize=(12, 1.6 + 0.62 * max(len(rows), 1)), layout="constrained")
    ax, rx = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [2.4, 1]})
    ax.set_xscale("log")
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.axvline(OLD_CONSTANT, color=_COLORS["old"], ls="--", lw=1.2, label=f"old constant {OLD_CONSTANT}")
    ax.axvspan(never_x / 1.7, xmax, color="0.93", lw=0, zorder=0)
    for offset, side, label, marker, color in ((-0.14, "a", la, "o", "tab:blue"), (0.14, "b", lb, "s", "tab:orange")):
        first = True
        for i, row in enumerate(rows):
            t = row[f"threshold_{side}"]
            status = row[f"status_{side}"]
            y = i + offset
            if status is None or status == "failed":
                ax.text(
                    xmin * 1.1,
                    y,
                    f"{side}: {'missing' if status is None else 'failed'}",
                    va="center",
                    fontsize=8,
                    color=color,
                )
                continue
            interval = row[f"interval_{side}"] or [None, None]
            if interval[0] is not None:
                right = never_x if interval[1] is None else interval[1]
                ax.hlines(y, max(interval[0], xmin), right, color=color, lw=2, alpha=0.6)
            x = never_x if t is None else (xmin * 1.1 if t == 0 else t)
            if t == 0:
                ax.annotate("always", (x, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
            ax.plot([x], [y], marker, color=color, ms=7, label=label if first else None, zorder=3)
            first = False
    ax.set_yticks(range(len(rows)), [_wrap(r["kernel"], 44) for r in rows], fontsize=9)
    decades = [10.0**k for k in range(math.floor(math.log10(xmin)), math.ceil(math.log10(top)) + 1)]
    ticks = [d for d in decades if xmin <= d <= top]
    ax.set_xticks(ticks + [never_x], [_fmt_size(d) for d in ticks] + ["never"])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("threshold (input size, log; bars: interval)")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, frameon=False, ncol=1)
    ax.set_title("thresholds", fontsize=10)

    rx.set_xscale("log")
    ratios = [r["compute_ratio"] for r in rows]
    finite = [v for v in ratios if v]
    span = max([2.0] + [max(v, 1 / v) * 1.5 for v in finite])
    rx.set_xlim(1 / span, span)
    rx.set_xticks([v for v in (0.1, 0.25, 0.5, 1, 2, 4, 10) if 1 / span <= v <= span])
    rx.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"×{v:g}"))
    rx.xaxis.set_minor_formatter(NullFormatter())
    rx.axvline(1, color="0.3", lw=1)
    for i, v in enumerate(ratios):
        if v:
            rx.barh(
                i,
                v - 1 if v >= 1 else 1 - v,
                left=1 if v >= 1 else v,
                height=0.45,
                color="tab:red" if v > 1 else "tab:green",
                alpha=0.7,
            )
            rx.annotate(
                f"×{v:.2f}",
                (v, i),
                xytext=(4 if v >= 1 else -4, 0),
                textcoords="offset points",
                ha="left" if v >= 1 else "right",
                va="center",
                fontsize=8,
            )
        else:
            rx.text(1, i, "n/a", ha="center", va="center", fontsize=8, color="0.4")
    rx.set_xlabel("fitted compute time b / a, median over\nthe sizes both measured (>1: b slower)")
    rx.set_title("compute model ratio", fontsize=10)
    rx.grid(True, axis="x", which="major", alpha=0.3)
    fig.suptitle(f"a: {_host_label(a)}\nb: {_host_label(b)}", fontsize=10)
    return fig


# ------------------------------------------------------------------------------------------- what-if


def threshold_vs_budget_figure(
    profile_data: Mapping[str, Any], budgets_s: Sequence[float], knobs: PolicyKnobs | None = None
) -> Figure:
    """Thresholds recomputed from the stored models for each loop budget (other knobs as in ``knobs``,
    default the profile's). Dashed horizontal lines: no budget. ``never`` is drawn on a top strip."""
    base = knobs or _knobs(profile_data)
    budgets = sorted(b for b in budgets_s if b and b > 0)
    if not budgets:
        raise ValueError("budgets_s needs at least one positive budget")
    without = recompute_thresholds(profile_data, dataclasses.replace(base, loop_budget_s=None))
    per_budget = [recompute_thresholds(profile_data, dataclasses.replace(base, loop_budget_s=b)) for b in budgets]
    keys = list(without)
    found = [v for v in without.values() if v] + [v for d in per_budget for v in d.values() if v]
    found.append(OLD_CONSTANT)
    ymin, ymax = max(min(found) / 3, 0.5), max(found) * 3
    never_y = ymax * 4

    fig = Figure(figsize=(11, 6), layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = [b * 1e3 for b in budgets]
    colors = matplotlib.colormaps["tab10"]
    for i, key in enumerate(keys):
        color = colors(i % 10)
        ys = [d.get(key) for d in per_budget]
        ax.plot(
            xs, [never_y if y is None else max(y, ymin) for y in ys], "o-", color=color, ms=4, lw=1.5, label=_short(key)
        )
        t0 = without[key]
        ax.axhline(never_y if t0 is None else max(t0, ymin), color=color, ls="--", lw=1, alpha=0.6)
    ax.axhline(OLD_CONSTANT, color=_COLORS["old"], ls=":", lw=1.2, label=f"old constant {OLD_CONSTANT}")
    ax.axhspan(never_y / 1.8, never_y * 1.8, color="0.93", zorder=0)
    ax.set_ylim(ymin, never_y * 1.8)
    ax.set_xlim(xs[0] / 1.3, xs[-1] * 1.3)
    _log_axis(ax.yaxis, _fmt_size)
    yt = [v for v in ax.get_yticks() if ymin <= v <= ymax]
    ax.set_yticks(yt + [never_y], [_fmt_size(v) for v in yt] + ["never"])
    ax.set_xticks(xs, [f"{v:g}" for v in xs])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(
        "loop budget in ms (log): calls predicted to block the loop longer are offloaded if that blocks it less"
    )
    ax.set_ylabel("threshold (input size, log)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
        borderaxespad=0,
        title="kernel (dashed: no budget)",
        title_fontsize=8,
    )
    ax.set_title(
        f"What-if from stored models (nothing measured): {_host_label(profile_data)}; "
        f"{base.concurrency} callers, {base.workers} workers, {base.cores} cores",
        fontsize=10,
    )
    return fig


# ------------------------------------------------------------------------------------------------ files


def png_name(key: str) -> str:
    """A safe file name for a kernel key: ``offload_tuner_kernels.clustering:cluster_observations`` ->
    ``offload_tuner_kernels.clustering-cluster_observations.png``."""
    stem = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in key.replace(":", "-")).strip(".-") or "kernel"
    return f"{stem[:150]}.png"


def write_pngs(profile_data: Mapping[str, Any], out_dir: str | os.PathLike[str], *, dpi: int = 100) -> list[Path]:
    """One PNG per kernel with fitted costs (failed kernels appear only in the overview), then ``overview.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used = {"overview.png"}
    for key, entry in _kernels(profile_data).items():
        if "costs" not in entry:
            continue
        name = png_name(key)
        stem, k = name[:-4], 2
        while name in used:
            name, k = f"{stem}_{k}.png", k + 1
        used.add(name)
        path = out / name
        kernel_figure(profile_data, key).savefig(path, dpi=dpi)
        written.append(path)
    path = out / "overview.png"
    overview_figure(profile_data).savefig(path, dpi=dpi)
    written.append(path)
    return written
