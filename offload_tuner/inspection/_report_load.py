"""The concurrent phases of one kernel as text, for ``explain``: its candidates alone and on the shared stream
(no third-party imports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from offload_tuner.inspection._report import format_seconds, format_threshold


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
    from offload_tuner.inspection._report_choice import choice_lines  # long-stream lag, settling, regret

    lines += choice_lines(load, threshold, format_threshold, format_seconds)
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
        f"  on the shared stream ({len(shared['kernels'])} kernels, {shared['calls']} calls{_weighing(shared)}; "
        f"{shared['rounds']} interleaved "
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


def _steady_pass(load: Mapping[str, Any]) -> str:
    """How each run was timed; profiles before campaign 10's warm-up rule did not record their warm-up."""
    if not load.get("steady_pass"):
        return ""
    warmup = load.get("warmup_calls")
    return ", each timed over a steady pass" + ("" if warmup is None else f" after {warmup} warm-up calls")


def _weighing(shared: Mapping[str, Any]) -> str:
    """How the stream weighed its kernels and this one's calls in it (profiles before it recorded nothing)."""
    if "weighted_by" not in shared:
        return ""
    by = "the plan's rates" if shared["weighted_by"] == "rate" else "equal inline work"
    return f", {shared.get('own_calls', '?')} of them this kernel's, weighted by {by}"
