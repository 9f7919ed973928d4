"""Calibration's shared-stream phase (impure orchestration): kernels that share one event loop, tuned on one stream.

Each kernel's concurrent phase (:mod:`_loadphase`) measures it alone: ``K`` callers, only its calls. A
service that runs several kernels on one loop pays for every inline call in every kernel's latency, so a
threshold tuned on a kernel's own stream can offload too little: on the mixed benchmark (an O(n^2) kernel and
a numpy kernel on one loop) the best static combination offloaded the O(n^2) kernel from 90-128 where alone
it calibrated to 181-256. This phase builds one stream of all the kernels' calls (each kernel's own workload
mix, shuffled together; in the proportions of the plan's ``rate`` when every kernel states one, else about the
same inline work each: :func:`stream_counts`) and, kernel by kernel, measures that kernel's
threshold on its lane (threads when it has a thread lane, else processes: the lane the runtime uses with both
pools installed) over a grid two octaves either side of its current threshold (every octave of its mix under the
latency objective, ``LATENCY_STEPS``), the other kernels keeping
theirs: one pass of coordinate search, decided by the objective's rule (:func:`_latency.choose_for`) exactly as the
alone phase decides (the loop budget's cap included). With ``calibrate --processes N``, every run has N-1 sibling
service processes (:mod:`_siblings`) going round the same shared stream (their own order) beside it, each kernel's
calls under the same thresholds as the run's, so the stream is measured in the shape the service runs.
"""

from __future__ import annotations

import random
import statistics
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from offload_tuner.calibration._candidates import Candidate
from offload_tuner.calibration._choice import Choice
from offload_tuner.calibration._grid import grid_index, grid_point, order_key, snap
from offload_tuner.calibration._latency import choose_for
from offload_tuner.calibration._loadphase import MAX_CALLS, SEED, Rounds, _Runner
from offload_tuner.calibration._measure import clock
from offload_tuner.calibration._workload import (
    Call,
    Calls,
    kernel_calls,
    mix_sizes,
    process_call,
    thread_call,
    threshold_gate,
)
from offload_tuner.runtime._policy import PolicyKnobs
from offload_tuner.runtime._registry import KernelSpec

if TYPE_CHECKING:
    from offload_tuner.calibration._siblings import Siblings

GRID_STEPS = (-4, -2, 0, 2, 4)
"""Candidates, in half-octave grid steps from the kernel's current threshold: two octaves either way. The mixed
benchmark's best static combinations were one octave below the alone thresholds for the O(n^2) kernel and two
above for the numpy kernel's thread lane."""
QUICK_STEPS = (-2, 0, 2)
"""At an effort without neighbours (``quick``): one octave either way."""
LATENCY_STEPS = tuple(range(-60, 61, 2))
"""Under the latency objective: every octave of the kernel's mix, from its current threshold (the grid points past
the mix are dropped). A kernel's alone choice minimises the p99 of its own calls; on the shared stream the p99 is
set by whichever kernel's calls are longest, and the cost a kernel with short calls imposes on them (inline work
holding the loop and taking CPU from the workers) can move its best threshold far from its alone one: in the HTTP
benchmark's diagnostic, rank and spikes from never to 256 (``benchmarks/results/http/latency``)."""
LATENCY_QUICK_STEPS = tuple(range(-60, 61, 4))
"""The latency objective at ``quick``: every other octave of the mix."""


def shared_steps(objective: str, neighbours: bool) -> tuple[int, ...]:
    """The grid steps a kernel's shared candidates take from its current threshold (:func:`shared_candidates`)."""
    if objective == "latency":
        return LATENCY_STEPS if neighbours else LATENCY_QUICK_STEPS
    return GRID_STEPS if neighbours else QUICK_STEPS


SHARED_RUN_FACTOR = 2.0
"""A shared run holds this many times ``Rounds.run_s`` of inline work: it is several kernels' streams at once."""


@dataclass(frozen=True, slots=True)
class Member:
    """One kernel of the shared stream, as its alone calibration left it."""

    spec: KernelSpec
    lane: str
    """``"thread"`` or ``"process"``: where the runtime sends its offloaded calls with both pools installed."""
    threshold: int | None
    workload_range: tuple[float, float]
    inline_s: Callable[[float], float]
    """Predicted inline seconds of one call at a size (the fitted compute model), to balance the stream."""
    floor: int | None = None
    """No thread-lane threshold below this (smaller sizes held the GIL when measured, :mod:`_gil`)."""
    budget_cap: int | None = None
    """No process-lane threshold above this: the loop budget's cap, as the alone phase corrected it."""
    rate: float | None = None
    """How often the service calls it relative to the other members (the plan's ``rate``), if stated."""


def member_from_entry(spec: KernelSpec, entry: Mapping[str, Any], inline_s: Callable[[float], float]) -> Member | None:
    """The member a calibrated kernel's entry makes, or None for a kernel that failed or is not trusted (the
    runtime ignores those: they run inline, and are left out of the stream)."""
    if entry.get("status") != "ok" or "workload_range" not in entry or "load" not in entry:
        return None
    lo, hi = entry["workload_range"]
    rate = entry.get("rate")
    thread = entry.get("thread") or {}
    if thread.get("threshold") is not None:
        floor = thread.get("floor")
        return Member(spec, "thread", thread["threshold"], (float(lo), float(hi)), inline_s, floor, rate=rate)
    cap = entry["load"].get("budget_cap")
    return Member(spec, "process", entry.get("threshold"), (float(lo), float(hi)), inline_s, budget_cap=cap, rate=rate)


def stream_counts(members: Sequence[Member], inline_work_s: float, fewest: int) -> list[int]:
    """Calls per member for a run of about ``inline_work_s`` of inline work over the members' own mixes (each at
    least ``fewest``, at most ``MAX_CALLS``): in the proportions of their stated rates when every member states
    one (:func:`weighting`; scaled down together when the most frequent would pass ``MAX_CALLS``), else each
    bringing the same share of the inline work (a kernel whose calls are cheap gets many, a heavy one few). Never
    so few that a member's candidates stop splitting its calls differently, which can lift a rarely called kernel
    above its stated proportion."""
    per_call = []
    for m in members:
        lo, hi = m.workload_range
        per_call.append(statistics.fmean(max(m.inline_s(n), 1e-7) for n in mix_sizes(max(1.0, lo), max(1.0, hi), 48)))
    if weighting(members) == "rate":
        scale = inline_work_s / sum(float(m.rate or 0.0) * c for m, c in zip(members, per_call))
        wanted = [float(m.rate or 0.0) * scale for m in members]
        wanted = [w * min(1.0, MAX_CALLS / max(wanted)) for w in wanted]  # capped together: proportions hold
    else:
        wanted = [inline_work_s / max(1, len(members)) / c for c in per_call]
    return [int(min(MAX_CALLS, max(fewest, round(w)))) for w in wanted]


def weighting(members: Sequence[Member]) -> str:
    """How the shared stream weighs its members: ``"rate"`` (every member states one), else ``"inline work"``."""
    return "rate" if members and all(m.rate is not None for m in members) else "inline work"


def unrated(members: Sequence[Member]) -> list[str]:
    """The members without a rate when others state one: their rates are then ignored, which a plan author
    should hear about (an empty list when all or none state one)."""
    missing = [m.spec.key for m in members if m.rate is None]
    return missing if 0 < len(missing) < len(members) else []


def shared_candidates(member: Member, steps: Sequence[int] = GRID_STEPS) -> list[int | None]:
    """The member's current threshold and the grid points ``GRID_STEPS`` from it (from the mix's nearer end for
    a threshold outside it) inside its workload range: past the range's top a threshold is "never", below its
    bottom "always", and only the current one may be either. A thread lane never goes below its floor, a process
    lane never above the loop budget's cap."""
    lo, hi = member.workload_range
    t = member.threshold
    # A threshold outside the mix splits it like the nearest end does: the grid starts from that end.
    centre = snap(hi) if t is None else snap(min(max(t, lo), hi))
    k = grid_index(centre)
    points = [grid_point(k + step) for step in steps]
    inside = [
        p
        for p in points
        if lo <= p <= hi
        and (member.floor is None or p >= member.floor)
        and (member.budget_cap is None or order_key(p) <= order_key(member.budget_cap))
    ]
    return list(dict.fromkeys([t, *inside]))


def build_shared_stream(members: Sequence[Member], counts: Sequence[int], seed: int) -> Calls:
    """Every member's calls (its mix at the quantiles, arguments prebuilt) as ``((key, args), size)``, shuffled
    together."""
    stream: Calls = []
    for m, count in zip(members, counts):
        calls = kernel_calls(m.spec, m.workload_range, count, seed)
        stream += [((m.spec.key, args), n) for args, n in calls]
    random.Random(seed).shuffle(stream)
    return stream


def _lane_call(member: Member, pools: Mapping[str, Executor], gate: Callable[[int], bool]) -> Call:
    make = thread_call if member.lane == "thread" else process_call
    return make(pools[member.lane], member.spec.fn, gate)


def composite_call(
    members: Sequence[Member], pools: Mapping[str, Executor], tested: str, tested_gate: Callable[[int], bool]
) -> Call:
    """One call of the shared stream: the tested kernel's calls by ``tested_gate`` on its lane, every other
    kernel's by its current threshold on its own."""
    makers = {
        m.spec.key: _lane_call(m, pools, tested_gate if m.spec.key == tested else threshold_gate(m.threshold))
        for m in members
    }

    async def call(args: tuple, n: int) -> Any:
        key, real = args
        return await makers[key](real, n)

    return call


def sibling_run(members: Sequence[Member], tested: str) -> Callable[[int | None], tuple]:
    """The message that has a sibling run the shared stream under one candidate of ``tested``: every other
    member at its current threshold (as of now: the members after it are updated later)."""
    thresholds = {m.spec.key: m.threshold for m in members}
    return lambda t: ("run_shared", {**thresholds, tested: t})


def _tested_by(
    members: Sequence[Member], pools: Mapping[str, Executor], tested: str
) -> Callable[[Executor, Any, Callable[[int], bool]], Call]:
    """What :class:`_loadphase._Runner` calls to build one candidate's call: the shared stream's, with
    ``tested``'s calls gated by the candidate."""

    def make(executor: Executor, fn: Any, gate: Callable[[int], bool]) -> Call:
        return composite_call(members, pools, tested, gate)

    return make


@dataclass(frozen=True, slots=True)
class SharedChoice:
    """What the shared stream settled for one kernel."""

    key: str
    lane: str
    alone: int | None
    choice: Choice
    candidates: list[Candidate]
    duration_s: float
    sibling_calls: tuple[int, ...] = ()
    """Calls each sibling service process ran beside the runs (none without ``--processes``)."""

    def to_json(self, kernels: Sequence[str], calls: int) -> dict[str, Any]:
        c = self.choice
        return {
            "kernels": list(kernels),
            "calls": calls,
            "lane": self.lane,
            "alone": self.alone,
            "threshold": c.threshold,
            "interval": list(c.interval),
            "best": c.best,
            "tied": list(c.tied),
            "over_budget": list(c.over_budget),
            "objective": c.objective,
            "noise": c.noise,
            "tie_band": c.band,
            "reason": c.reason,
            "rounds": max(len(x.makespan_s) for x in self.candidates),
            "candidates": [x.to_json() for x in self.candidates],
            "duration_s": round(self.duration_s, 3),
            **({"sibling_calls": list(self.sibling_calls)} if self.sibling_calls else {}),
        }


def measure_shared(
    members: Sequence[Member],
    pools: Mapping[str, Executor],
    knobs: PolicyKnobs,
    *,
    rounds: Rounds,
    progress: Callable[..., None],
    siblings: Siblings | None = None,
    limit_s: float = 60.0,
) -> tuple[list[SharedChoice], Calls]:
    """One pass of coordinate search over ``members`` on their shared stream: each kernel's threshold is
    measured and chosen with the others at theirs (already updated for the kernels before it). With ``siblings``,
    each of them goes round the same stream beside every run, under the run's thresholds; each wait is bounded by
    ``limit_s``."""
    if len(members) < 2:
        raise ValueError("a shared stream needs at least two kernels")
    seed = SEED ^ zlib.crc32("|".join(m.spec.key for m in members).encode())
    fewest = rounds.calls_per_caller * knobs.concurrency
    counts = stream_counts(members, rounds.run_s * SHARED_RUN_FACTOR, fewest)
    stream = build_shared_stream(members, counts, seed)
    if siblings is not None:
        spans = [(m.spec.key, m.lane, *m.workload_range) for m in members]
        siblings.prepare_shared([(*span, count) for span, count in zip(spans, counts)], seed, limit_s=limit_s)
    current = list(members)
    out = []
    for index, member in enumerate(members):
        started = clock()
        key = member.spec.key
        sizes = sorted(n for (k, _), n in stream if k == key)
        runner = _Runner(
            pools["process"],
            member.spec,
            stream,
            sizes,
            knobs.concurrency,
            rounds,
            seed + 2 * index + 2,
            progress,
            started,
            _tested_by(list(current), pools, key),
        )
        runner.siblings, runner.sibling_message = siblings, sibling_run(current, key)
        runner.measure(shared_candidates(current[index], shared_steps(knobs.objective, rounds.neighbours)))
        candidates = runner.candidates()
        cap = member.budget_cap
        choice = choose_for(
            knobs.objective,
            candidates,
            rounds=max(len(c.makespan_s) for c in candidates),
            budget_cap=cap,
            capped=cap is not None,
            loop_budget_s=knobs.loop_budget_s,
            workload_range=member.workload_range,
            calls=len(sizes),
        )
        beside = tuple(runner.sibling_calls)
        out.append(SharedChoice(key, member.lane, member.threshold, choice, candidates, clock() - started, beside))
        current[index] = replace(member, threshold=choice.threshold)
    return out, stream
