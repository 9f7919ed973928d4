"""The latency objective (pure): choosing a threshold by the p99 latency of the calls as their callers see it.

The default objective (:mod:`_choice`) is throughput: the fastest makespan of the reference workload within the
loop budget, ties resolved by the p99 loop lag. A request-serving process is judged by something else: how long
its slowest requests take. ``calibrate --objective latency`` (``"objective": "latency"`` in the plan, recorded as
the profile's ``policy.objective``) decides by the p99 of the calls' latency, measured in the same runs: from the
moment a caller is ready to make a call to the moment it resumes with the result (:mod:`_workload`), so a call
that waits for the loop behind another caller's inline call, before it starts or before its offloaded result is
taken, pays that wait, as a request waiting behind another request's inline work does.

The rule:

* **Eligible**: exactly the throughput objective's (:func:`_choice._allowed`): the model's cap and the measured
  and predicted p99 loop lag within the loop budget. A latency objective does not lift the loop budget.
* **Lowest p99 call latency**: every eligible candidate whose median p99 call latency is within the latency's own
  measured noise band (:func:`_candidates.tie_band` of its rounds' spread, plus ``LATENCY_TIE_S``) of the lowest
  ties with it. A short run's p99 is one of its few slowest calls: its noise is measured, not assumed.
* **Then throughput**: among those ties, the fastest makespan, within the throughput tie band, and then the
  throughput objective's own secondary rules (lowest p99 loop lag, least CPU, fewest offloaded calls).

Throughput is not a constraint here, and need not be one: the reference workload is a closed loop (each caller
makes its next call when its last returns), so by Little's law a caller's mean latency is the callers times the
makespan over the calls. A candidate that loses throughput pays it in every call's latency, and its p99 wins
only if it removes a tail worth more than that. There is no cliff-edge step (it is about an unseen slope of the
makespan); the interval and the regret bound are the same rules as the throughput objective's, on the p99 call
latencies: what a rerun may choose, and how much higher a rerun may read the choice's p99 than the lowest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from offload_tuner.calibration._candidates import LATENCY_TIE_S as LATENCY_TIE_S
from offload_tuner.calibration._candidates import (
    Candidate,
    degrees_of_freedom,
    measured_noise,
    noise_upper_bound,
    tie_band,
)
from offload_tuner.calibration._choice import (
    PLAUSIBLE_FLOOR,
    PLAUSIBLE_STANDARD_ERRORS,
    Choice,
    _allowed,
    _budget_notes,
    _fmt,
    _fmt_set,
    _interval,
    _secondary,
    choose,
    lag_tie_s,
)
from offload_tuner.calibration._grid import order_key
from offload_tuner.calibration._robust import regret_bound
from offload_tuner.runtime._policy import OBJECTIVES


def choose_for(objective: str, candidates: Sequence[Candidate], **how: object) -> Choice:
    """:func:`_choice.choose` (``"throughput"``) or :func:`choose_latency` (``"latency"``), with the same
    arguments."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    chooser = choose_latency if objective == "latency" else choose
    return chooser(candidates, **how)  # type: ignore[arg-type]


def choose_latency(
    candidates: Sequence[Candidate],
    *,
    rounds: int,
    budget_cap: int | None = None,
    capped: bool = False,
    loop_budget_s: float | None = None,
    workload_range: tuple[float, float],
    calls: int | None = None,
    long_lag: Mapping[int | None, float] | None = None,
) -> Choice:
    """The threshold with the lowest p99 call latency, by the rules in this module's docstring (the arguments
    mean what they mean for :func:`_choice.choose`). Every candidate needs its call latencies recorded."""
    if not candidates:
        raise ValueError("choose_latency() needs at least one measured candidate")
    missing = [c.threshold for c in candidates if not c.latency_p99_s]
    if missing:
        raise ValueError(f"the latency objective needs each candidate's call latencies; none for {missing}")
    ordered = sorted(candidates, key=lambda c: order_key(c.threshold))
    allowed = _allowed(ordered, capped=capped, budget_cap=budget_cap, loop_budget_s=loop_budget_s, long_lag=long_lag)
    views = [_as_latency(c) for c in ordered]
    noise = measured_noise(views)
    band = tie_band(noise, rounds)
    eligible = [v for v in views if v.threshold in {c.threshold for c in allowed.eligible}]
    lowest = min(eligible, key=lambda v: (v.makespan, order_key(v.threshold)))
    bar = lowest.makespan * (1 + band) + LATENCY_TIE_S
    tied = [c for c in allowed.eligible if _latency(c) <= bar]
    chosen, why = _fastest(tied, measured_noise(ordered), rounds, loop_budget_s)
    upper = noise_upper_bound(noise, degrees_of_freedom(views))
    reach = max(tie_band(upper, rounds, PLAUSIBLE_STANDARD_ERRORS), PLAUSIBLE_FLOOR)
    plausible = [c for c in allowed.eligible if _latency(c) <= lowest.makespan * (1 + reach) + LATENCY_TIE_S]
    interval = _interval(allowed.within_cap, plausible, workload_range, calls)
    reason = _reason(tied, band, lowest, chosen, why, ordered)
    reason += _budget_notes(allowed, len(ordered), capped=capped, budget_cap=budget_cap, loop_budget_s=loop_budget_s)
    view = next(v for v in views if v.threshold == chosen.threshold)
    return Choice(
        chosen.threshold,
        lowest.threshold,
        tuple(c.threshold for c in tied),
        interval,
        noise,
        band,
        reason,
        tuple(c.threshold for c in allowed.over),
        regret_bound(view, lowest, views),
        tuple(c.threshold for c in allowed.predicted),
        objective="latency",
    )


def _as_latency(c: Candidate) -> Candidate:
    """The candidate with its p99 call latencies where its makespans were: the noise, tie band, interval and
    regret rules then read latency."""
    return replace(c, makespan_s=c.latency_p99_s)


def _latency(c: Candidate) -> float:
    value = c.latency_p99
    if value is None:  # checked on the way in
        raise ValueError(f"candidate {c.threshold}: no call latency recorded")
    return value


def _fastest(
    tied: Sequence[Candidate], noise: float, rounds: int, loop_budget_s: float | None
) -> tuple[Candidate, str]:
    """Among candidates tied on p99 call latency: the fastest makespan within the throughput tie band, then the
    throughput objective's secondary rules."""
    if len(tied) == 1:
        return tied[0], "the lowest p99 call latency"
    fastest = min(c.makespan for c in tied)
    quick = [c for c in tied if c.makespan <= fastest * (1 + tie_band(noise, rounds))]
    chosen, why = _secondary(quick, lag_tie_s(loop_budget_s))
    if len(quick) == 1:
        return chosen, "the fastest makespan among them"
    return chosen, f"equal makespans ({_fmt_set(quick)}), then {why}"


def _reason(
    tied: Sequence[Candidate],
    band: float,
    lowest: Candidate,
    chosen: Candidate,
    why: str,
    ordered: Sequence[Candidate],
) -> str:
    """Why ``chosen``, under the latency objective."""
    fastest = min(ordered, key=lambda c: c.makespan)
    cost = (
        f"its makespan {chosen.makespan / fastest.makespan:.2f}x the fastest measured ({_fmt(fastest.threshold)})"
        if chosen is not fastest
        else "also the fastest makespan measured"
    )
    head = f"latency objective: p99 call latency {_latency(chosen) * 1e3:.1f} ms"
    if len(tied) == 1:
        return f"{head}, the lowest; the next was more than {band:.0%} (the measured noise band) higher; {cost}"
    return (
        f"{head}: {len(tied)} candidates ({_fmt_set(tied)}) within {band:.0%} (the measured noise band) of the "
        f"lowest ({_fmt(lowest.threshold)}, {lowest.makespan * 1e3:.1f} ms); taken for {why}; {cost}"
    )
