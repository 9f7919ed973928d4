"""Plain-text tables of a profile, shared by ``calibrate`` and ``show`` (no third-party imports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


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


def compare_with_value(value: Any, where: str) -> float | None:
    """A ``compare_with`` (plan or profile entry: the constant a kernel's figures compare with, e.g. the old
    ``offload_if=len(x) >= 256``) as a number, None when absent. Off unless set: most users have no old constant.
    Anything else is an error naming ``where`` and the value, not a figure silently drawn without it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: compare_with must be a number (the constant to compare with), got {value!r}")
    if not (0 < value < float("inf")):
        raise ValueError(f"{where}: compare_with must be a size > 0 (the constant to compare with), got {value!r}")
    return value


def summary_rows(profile: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per kernel: what the final table shows, as data (``show --json`` prints these)."""
    rows = []
    for key, entry in profile.get("kernels", {}).items():
        at = entry.get("at_threshold") or {}
        fit = entry.get("fit_error") or {}
        load = entry.get("load") or {}
        thread = entry.get("thread") or {}
        shared = entry.get("shared") or {}
        rows.append(
            {
                "kernel": key,
                "status": entry.get("status", "ok"),
                "threshold": entry.get("threshold"),
                "interval": entry.get("interval"),
                "measured_best": load.get("best"),
                "tied": load.get("tied"),
                "candidates_measured": len(load.get("candidates", [])) or None,
                "makespan_error_under_load": load.get("model_error"),
                "reason": load.get("reason"),
                "fit_error_compute": fit.get("compute"),
                "fit_error_offload_latency": fit.get("offload_latency"),
                "inline_s_at_threshold": at.get("inline_s"),
                "offload_loop_s_at_threshold": at.get("offload_loop_s"),
                "offload_latency_s_at_threshold": at.get("offload_latency_s"),
                "thread_gil_hold": thread.get("gil_hold"),
                "thread_threshold": thread.get("threshold"),
                "thread_reason": thread.get("reason"),
                "shared_lane": None if "retuned_to" in shared else shared.get("lane"),  # retune owns it now
                "shared_alone_threshold": shared.get("alone"),
                "workload_range": entry.get("workload_range"),
                "workload_source": entry.get("workload_source"),
                "error": entry.get("error"),
            }
        )
    return rows


_SOURCES = {
    "plan": "stated by the plan's workload_range",
    "kernel": "stated by @kernel(workload=...)",
    "assumed": "assumed: the measured range, no mix was stated",
}


def mix_text(entry: Mapping[str, Any]) -> str | None:
    """``64..16384 (stated by ...)``: the sizes a kernel's threshold was weighed over and where they came from
    (``source not recorded`` for a profile written before the source was); None without a mix."""
    workload = entry.get("workload_range")
    if not workload:
        return None
    source = _SOURCES.get(entry.get("workload_source") or "", "source not recorded")
    return f"{workload[0]:g}..{workload[1]:g} ({source})"


def format_mixes(profile: Mapping[str, Any], advise: bool = False) -> str:
    """One line per kernel with its mix; with ``advise`` (``calibrate``), how to state an assumed mix and why a
    stated mix's top was not measured."""
    lines = []
    for key, entry in profile.get("kernels", {}).items():
        text = mix_text(entry)
        if text is None:
            continue
        lines.append(f"  {key}: {text}")
        short = entry.get("ladder_short")
        if advise and entry.get("workload_source") == "assumed":
            lo, hi = entry["workload_range"]
            lines.append(
                f"    the threshold assumes production calls span {lo:g}..{hi:g}; state the real sizes with "
                f"@kernel(workload=(lo, hi)) or the plan's workload_range and calibrate again"
            )
        if advise and short:
            lines.append(
                f"    the ladder measured up to {short['measured_top']:g}, not the mix's top {short['mix_top']:g}: "
                f"stopped by {short['why']}; above it the choice rests on the fits' extrapolation"
            )
    return "mix (the sizes each threshold was weighed over):\n" + "\n".join(lines) if lines else ""


def guard_text(entry: Mapping[str, Any]) -> str | None:
    """A kernel's guard as ``show`` and ``explain`` print it (None: no guard recorded)."""
    from offload_tuner.runtime._profile import GuardEntry

    guard = entry.get("guard")
    if not isinstance(guard, Mapping):
        return None
    measured = entry.get("calibrated_range")
    top = measured[1] if isinstance(measured, list) and len(measured) == 2 else None
    text = GuardEntry(guard["size"], guard["extrapolated"]).describe(top)
    return f"{text}: offloaded from there whatever the threshold"


def format_guards(profile: Mapping[str, Any]) -> str:
    """One line per kernel with a guard (the loop budget at sizes the threshold was not weighed over)."""
    lines = [f"  {key}: {text}" for key, entry in profile.get("kernels", {}).items() if (text := guard_text(entry))]
    return "loop budget at every size:\n" + "\n".join(lines) if lines else ""


def _alone(row: Mapping[str, Any], lane: str) -> str:
    """`` (alone T)`` where the shared stream moved this lane's threshold from the kernel's alone choice."""
    if row.get("shared_lane") != lane:
        return ""
    now = row["thread_threshold"] if lane == "thread" else row["threshold"]
    alone = row["shared_alone_threshold"]
    return "" if alone == now else f" (alone {format_threshold(alone)})"


def _under_load(row: Mapping[str, Any]) -> str:
    measured, tied = row["candidates_measured"], row["tied"] or []
    if not measured:
        return "-"
    return f"{measured} tried, " + ("one best" if len(tied) <= 1 else f"flat ({len(tied)} tie)")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _thread_lane(row: Mapping[str, Any]) -> str:
    """``from T (GIL 2%)``, ``never (GIL 95%)``, or ``-`` for a profile without the measurement."""
    hold = row["thread_gil_hold"]
    if hold is None:
        return "-"
    t = row["thread_threshold"]
    return f"{'never' if t is None else 'from ' + format_threshold(t)} (GIL {hold:.0%}){_alone(row, 'thread')}"


def format_table(profile: Mapping[str, Any]) -> str:
    headers = [
        "kernel",
        "threshold",
        "interval",
        "under load",
        "fit err",
        "load err",
        "inline@thr",
        "loop@thr",
        "latency@thr",
        "thread lane",
        "status",
    ]
    body = []
    for row in summary_rows(profile):
        body.append(
            [
                row["kernel"],
                format_threshold(row["threshold"]) + _alone(row, "process"),
                format_interval(row["interval"]),
                _under_load(row),
                _pct(row["fit_error_compute"]),
                _pct(row["makespan_error_under_load"]),
                format_seconds(row["inline_s_at_threshold"]),
                format_seconds(row["offload_loop_s_at_threshold"]),
                format_seconds(row["offload_latency_s_at_threshold"]),
                _thread_lane(row),
                row["status"] + (f": {row['error']}" if row["error"] else ""),
            ]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *body)] if body else [len(h) for h in headers]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    notes = (
        "interval: thresholds a rerun on this host may choose (between the nearest candidates measured worse); "
        "under load: candidates measured with the reference workload, and how many tied with the best (a flat "
        "basin, resolved by loop lag then CPU; `offload-tuner explain` says why); fit err: cross-validated error "
        "of the compute model; load err: predicted vs measured makespan under load, after correction; @thr: "
        "predicted per call at the threshold (inline; loop-thread time and latency offloaded); thread lane: from which "
        "size a kernel goes to a thread pool when one is installed (set_executors), and the share of its run time "
        "it held the GIL in a thread (measured; above 25% it never does); (alone T): calibrated with --shared, the "
        "threshold tuned on the kernels' shared stream, T the kernel's own"
    )
    return "\n".join(lines) + "\n" + notes


def format_load(load: Mapping[str, Any], threshold: int | None) -> str:
    """The concurrent phase of one kernel, for ``explain``: every candidate, the fit and the choice."""
    lo, hi = load["workload_range"]
    lines = [
        f"  under load ({load['callers']} callers, {load['calls']} calls: the log-uniform mix over {lo:g}..{hi:g} at its quantiles, "
        f"{load['rounds']} interleaved rounds{_steady_pass(load)}; noise {load['noise']:.1%} per run, so candidates within "
        f"{load['tie_band']:.0%} of the best tie):",
        "    threshold   offloaded  makespan median [min, max]       predicted  p99 loop lag  CPU",
    ]
    lines += _candidate_rows(
        load["candidates"], load.get("chosen", threshold), load["tied"], load.get("over_budget", ()), predicted=True
    )
    f = load["factors"]
    lines.append(
        f"  load factors (isolated model -> under load): inline x{f['inline']:.2f}, offloaded loop side "
        f"x{f['offload_loop']:.2f}, worker side x{f['offload_worker']:.2f}; predicted makespan error "
        f"{load['isolated_model_error']:.0%} before, {load['model_error']:.0%} after"
    )
    cap = load.get("budget_cap")
    lines.append(
        f"  the model proposed {format_threshold(load['isolated_model_threshold'])} (isolated), "
        f"{format_threshold(load['model_threshold'])} (corrected)"
        + ("" if cap is None else f"; the loop budget caps the threshold at {format_threshold(cap)}")
    )
    for skipped in (load.get("follow_up") or {}).get("skipped", ()):
        lines.append(
            f"  not measured: {format_threshold(skipped['threshold'])}, proposed by the corrected model: "
            f"{skipped['why']}"
        )
    tied = load["tied"]
    if len(tied) > 1:
        lines.append(
            f"  the basin is flat from threshold {format_threshold(tied[0])} to {format_threshold(tied[-1])}: whether "
            "the calls in between run inline or offloaded makes no difference the measurements can see"
        )
    lines.append(f"  why {format_threshold(threshold)}: {load['reason']}")
    return "\n".join(lines)


def _candidate_rows(
    candidates: Sequence[Mapping[str, Any]],
    chosen: int | None,
    tied: Sequence[int | None],
    over_budget: Sequence[int | None],
    predicted: bool = False,
) -> list[str]:
    """One line per measured candidate: medians over rounds, the chosen one starred, ties and lag ruled out
    marked."""
    lines = []
    for c in candidates:
        spans = c["makespan_s"]
        mid = len(spans) // 2
        mark = "*" if c["threshold"] == chosen else " "
        flag = "tie" if c["threshold"] in tied else ("lag" if c["threshold"] in over_budget else "   ")
        lines.append(
            f"   {mark}{format_threshold(c['threshold']):>9}  {c['offloaded']:>9}  "
            f"{format_seconds(sorted(spans)[mid]):>9} [{format_seconds(min(spans))}, "
            f"{format_seconds(max(spans))}] {flag}  "
            + (f"{format_seconds(c['predicted_s']):>9}  " if predicted else "")
            + f"{format_seconds(sorted(c['lag_p99_s'])[mid]):>12}  {format_seconds(sorted(c['cpu_s'])[mid])}"
        )
    return lines


def format_shared(shared: Mapping[str, Any]) -> str:
    """The shared-stream phase of one kernel, for ``explain``: its candidates with the other kernels at theirs."""
    lines = [
        f"  on the shared stream ({len(shared['kernels'])} kernels, {shared['calls']} calls; {shared['rounds']} interleaved "
        f"rounds, noise {shared['noise']:.1%} per run, candidates within {shared['tie_band']:.0%} of the best tie), "
        f"its {shared['lane']} lane with every other kernel at its threshold:",
        "    threshold   offloaded  makespan median [min, max]       p99 loop lag  CPU",
    ]
    lines += _candidate_rows(shared["candidates"], shared["threshold"], shared["tied"], shared["over_budget"])
    lines.append(
        f"  alone {format_threshold(shared['alone'])}, shared {format_threshold(shared['threshold'])}: "
        f"{shared['reason']}"
    )
    return "\n".join(lines)


def format_cluster(profile: Mapping[str, Any]) -> str | None:
    """The Dask cluster a profile measured (``calibrate --dask``), or None: its identity, costs, whether large
    arguments are scattered, and each kernel's compute speed on its workers."""
    cluster = profile.get("cluster")
    if not isinstance(cluster, Mapping):
        return None
    identity, transport = cluster.get("identity", {}), cluster.get("transport", {})
    per_byte = transport.get("round_trip_per_byte_s") or 0.0
    scatter = (cluster.get("scatter") or {}).get("from_bytes")
    lines = [
        f"dask cluster {identity.get('address')} ({identity.get('workers')} workers, {identity.get('threads')} "
        f"threads): round trip {format_seconds(transport.get('round_trip_s'))}, "
        + (f"{1e-6 / per_byte:.0f} MB/s, " if per_byte > 0 else "")
        + f"caller CPU {format_seconds(transport.get('caller_cpu_s'))} per call; large arguments "
        + ("go with the call" if scatter is None else f"from {scatter} bytes go by scatter"),
    ]
    for key, entry in sorted((cluster.get("kernels") or {}).items()):
        ratio = entry.get("worker_compute_ratio") if isinstance(entry, Mapping) else None
        if isinstance(ratio, (int, float)):
            lines.append(f"  {key}: computes in {ratio:.2f}x this host's inline time on a cluster worker")
    for key, error in sorted((cluster.get("errors") or {}).items()):
        lines.append(f"  {key}: not measured there ({error}); stays local")
    lines.append(
        "offloaded calls go to the pool or the cluster, whichever is expected to complete them soonest "
        "(`offload-tuner explain KERNEL SIZE` shows the comparison and a what-if for more workers)"
    )
    return "\n".join(lines)


def _steady_pass(load: Mapping[str, Any]) -> str:
    """How each run was timed; profiles before campaign 10's warm-up rule did not record their warm-up."""
    if not load.get("steady_pass"):
        return ""
    warmup = load.get("warmup_calls")
    return ", each timed over a steady pass" + ("" if warmup is None else f" after {warmup} warm-up calls")
