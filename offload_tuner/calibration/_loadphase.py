"""Calibration's concurrent phase (impure orchestration): the model proposes, a measurement under load decides.

Timing one call at a time on an idle machine predicts inline work well and offloaded work badly: under
the reference workload the caller unpickles results while the workers hold the cores and the pool's
threads compete for the GIL. So after the isolated fits, each kernel runs the reference workload
(``concurrency`` callers on one event loop, the real executor, a seeded stream of sizes from its workload
mix) under a few candidate thresholds the model proposes: its choice and the grid points an octave either
side, the loop budget's cap, always and never. Candidates run interleaved in shuffled order, round after
round, each round with the calls in a fresh order. What is timed is the steady pass of each run (ramp-up and
drain left out, :mod:`_workload`), and its CPU. The makespans fit the model's load factors; if the corrected
model then proposes a threshold not yet measured, away from everything measured or promising more than the
noise (:func:`worth_measuring`), it is measured against the best so far. :mod:`_choice` makes the decision,
with each candidate's p99 loop lag predicted for a long stream (:mod:`_lagmodel`). A choice two octaves or more
from the model's proposal, or a lone best among few candidates with an octave unmeasured beside it, is not
taken on that: the octaves in between are measured first (:mod:`_robust`), and one more batch of rounds where
the regret bound still passes its limit.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from offload_tuner.calibration._candidates import Candidate, measured_noise, tie_band
from offload_tuner.calibration._choice import PLAUSIBLE_STANDARD_ERRORS, Choice
from offload_tuner.calibration._grid import grid_below, offload_from, order_key, snap, snap_down
from offload_tuner.calibration._lagmodel import long_stream_lags
from offload_tuner.calibration._latency import choose_for
from offload_tuner.calibration._loadfactors import fit_load_factors, predicted_makespans
from offload_tuner.calibration._loadsettle import load_entry, settle
from offload_tuner.calibration._measure import clock
from offload_tuner.calibration._proposals import FollowUp, always_threshold, on_grid, proposals, worth_measuring
from offload_tuner.calibration._rounds import MAX_CALLS as MAX_CALLS
from offload_tuner.calibration._rounds import MIN_CALLS_PER_CALLER as MIN_CALLS_PER_CALLER
from offload_tuner.calibration._rounds import STEADY_CALLS_PER_CALLER as STEADY_CALLS_PER_CALLER
from offload_tuner.calibration._rounds import WARMUP_TAKES_PER_CALLER as WARMUP_TAKES_PER_CALLER
from offload_tuner.calibration._rounds import Rounds as Rounds
from offload_tuner.calibration._rounds import call_count as call_count
from offload_tuner.calibration._rounds import floor_binds
from offload_tuner.calibration._rounds import round_scales as round_scales
from offload_tuner.calibration._workload import (
    Call,
    Calls,
    RunStats,
    _quantile,
    kernel_calls,
    process_call,
    run_calls,
    shuffled_calls,
    thread_call,
    threshold_gate,
)
from offload_tuner.runtime._policy import (
    KernelCosts,
    LoadFactors,
    PolicyKnobs,
    Prediction,
    TransportModel,
    budget_threshold,
    predict,
    threshold,
)
from offload_tuner.runtime._registry import KernelSpec

if TYPE_CHECKING:
    from offload_tuner.calibration._siblings import Siblings

FIRST_ROUND_RACE = 1.75
"""After the first round, a candidate this much slower than the round's fastest is dropped: no noise yet, but a
gap this wide is many times any noise measured here (10-20% per run), and such candidates (never, for the
O(n^2) kernels at 1.7-2.3x) are the longest runs of their phase. In the recorded campaigns 11-13 no candidate
this far behind after one round was tied with the best or chosen; dropping them saves 1-3 s a calibration."""
SEED = 20261128


@dataclass(frozen=True, slots=True)
class LoadPhase:
    """What the concurrent phase settled for one kernel."""

    costs: KernelCosts
    """The kernel's costs with the fitted load factors."""
    threshold: int | None
    interval: tuple[int | None, int | None]
    entry: dict[str, Any]
    """The profile's ``load`` section: every candidate's runs, the fit, the choice and its reason."""
    calls: Calls = field(default_factory=list)
    """The stream of calls every candidate ran (the thread lane's phase runs the same one)."""


def measure_under_load(
    spec: KernelSpec,
    executor: Executor,
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    workload_range: tuple[float, float],
    *,
    rounds: Rounds,
    progress: Callable[..., None],
    siblings: Siblings | None = None,
    limit_s: float = 60.0,
) -> LoadPhase:
    """Run the reference workload under the model's candidates, correct the model, choose a threshold. With
    ``siblings``, every run has them running the same candidate beside it (:mod:`_siblings`), each waited for
    at most ``limit_s``; the sizing run (an estimate of the run length) does not."""
    started = clock()
    isolated = replace(costs, load=LoadFactors())
    proposal = threshold(isolated, transport, knobs, workload_range)
    cap = budget_threshold(isolated, transport, knobs, workload_range)
    seed = SEED ^ zlib.crc32(spec.key.encode())  # the same calls on every rerun, different per kernel
    first = proposals(proposal, cap, workload_range, neighbours=rounds.neighbours)
    calls = _sized_calls(spec, executor, isolated, transport, knobs, workload_range, seed, first, rounds)
    sizes = sorted(n for _, n in calls)
    predictions = [predict(isolated, transport, knobs, n) for n in sizes]
    if siblings is not None:
        siblings.prepare(spec.key, workload_range, len(calls), seed, limit_s=limit_s)
    runner = _Runner(executor, spec, calls, sizes, knobs.concurrency, rounds, seed, progress, started)
    runner.siblings = siblings
    phase = _Phase(costs, transport, knobs, workload_range, calls, sizes, predictions, runner, seed)

    runner.measure(first)
    fit = phase.refit()
    cap = budget_threshold(fit.costs, transport, knobs, workload_range)
    capped = None if cap is None else snap_down(cap)
    fit, follow_up = _follow_up(phase, fit, capped)
    candidates, choice = phase.decide(fit, budget_cap=capped, capped=cap is not None)
    # The lag ruled out the cap (or more): the model's cap was too high under load, and nothing between it
    # and the survivors was measured. One grid step below the lowest ruled-out size threshold is.
    ruled_out = [t for t in choice.over_budget if t not in (None, 0)]
    if ruled_out and runner.measure_more([grid_below(min(ruled_out))]):
        fit = phase.refit()
        candidates, choice = phase.decide(fit, budget_cap=capped, capped=cap is not None)
    fit, candidates, choice, settled = settle(phase, fit, candidates, choice, capped=capped, capped_on=cap is not None)
    chosen, interval = _as_sizes(choice, always_threshold(fit.costs, transport, knobs, workload_range))
    entry = load_entry(phase, fit, candidates, choice, proposal=proposal, follow_up=follow_up, capped=capped)
    entry["settle"] = {"measured": list(settled.thresholds), "why": settled.why}
    return LoadPhase(fit.costs, chosen, interval, entry, calls)


class _Fit(NamedTuple):
    """The model corrected by everything measured so far."""

    factors: LoadFactors
    costs: KernelCosts
    """The kernel's costs with ``factors``."""
    threshold: int | None
    """The corrected model's choice."""


@dataclass(frozen=True, slots=True)
class _Phase:
    """What the steps of one kernel's concurrent phase share: the model, the stream, the runner measuring it."""

    costs: KernelCosts
    transport: TransportModel
    knobs: PolicyKnobs
    workload_range: tuple[float, float]
    calls: Calls
    sizes: list[int]
    predictions: list[Prediction]
    """The isolated model's prediction for each call, in size order."""
    runner: _Runner
    seed: int

    def refit(self) -> _Fit:
        """Load factors from everything measured so far, the corrected costs and the model's choice."""
        fitted = fit_load_factors(self.predictions, self.runner.indexed(), self.knobs)
        corrected = replace(self.costs, load=fitted)
        return _Fit(fitted, corrected, threshold(corrected, self.transport, self.knobs, self.workload_range))

    def long_lag(self, fit: _Fit, thresholds: Sequence[int | None]) -> dict[int | None, float]:
        """Each threshold's p99 loop lag predicted for a long stream of the mix by the corrected model."""
        predictions = [predict(fit.costs, self.transport, self.knobs, n) for n in self.sizes]
        return long_stream_lags(predictions, self.sizes, thresholds, self.knobs, self.seed)

    def decide(self, fit: _Fit, *, budget_cap: int | None, capped: bool) -> tuple[list[Candidate], Choice]:
        """Everything measured so far, and the choice among it."""
        measured = self.runner.candidates()
        long_lag = self.long_lag(fit, [c.threshold for c in measured]) if self.knobs.loop_budget_s else None
        return measured, choose_for(
            self.knobs.objective,
            measured,
            rounds=max(len(c.makespan_s) for c in measured),
            budget_cap=budget_cap,
            capped=capped,
            loop_budget_s=self.knobs.loop_budget_s,
            workload_range=self.workload_range,
            calls=len(self.calls),
            long_lag=long_lag,
        )


def _follow_up(phase: _Phase, fit: _Fit, capped: int | None) -> tuple[_Fit, FollowUp]:
    """Measure what the corrected model proposes after the first batch where it is worth a batch
    (:func:`worth_measuring`), and refit if anything new was measured."""
    proposed = [on_grid(fit.threshold)] + ([] if capped is None else [capped])
    follow_up = worth_measuring(
        proposed,
        phase.runner.candidates(),
        phase.sizes,
        phase.predictions,
        phase.knobs,
        fit.factors,
        capped,
        phase.workload_range,
    )
    if phase.runner.measure_more(follow_up.measured):
        fit = phase.refit()
    return fit, follow_up


def _as_sizes(choice: Choice, always: int) -> tuple[int | None, tuple[int | None, int | None]]:
    """The choice and its interval with "always" (threshold 0) read as what it means for this kernel's mix."""

    def size(t: int | None) -> int | None:
        return always if t == 0 else t

    lower, upper = choice.interval
    return size(choice.threshold), (size(lower), size(upper))


def measure_thread_lane(
    spec: KernelSpec,
    threads: Executor,
    proposal: int | None,
    calls: Calls,
    knobs: PolicyKnobs,
    workload_range: tuple[float, float],
    *,
    rounds: Rounds,
    progress: Callable[..., None],
    floor: int | None = None,
    siblings: Siblings | None = None,
) -> tuple[Choice, list[Candidate]]:
    """The thread lane under load: the process phase's stream of calls, run by the same callers with calls from
    each candidate threshold up sent to ``threads`` (the model's proposal, its neighbours, always, never).
    "Never" is every call inline in both phases: the anchor that compares the two lanes. Candidates below
    ``floor`` (sizes measured holding the GIL) are neither measured nor chosen. ``siblings`` (prepared by the
    process phase, on the same calls) run each candidate on their own thread pools beside it."""
    started = clock()
    seed = SEED ^ zlib.crc32(spec.key.encode()) ^ 0x7EAD
    sizes = sorted(n for _, n in calls)
    runner = _Runner(threads, spec, calls, sizes, knobs.concurrency, rounds, seed, progress, started, thread_call)
    runner.siblings, runner.lane = siblings, "thread"
    allowed = [
        t
        for t in proposals(proposal, None, workload_range, neighbours=rounds.neighbours)
        if floor is None or t is None or t >= floor
    ]
    runner.measure(allowed)
    candidates = runner.candidates()
    choice = choose_for(
        knobs.objective,
        candidates,
        rounds=max(len(c.makespan_s) for c in candidates),
        loop_budget_s=knobs.loop_budget_s,
        workload_range=workload_range,
        calls=len(calls),
    )
    return choice, candidates


def _sized_calls(
    spec: KernelSpec,
    executor: Executor,
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    workload_range: tuple[float, float],
    seed: int,
    thresholds: Sequence[int | None],
    rounds: Rounds,
) -> Calls:
    """The calls of one run, sized so that the slowest candidate's run (its warm-up included) lasts about
    ``run_s``.

    A first guess from the isolated model; then one warm-up run of the first candidate (it pays for caches
    and lazy imports, and is not counted) corrects the guess by what it measured, and the model's ratio
    between the slowest candidate and that one scales it. Where the isolated model says even the fewest calls
    allowed run far too long (:func:`_rounds.floor_binds`), a steady run takes the fewest, unmeasured."""
    fewest = rounds.calls_per_caller * knobs.concurrency
    guess = call_count(costs, transport, knobs, workload_range, rounds.run_s, rounds.calls_per_caller)
    calls = kernel_calls(spec, workload_range, max(fewest, round(rounds.ring(guess, knobs.concurrency))), seed)
    sizes = sorted(n for _, n in calls)
    predictions = [predict(costs, transport, knobs, n) for n in sizes]
    predicted = predicted_makespans(predictions, [offload_from(sizes, t) for t in thresholds], knobs, LoadFactors())
    if rounds.steady and len(calls) == fewest and floor_binds(max(predicted), len(calls), rounds, knobs.concurrency):
        return calls
    first = thresholds[0]
    warm = run_calls(calls, knobs.concurrency, process_call(executor, spec.fn, threshold_gate(first)), executor)
    slowest = warm.makespan_s * max(predicted) / predicted[0]
    in_a_run = len(calls) * rounds.run_s / slowest  # calls the slowest candidate runs in run_s
    # On the half-octave grid, so that reruns on one host usually run the very same calls.
    wanted = snap(min(MAX_CALLS, max(fewest, rounds.ring(in_a_run, knobs.concurrency))))
    wanted = max(wanted, fewest)  # snapping must not go below the floor
    if wanted == len(calls):
        return calls
    return kernel_calls(spec, workload_range, wanted, seed)


def _contenders(candidates: dict, alive: list[int | None]) -> list[int | None]:
    """Candidates that can still tie with the best: within four standard errors of its median."""
    current = [candidates[t] for t in alive]
    band = tie_band(measured_noise(current), min(len(c.makespan_s) for c in current), PLAUSIBLE_STANDARD_ERRORS)
    best = min(c.makespan for c in current)
    return [c.threshold for c in current if c.makespan <= best * (1 + band)]


class _Runner:
    """Runs candidates in interleaved, shuffled rounds; a candidate is one way to split the stream."""

    def __init__(
        self,
        executor: Executor,
        spec: KernelSpec,
        calls: Calls,
        sizes: list[int],
        callers: int,
        rounds: Rounds,
        seed: int,
        progress: Callable[..., None],
        started: float | None = None,
        make_call: Callable[[Executor, Callable[..., Any], Callable[[int], bool]], Call] = process_call,
    ) -> None:
        self.executor, self.spec, self.calls, self.sizes, self.callers = executor, spec, calls, sizes, callers
        self.started = clock() if started is None else started  # the phase's budget runs from here
        self.rounds, self.progress, self.make_call = rounds, progress, make_call
        self.rng = random.Random(seed)
        self.order_rng = random.Random(seed + 1)
        self.runs: dict[int, Candidate] = {}  # offload_from index -> the candidate measured for it
        self.siblings: Siblings | None = None  # sibling service processes running each candidate beside it
        self.sibling_message: Callable[[int | None], tuple] | None = None  # what they run (default: this kernel)
        self.lane = "process"
        self.sibling_calls: list[int] = []  # calls each sibling ran, over every run

    def _split(self, t: int | None) -> int:
        return offload_from(self.sizes, t)

    def measure(self, thresholds: Sequence[int | None]) -> None:
        """Measure thresholds that split the stream differently from everything measured so far."""
        fresh: dict[int, int | None] = {}
        for t in thresholds:
            k = self._split(t)
            if k not in self.runs and k not in fresh:
                fresh[k] = t
        if fresh:
            self.runs.update(self._rounds(list(fresh.values())))

    def measure_more(self, thresholds: Sequence[int | None]) -> bool:
        """Measure new thresholds beside the best so far, rescaled to its earlier median (drift between
        batches cancels out). Returns whether anything new was measured."""
        new = [t for t in dict.fromkeys(thresholds) if self._split(t) not in self.runs]
        if not new:
            return False
        best = min(self.runs.values(), key=lambda c: c.makespan)
        before = best.makespan
        batch = self._rounds(new + [best.threshold])
        scale = before / batch[self._split(best.threshold)].makespan
        for t in new:
            c = batch[self._split(t)]
            self.runs[self._split(t)] = replace(
                c,
                makespan_s=tuple(v * scale for v in c.makespan_s),
                latency_p99_s=tuple(v * scale for v in c.latency_p99_s),
            )
        return True

    def remeasure(self, thresholds: Sequence[int | None]) -> bool:
        """One more batch of rounds of thresholds already measured, appended to their rounds after rescaling
        the batch to the earlier median of the best among them (drift between batches cancels out). Returns
        whether anything was measured (nothing is once the phase's budget is spent)."""
        known = [t for t in dict.fromkeys(thresholds) if self._split(t) in self.runs]
        if len(known) < 2 or clock() - self.started >= self.rounds.budget_s:
            return False
        anchor = min((self.runs[self._split(t)] for t in known), key=lambda c: c.makespan)
        batch = self._rounds(known)
        if self._split(anchor.threshold) not in batch:
            return False
        scale = anchor.makespan / batch[self._split(anchor.threshold)].makespan
        for k, c in batch.items():
            old = self.runs[k]
            self.runs[k] = replace(
                old,
                makespan_s=old.makespan_s + tuple(v * scale for v in c.makespan_s),
                lag_p99_s=old.lag_p99_s + c.lag_p99_s,
                cpu_s=old.cpu_s + c.cpu_s,
                latency_p99_s=old.latency_p99_s + tuple(v * scale for v in c.latency_p99_s)
                if old.latency_p99_s
                else (),
            )
        return True

    def _rounds(self, thresholds: list[int | None]) -> dict[int, Candidate]:
        """Rounds as :class:`Rounds` says. Makespans are divided by their round's geometric mean over the
        candidates that ran in every round (times the mean over rounds): a round that ran while the machine
        was slow weighs on every candidate alike, so comparisons keep only the candidates' own noise. Call latencies
        are scaled by the same factors: a slow machine slows every call of the round alike."""
        policy = self.rounds
        raw: dict[int | None, list[tuple[float, float, float, float]]] = {t: [] for t in thresholds}
        alive = list(thresholds)
        for r in range(policy.max_rounds):
            order = alive[:]
            self.rng.shuffle(order)
            calls = shuffled_calls(self.calls, self.order_rng)
            for t in order:
                self.progress("load", kernel=self.spec.key, threshold=t, round=r + 1, rounds=policy.max_rounds)
                stats = self._run(t, calls)
                if self.rounds.steady:
                    raw[t].append((stats.steady_s, stats.lag_p99_s, stats.steady_cpu_s, stats.call_p99_s))
                else:
                    raw[t].append((stats.makespan_s, stats.lag_p99_s, stats.cpu_s, stats.call_p99_s))
            done = r + 1
            if done == 1 and len(alive) > 1:
                fastest = min(raw[t][0][0] for t in alive)
                alive = [t for t in alive if raw[t][0][0] < fastest * FIRST_ROUND_RACE]
            if done >= 2:
                alive = _contenders(self._candidates(raw, alive), alive)
            if done >= policy.min_rounds and (len(alive) == 1 or clock() - self.started >= policy.budget_s):
                break
        return {self._split(c.threshold): c for c in self._candidates(raw, alive).values()}

    def _candidates(
        self, raw: dict[int | None, list[tuple[float, float, float, float]]], full: list[int | None]
    ) -> dict:
        """Candidates from raw runs, normalised round by round over ``full`` (those that ran every round)."""
        rounds = len(raw[full[0]])
        scale = round_scales([[raw[t][r][0] for t in full] for r in range(rounds)])
        out = {}
        for t, values in raw.items():
            makespans, lags, cpus, latencies = zip(*values)
            k = self._split(t)
            normalised = tuple(m * f for m, f in zip(makespans, scale))
            latency = tuple(v * f for v, f in zip(latencies, scale)) if min(latencies) > 0 else ()
            out[t] = Candidate(t, len(self.sizes) - k, normalised, lags, cpus, latency)
        return out

    def _run(self, t: int | None, calls: Calls) -> Any:
        # A warm-up, then the steady pass: what a stream with no first or last call costs, which is what the
        # cost model predicts and what a service runs (see _workload).
        own: list[float] = []
        sink = {} if self.siblings is None else {"lag_sink": own}

        def run() -> RunStats:
            return run_calls(
                calls,
                self.callers,
                self.make_call(self.executor, self.spec.fn, threshold_gate(t)),
                self.executor,
                warmup=self.rounds.warmup(len(calls), self.callers),
                **sink,
            )

        if self.siblings is None:
            return run()
        message = None if self.sibling_message is None else self.sibling_message(t)
        stats, counts, lags = self.siblings.around(self.lane, t, run, message)
        self.sibling_calls = [a + b for a, b in zip(self.sibling_calls or [0] * len(counts), counts)]
        # The makespan is this process's: the siblings run until its run ends, so all of it is in the shape (the
        # slowest process would add their start and stop skew). Lag is every loop's: each is a service's.
        pooled = sorted(own + lags)
        return replace(
            stats,
            lag_p50_s=_quantile(pooled, 0.5),
            lag_p99_s=_quantile(pooled, 0.99),
            lag_max_s=pooled[-1] if pooled else 0.0,
        )

    def indexed(self) -> list[tuple[int, float]]:
        return [(k, c.makespan) for k, c in self.runs.items()]

    def candidates(self) -> list[Candidate]:
        return sorted(self.runs.values(), key=lambda c: order_key(c.threshold))
