"""Choosing a threshold from measurements under load (pure): measured candidates in; load factors, the
choice, its interval and the reason out.

Calibration's concurrent phase (:mod:`_loadphase`) runs the reference workload under a few candidate
thresholds, interleaved and repeated. This module decides what those numbers mean, with no clock in
sight, so that every rule below is tested on synthetic measurements:

* **Load factors** (:mod:`_loadfactors`): the isolated model's terms scaled to match the measured makespans.
* **The choice.** Only candidates within the loop budget are eligible: the model's cap (every size
  predicted to block the loop past the budget inline is offloaded) and, where any candidate meets it,
  the measurement (median p99 loop lag within the budget). The model's cap is computed one call at a
  time; under load the heartbeat also waits behind other callers' inline calls, so the cap candidate's
  p99 can exceed the budget (the benchmarks page records it for the O(n^2) kernels). And a short ring's p99 is not a long
  stream's: each candidate's p99 predicted for a long stream of the mix (:mod:`_lagmodel`: the per-call
  loop-blocking times and the callers' queueing) rules it out too when ``LAG_MARGIN`` times it passes the
  budget, unless that would rule out every candidate. The best measured median
  makespan sets the bar; every candidate within the *measured* noise of it (:func:`tie_band`) ties on
  throughput. Among ties the secondary objective decides, deterministically: the lowest p99 loop lag
  (lags within ``LAG_TIE`` of each other, or a tenth of the loop budget, tie), then the least CPU (within ``CPU_TIE``), then the
  candidate that offloads least. A flat basin therefore resolves the same way on every rerun instead of
  wherever the noise puts the minimum. A lone winner on a cliff's edge (the next candidate above measured
  ``CLIFF_RATIO`` slower) gives way to the nearest candidate below within two standard errors of it:
  the slope between two measured grid points is unseen, and a winner by less than two standard errors is
  not one the measurement vouches for.
* **The regret bound** (:func:`_robust.regret_bound`): how much slower than the best a rerun may read the
  choice, reported with it. When a choice is far from the model or a lone best among few candidates spanning
  a wide range, :mod:`_loadphase` measures the octaves in between before taking it (:mod:`_robust`).
* **The interval.** The thresholds a rerun on this host may choose. A rerun measures afresh, so a
  candidate within four standard errors of the best may come out tied or best next time, with the noise
  taken at the noise's 90% upper confidence bound (two rounds of three candidates estimate it poorly)
  and never below ``PLAUSIBLE_FLOOR``: the interval
  runs from just above the nearest candidate below all of those that is worse by more, to just below
  the nearest such candidate above them (grid points in between were not measured, so they are not
  excluded). Its coverage of independent reruns
  is checked by a test and by the recorded reruns in ``benchmarks/results/``.

Thresholds live on the half-octave grid of :mod:`_grid`; the candidates, their measured noise and the tie band
live in :mod:`_candidates`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from offload_tuner.calibration._candidates import (
    LATENCY_TIE_S,
    MAX_TIE_BAND,
    Candidate,
    degrees_of_freedom,
    measured_noise,
    noise_upper_bound,
    tie_band,
)
from offload_tuner.calibration._candidates import MIN_TIE_BAND as MIN_TIE_BAND
from offload_tuner.calibration._grid import grid_above, grid_below, order_key
from offload_tuner.calibration._grid import offload_from as offload_from
from offload_tuner.calibration._grid import snap as snap
from offload_tuner.calibration._grid import snap_down as snap_down
from offload_tuner.calibration._lagmodel import LAG_MARGIN
from offload_tuner.calibration._loadfactors import fit_load_factors as fit_load_factors
from offload_tuner.calibration._loadfactors import predicted_makespans as predicted_makespans
from offload_tuner.calibration._robust import regret_bound

PLAUSIBLE_STANDARD_ERRORS = 4.0
"""What a rerun may still choose: within four standard errors, at the noise's upper confidence bound."""
PLAUSIBLE_FLOOR = 0.10
"""A rerun may choose any candidate within this of the best, however low the measured noise: reruns
also run slightly different candidates and streams."""
LAG_TIE = (1.25, 0.005)
"""p99 loop lags tie when within 25% + 5 ms of the lowest (the absolute term grows with the loop budget, see
``LAG_TIE_BUDGET_SHARE``). The heartbeat has 1 ms resolution, a short run's p99 is one of its few worst
wake-ups, and a few ms is far below the 100 ms the loop budget is about; at 1 ms the lag rule kept picking
"offload everything" in flat basins that the benchmark then measured 10-17% slower than keeping small calls
inline (4.7 vs 8.4 ms p99 decided it), where the CPU rule would have seen the cost."""
LAG_TIE_BUDGET_SHARE = 0.1
"""Lags also tie within a tenth of the loop budget: the budget says what lag the service cares about, and a
difference of 10 ms against 100 ms is not worth CPU. Recorded campaign: at 5 ms, 10 vs 19 ms p99 made
calibration offload the 4 largest of 64 calls of a big-result kernel over never offloading, 1.26x the oracle
in the benchmark; never offloading also used 30% less CPU, which is where the tie now goes."""
CPU_TIE = 0.05
"""CPU seconds tie within 5%."""
CLIFF_RATIO = 1.5
"""A lone winner whose next measured candidate above (the one offloading less) is this much slower sits on a
cliff's edge: the slope starts somewhere between the two grid points measured, unseen. Campaigns 9 and
10 (21 calibrations each) chose such an edge 5 times (362 before 512 twice, 64 before never, 185364 before
never twice) and the co-hosted benchmark read them 1.02-1.38x the oracle, three above 1.10x, and the
candidate one step down 1.00-1.03x where it measured it: a short phase ranks candidates ~10% apart by noise,
and a production mix drawn at random rather than at quantiles puts more calls on the slope."""
CLIFF_STEP_STANDARD_ERRORS = 2.0
"""Off a cliff's edge, the nearest candidate below that is within this many standard errors of the best
(measured noise, as for ties; never less than the tie band nor more than ``MAX_TIE_BAND``) is taken instead:
a difference under two standard errors is not one the measurement can vouch for, while the cliff is. At the
band's limits the rule has nothing to do: within the tie band a candidate ties (and the secondary objective
decides), and a band at ``MAX_TIE_BAND`` says the machine was too busy to compare at all."""


# --------------------------------------------------------------------------------------------- choice


@dataclass(frozen=True, slots=True)
class Choice:
    """The measured decision and why."""

    threshold: int | None
    best: int | None
    """The candidate with the lowest median makespan (among those within the loop budget)."""
    tied: tuple[int | None, ...]
    """Candidates whose makespan is within ``band`` of the best: the flat basin."""
    interval: tuple[int | None, int | None]
    noise: float
    band: float
    reason: str
    over_budget: tuple[int | None, ...] = ()
    """Candidates within the model's cap that the p99 loop lag ruled out (measured, or predicted for a long
    stream)."""
    regret: float = 0.0
    """How much slower than the best a rerun may read the choice (:func:`_robust.regret_bound`)."""
    predicted_over: tuple[int | None, ...] = ()
    """Those among ``over_budget`` ruled out by their predicted long-stream p99 (times ``LAG_MARGIN``)."""
    objective: str = "throughput"
    """What decided: ``"throughput"`` (this module) or ``"latency"`` (:mod:`_latency`: then ``best``, ``tied``,
    ``noise``, ``band`` and ``regret`` are about the p99 call latency)."""

    @property
    def flat(self) -> bool:
        return len(self.tied) > 1


def choose(
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
    """The threshold to use, by the rules in this module's docstring.

    ``capped`` says a loop budget applies: only candidates offloading every size from ``budget_cap`` up
    (``order_key(t) <= budget_cap``) are eligible. ``workload_range`` bounds what "always" and "never"
    mean for the interval: offloading everything of the mix is a threshold at its low end, keeping
    everything inline one above its high end. ``loop_budget_s`` also rules out candidates whose measured
    median p99 loop lag exceeds it, unless none is within it. ``calls`` is the stream's length: a candidate
    offloading none of it is, as far as the measurement can tell, "never" (and one offloading all of it
    "always"), so the interval reaches that far. ``long_lag``: each candidate's p99 loop lag predicted for a
    long stream (:mod:`_lagmodel`); with a loop budget, a candidate whose prediction times ``LAG_MARGIN`` passes
    it is ruled out like one measured past it, unless that would rule out every candidate.
    """
    if not candidates:
        raise ValueError("choose() needs at least one measured candidate")
    ordered = sorted(candidates, key=lambda c: order_key(c.threshold))
    allowed = _allowed(ordered, capped=capped, budget_cap=budget_cap, loop_budget_s=loop_budget_s, long_lag=long_lag)
    eligible = allowed.eligible
    noise = measured_noise(ordered)
    band = tie_band(noise, rounds)
    best = min(eligible, key=lambda c: (c.makespan, order_key(c.threshold)))
    tied = [c for c in eligible if c.makespan <= best.makespan * (1 + band)]
    chosen, why = _secondary(tied, lag_tie_s(loop_budget_s))
    step_band = min(MAX_TIE_BAND, max(band, tie_band(noise, rounds, CLIFF_STEP_STANDARD_ERRORS)))
    # Only a lone winner: a tie was already resolved by what the measurement can tell apart (lag, CPU).
    stepped = None if len(tied) > 1 else _off_the_edge(chosen, ordered, eligible, best.makespan * (1 + step_band))
    interval = _rerun_interval(ordered, allowed, best, noise, rounds, workload_range, calls)
    reason = _tie_reason(tied, band, best, why)
    if stepped is not None:
        reason += _step_note(chosen, stepped[1], stepped[0], best, step_band)
        chosen = stepped[0]
    reason += _budget_notes(allowed, len(ordered), capped=capped, budget_cap=budget_cap, loop_budget_s=loop_budget_s)
    regret = regret_bound(chosen, best, ordered)
    return Choice(
        chosen.threshold,
        best.threshold,
        tuple(c.threshold for c in tied),
        interval,
        noise,
        band,
        reason,
        tuple(c.threshold for c in allowed.over),
        regret,
        tuple(c.threshold for c in allowed.predicted),
    )


def _rerun_interval(
    ordered: list[Candidate],
    allowed: _Allowed,
    best: Candidate,
    noise: float,
    rounds: int,
    workload_range: tuple[float, float],
    calls: int | None,
) -> tuple[int | None, int | None]:
    """What a rerun may find: the noise could be as high as its 90% upper confidence bound (few rounds of few
    candidates estimate it poorly), and a candidate within twice that band could come out best. Candidates ruled
    out by their measured lag bound the interval like candidates measured worse."""
    upper = noise_upper_bound(noise, degrees_of_freedom(ordered))
    reach = max(tie_band(upper, rounds, PLAUSIBLE_STANDARD_ERRORS), PLAUSIBLE_FLOOR)
    plausible = [c for c in allowed.eligible if c.makespan <= best.makespan * (1 + reach)]
    return _interval(allowed.within_cap, plausible, workload_range, calls)


class _Allowed(NamedTuple):
    """Which measured candidates the loop budget allows."""

    within_cap: list[Candidate]
    """Those within the model's cap (the lowest threshold if none is)."""
    over: list[Candidate]
    """Those among them the measured p99 loop lag rules out (none, if it would rule out every one)."""
    all_over: bool
    """Every candidate within the cap measured past the lag budget."""
    predicted: tuple[Candidate, ...] = ()
    """Those among ``over`` ruled out by their predicted long-stream p99 (not by the measured one)."""
    long_lag: Mapping[int | None, float] | None = None

    @property
    def eligible(self) -> list[Candidate]:
        return [c for c in self.within_cap if c not in self.over]


def _allowed(
    ordered: Sequence[Candidate],
    *,
    capped: bool,
    budget_cap: int | None,
    loop_budget_s: float | None,
    long_lag: Mapping[int | None, float] | None = None,
) -> _Allowed:
    """The candidates the model's cap, the measured loop lag and the predicted long-stream lag leave to choose
    from (``ordered`` by threshold)."""
    within_cap = [c for c in ordered if not capped or order_key(c.threshold) <= order_key(budget_cap)] or list(
        ordered[:1]
    )
    over = [] if loop_budget_s is None else [c for c in within_cap if c.lag_p99 > loop_budget_s]
    all_over = bool(over) and len(over) == len(within_cap)
    if all_over:  # nothing measured within the budget: nothing to prefer, the model's cap alone applies
        over = []
    predicted: list[Candidate] = []
    if loop_budget_s is not None and long_lag:
        left = [c for c in within_cap if c not in over]
        predicted = [c for c in left if long_lag.get(c.threshold, 0.0) * LAG_MARGIN > loop_budget_s]
        if len(predicted) == len(left):  # every one predicted past it: the prediction cannot prefer any
            predicted = []
        over = [c for c in within_cap if c in over or c in predicted]
    return _Allowed(within_cap, over, all_over, tuple(predicted), long_lag)


def _tie_reason(tied: Sequence[Candidate], band: float, best: Candidate, why: str) -> str:
    """Why the best (or one of those tied with it) is taken."""
    if len(tied) == 1:
        return (
            f"measured under load: the fastest candidate; the next best was more than {band:.0%} "
            f"(the measured noise band) slower"
        )
    return (
        f"measured under load: flat basin, {len(tied)} candidates ({_fmt_set(tied)}) within {band:.0%} "
        f"(the measured noise band) of the best ({_fmt(best.threshold)}); taken for {why}"
    )


def _step_note(edge: Candidate, cliff: Candidate, chosen: Candidate, best: Candidate, step_band: float) -> str:
    """Why the winner on a cliff's edge gave way to ``chosen``, the nearest candidate below it."""
    return (
        f"; but {_fmt(edge.threshold)} sits on a cliff's edge ({_fmt(cliff.threshold)} measured "
        f"{cliff.makespan / edge.makespan:.1f}x slower), so the nearest candidate below within "
        f"{step_band:.0%} of the best is taken: {_fmt(chosen.threshold)}, "
        f"{chosen.makespan / best.makespan - 1:.0%} slower as measured"
    )


def _budget_notes(
    allowed: _Allowed, measured: int, *, capped: bool, budget_cap: int | None, loop_budget_s: float | None
) -> str:
    """What the loop budget ruled out, as clauses for the reason (``measured``: how many candidates ran)."""
    notes = ""
    if capped and len(allowed.within_cap) < measured:
        notes += f"; the loop budget rules out thresholds above {_fmt(budget_cap)}"
    if loop_budget_s is None:  # no lag budget: nothing measured was ruled out by its lag
        return notes
    measured_over = [c for c in allowed.over if c not in allowed.predicted]
    if measured_over:
        notes += (
            f"; measured p99 loop lag past the {loop_budget_s * 1e3:g} ms budget rules out {_fmt_set(measured_over)}"
        )
    if allowed.predicted and allowed.long_lag is not None:
        lags = ", ".join(f"{_fmt(c.threshold)} {allowed.long_lag[c.threshold] * 1e3:.0f} ms" for c in allowed.predicted)
        notes += (
            f"; p99 loop lag predicted for a long stream ({lags}), times the {LAG_MARGIN:g} margin, past the "
            f"{loop_budget_s * 1e3:g} ms budget rules out {_fmt_set(allowed.predicted)}"
        )
    elif allowed.all_over:
        notes += (
            f"; every candidate measured past the {loop_budget_s * 1e3:g} ms budget (lowest p99 loop lag "
            f"{min(c.lag_p99 for c in allowed.within_cap) * 1e3:.0f} ms): the model's cap alone applies"
        )
    return notes


def _off_the_edge(
    chosen: Candidate, ordered: Sequence[Candidate], eligible: Sequence[Candidate], bar: float
) -> tuple[Candidate, Candidate] | None:
    """(the candidate to take instead, the cliff) when ``chosen`` sits on a cliff's edge (``CLIFF_RATIO``)
    and an eligible candidate below it is within ``bar``; else ``None``. ``ordered`` is every measured
    candidate in threshold order (a cliff measured past the loop budget is still a cliff)."""
    position = next(i for i, c in enumerate(ordered) if c is chosen)
    if position + 1 >= len(ordered) or ordered[position + 1].makespan < chosen.makespan * CLIFF_RATIO:
        return None
    # Nearest first, passing over any candidate measured beyond ``bar``: that one is a measured bump, not an
    # unseen slope, and the candidates past it were measured as near the best as the step allows.
    below = [c for c in ordered[:position] if any(c is e for e in eligible) and c.makespan <= bar]
    return (below[-1], ordered[position + 1]) if below else None


def thread_lane_wins(
    process: Sequence[Candidate],
    process_choice: int | None,
    threads: Sequence[Candidate],
    thread_choice: int | None,
    loop_budget_s: float | None = None,
    band: float = 0.0,
    objective: str = "throughput",
) -> tuple[bool, str]:
    """Whether the thread lane's choice beats the process lane's, and why. Both phases ran the same stream of
    calls, each with "never" (every call inline) among its candidates: each choice is taken relative to its own
    phase's never, so the drift of the machine between the two phases cancels. Without a never in both, the
    medians are compared as they are. The objective's measure first (the makespan; under ``"latency"`` the p99
    call latency, the measure each lane's choice and ``band`` were made on, where every run involved recorded it),
    within ``band`` (the phases' tie band; p99 latencies also within ``LATENCY_TIE_S``, as the latency rule ties
    them): as good as the measurement can tell, the thread lane wins, since it
    pickles nothing (less of the caller's thread, no copies) and leaves the process pool's workers to the kernels
    that hold the GIL. A thread lane whose p99 loop lag is worse than the process lane's beyond the lag tie
    (:func:`lag_tie_s`) does not win on it."""
    if thread_choice is None:
        return False, "the thread lane's own phase measured never sending a call there as best"
    by_process = {c.threshold: c for c in process}
    by_thread = {c.threshold: c for c in threads}
    p, t = by_process.get(process_choice), by_thread.get(thread_choice)
    if p is None or t is None:
        raise ValueError("thread_lane_wins() needs each lane's chosen threshold among its candidates")
    anchored = None in by_process and None in by_thread
    runs = [p, t, *((by_process[None], by_thread[None]) if anchored else ())]
    by_latency = objective == "latency" and all(c.latency_p99 is not None for c in runs)
    name = "p99 call latency" if by_latency else "makespan"

    def measure(c: Candidate) -> float:
        latency = c.latency_p99 if by_latency else None
        return c.makespan if latency is None else latency

    slack = LATENCY_TIE_S if by_latency else 0.0  # what the latency rule itself ties on (timer and scheduler jitter)
    if anchored:
        p_ratio, t_ratio = measure(p) / measure(by_process[None]), measure(t) / measure(by_thread[None])
        how = (
            f"{t_ratio:.2f}x the all-inline {name} in threads (from {_fmt(thread_choice)}) against "
            f"{p_ratio:.2f}x in processes (from {_fmt(process_choice)})"
        )
        faster = t_ratio <= p_ratio * (1 + band) + slack / measure(by_thread[None])
    else:
        how = f"{name} {measure(t) * 1e3:.1f} ms in threads against {measure(p) * 1e3:.1f} ms in processes"
        faster = measure(t) <= measure(p) * (1 + band) + slack
    calm = t.lag_p99 <= p.lag_p99 * LAG_TIE[0] + lag_tie_s(loop_budget_s)
    how += f"; p99 loop lag {t.lag_p99 * 1e3:.1f} ms in threads against {p.lag_p99 * 1e3:.1f} ms"
    return faster and calm, how


def lag_tie_s(loop_budget_s: float | None) -> float:
    """The absolute part of the lag tie: ``LAG_TIE``'s, or a tenth of the loop budget when that is more."""
    return max(LAG_TIE[1], LAG_TIE_BUDGET_SHARE * loop_budget_s) if loop_budget_s else LAG_TIE[1]


def _secondary(tied: Sequence[Candidate], absolute: float = LAG_TIE[1]) -> tuple[Candidate, str]:
    """Lowest p99 loop lag, then least CPU, then the candidate that offloads least."""
    if len(tied) == 1:
        return tied[0], "throughput"
    relative = LAG_TIE[0]
    lowest_lag = min(c.lag_p99 for c in tied)
    calm = [c for c in tied if c.lag_p99 <= lowest_lag * relative + absolute]
    if len(calm) < len(tied):
        why = f"the lowest p99 loop lag ({lowest_lag * 1e3:.1f} ms)"
        if len(calm) == 1:
            return calm[0], why
    else:
        why = "equal p99 loop lag"
    least_cpu = min(c.cpu for c in calm)
    frugal = [c for c in calm if c.cpu <= least_cpu * (1 + CPU_TIE)]
    chosen = max(frugal, key=lambda c: order_key(c.threshold))
    if len(frugal) < len(calm):
        why += f", then the least CPU ({least_cpu * 1e3:.0f} ms)"
    elif len(frugal) > 1:
        why += ", equal CPU, then the fewest offloaded calls"
    return chosen, why


def _interval(
    eligible: Sequence[Candidate],
    tied: Sequence[Candidate],
    workload_range: tuple[float, float],
    calls: int | None = None,
) -> tuple[int | None, int | None]:
    """From just above the nearest worse candidate below ``tied`` to just below the nearest worse above.

    A candidate stands for every threshold that splits the measured stream as it does: with no worse
    candidate above, one that offloads none of the ``calls`` stands for "never" too (a quick run of a mix
    whose top is 5000 may hold no call above 4096, so 4096 and never were one measurement; its interval
    ended at 4096, and a rerun whose stream did hold such calls chose never: 65 of 90 pairs covered)."""
    lo, hi = workload_range
    keys = [order_key(c.threshold) for c in eligible]
    first = keys.index(min(order_key(c.threshold) for c in tied))
    last = keys.index(max(order_key(c.threshold) for c in tied))
    lower: int | None = eligible[first].threshold
    upper: int | None = eligible[last].threshold
    if first > 0:  # the worse candidate below; "always" offloads the whole mix, like a threshold at its low end
        below = eligible[first - 1].threshold
        step = grid_above(below if below else math.ceil(lo))
        lower = step if lower is None else min(step, lower)
    if upper is not None and last < len(eligible) - 1:  # the worse candidate above; "never" is past the high end
        above = eligible[last + 1].threshold
        upper = max(grid_below(above if above is not None else grid_above(hi)), upper)
    elif calls is not None and eligible[last].offloaded == 0:
        upper = None
    if calls is not None and first == 0 and eligible[first].offloaded >= calls:
        lower = 0
    return lower, upper


def _fmt(t: int | None) -> str:
    return "never" if t is None else ("always" if t == 0 else str(t))


def _fmt_set(cs: Sequence[Candidate]) -> str:
    return ", ".join(_fmt(c.threshold) for c in cs)
