"""Two profiles (e.g. two hosts) kernel by kernel: a table of threshold and compute ratios, and its figure."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from offload_tuner.inspection._plot_common import (
    _compare_with,
    _costs,
    _fmt_size,
    _geomspace,
    _host_label,
    _interval,
    _kernels,
    _wrap,
)
from offload_tuner.inspection._plot_overview import old_marks


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
    if ea is None or eb is None:
        return None, []
    try:
        ca, cb = _costs(ea), _costs(eb)
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
    ka, kb = _kernels(a), _kernels(b)
    olds = [_compare_with(ka.get(r["kernel"]) or kb.get(r["kernel"]), r["kernel"]) for r in rows]
    values: list[float] = [v for v in olds if v is not None]
    for prof in (a, b):
        for entry in _kernels(prof).values():
            values += [v for v in (entry.get("threshold"), *_interval(entry)) if isinstance(v, (int, float)) and v > 0]
    if not values:  # no positive threshold on either side: any decade will do
        values = [1.0, 1000.0]
    # Real sizes up to ``top``; beyond a gap, a separate "never" column (not a size).
    xmin, top = max(min(values) / 3, 0.5), max(values) * 2

    fig = Figure(figsize=(12, 1.6 + 0.62 * max(len(rows), 1)), layout="constrained")
    ax, rx = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [2.4, 1]})
    old_marks(ax, olds)
    _threshold_panel(ax, rows, labels or (f"a: {_host_label(a)}", f"b: {_host_label(b)}"), xmin, top)
    _ratio_panel(rx, [r["compute_ratio"] for r in rows])
    fig.suptitle(f"a: {_host_label(a)}\nb: {_host_label(b)}", fontsize=10)
    return fig


def _threshold_panel(ax: Any, rows: list[dict[str, Any]], labels: tuple[str, str], xmin: float, top: float) -> None:
    """Each kernel's threshold and interval in a and b, "never" in its own column beyond the sizes."""
    never_x = top * 6
    xmax = never_x * 2
    ax.set_xscale("log")
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.axvspan(never_x / 1.7, xmax, color="0.93", lw=0, zorder=0)
    for offset, side, label, marker, color in (
        (-0.14, "a", labels[0], "o", "tab:blue"),
        (0.14, "b", labels[1], "s", "tab:orange"),
    ):
        _side(ax, rows, offset, side, label, marker, color, xmin, never_x)
    ax.set_yticks(range(len(rows)), [_wrap(r["kernel"], 44) for r in rows], fontsize=9)
    decades = [10.0**k for k in range(math.floor(math.log10(xmin)), math.ceil(math.log10(top)) + 1)]
    ticks = [d for d in decades if xmin <= d <= top]
    ax.set_xticks(ticks + [never_x], [_fmt_size(d) for d in ticks] + ["never"])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("threshold (input size, log; bars: interval)")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, frameon=False, ncol=1)
    ax.set_title("thresholds", fontsize=10)


def _side(
    ax: Any,
    rows: list[dict[str, Any]],
    offset: float,
    side: str,
    label: str,
    marker: str,
    color: str,
    xmin: float,
    never_x: float,
) -> None:
    """One profile's thresholds (a marker) and intervals (a bar), a row per kernel, nudged by ``offset``."""
    first = True
    for i, row in enumerate(rows):
        t = row[f"threshold_{side}"]
        status = row[f"status_{side}"]
        y = i + offset
        if status is None or status == "failed":
            text = f"{side}: {'missing' if status is None else 'failed'}"
            ax.text(xmin * 1.1, y, text, va="center", fontsize=8, color=color)
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


def _ratio_panel(rx: Any, ratios: list[float | None]) -> None:
    """The fitted compute time b / a per kernel, as bars from 1 (red: b slower)."""
    rx.set_xscale("log")
    finite = [v for v in ratios if v]
    span = max([2.0] + [max(v, 1 / v) * 1.5 for v in finite])
    rx.set_xlim(1 / span, span)
    rx.set_xticks([v for v in (0.1, 0.25, 0.5, 1, 2, 4, 10) if 1 / span <= v <= span])
    rx.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"×{v:g}"))
    rx.xaxis.set_minor_formatter(NullFormatter())
    rx.axvline(1, color="0.3", lw=1)
    for i, v in enumerate(ratios):
        if not v:
            rx.text(1, i, "n/a", ha="center", va="center", fontsize=8, color="0.4")
            continue
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
    rx.set_xlabel("fitted compute time b / a, median over\nthe sizes both measured (>1: b slower)")
    rx.set_title("compute model ratio", fontsize=10)
    rx.grid(True, axis="x", which="major", alpha=0.3)
