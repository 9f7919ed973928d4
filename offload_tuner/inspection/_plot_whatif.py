"""What-if: thresholds recomputed from a profile's stored models under other loop budgets (nothing is measured)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from offload_tuner.inspection._plot_common import (
    _COLORS,
    _compare_with,
    _fmt_size,
    _host_label,
    _kernels,
    _knobs,
    _log_axis,
    _old_label,
    _short,
)
from offload_tuner.runtime._policy import PolicyKnobs, recompute_thresholds


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
    olds = sorted({v for key, entry in _kernels(profile_data).items() if (v := _compare_with(entry, key)) is not None})
    found: list[float] = [float(v) for v in without.values() if v]
    found += [float(v) for d in per_budget for v in d.values() if v]
    found += olds
    if not found:  # every kernel never (or always) offloads: any decade will do
        found = [1.0, 1000.0]
    ymin, ymax = max(min(found) / 3, 0.5), max(found) * 3
    never_y = ymax * 4

    fig = Figure(figsize=(11, 6), layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = [b * 1e3 for b in budgets]
    colors = matplotlib.colormaps["tab10"]
    for i, key in enumerate(without):
        color = colors(i % 10)
        ys = [d.get(key) for d in per_budget]
        ax.plot(
            xs, [never_y if y is None else max(y, ymin) for y in ys], "o-", color=color, ms=4, lw=1.5, label=_short(key)
        )
        t0 = without[key]
        ax.axhline(never_y if t0 is None else max(t0, ymin), color=color, ls="--", lw=1, alpha=0.6)
    for old in olds:
        ax.axhline(old, color=_COLORS["old"], ls=":", lw=1.2, label=_old_label(old))
    ax.axhspan(never_y / 1.8, never_y * 1.8, color="0.93", zorder=0)
    ax.set_ylim(ymin, never_y * 1.8)
    ax.set_xlim(xs[0] / 1.3, xs[-1] * 1.3)
    _axes(ax, xs, ymin, ymax, never_y)
    ax.set_title(
        f"What-if from stored models (nothing measured): {_host_label(profile_data)}; "
        f"{base.concurrency} callers, {base.workers} workers, {base.cores} cores",
        fontsize=10,
    )
    return fig


def _axes(ax: Any, xs: list[float], ymin: float, ymax: float, never_y: float) -> None:
    """Ticks (``never`` on its own strip at the top), labels and the legend."""
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
