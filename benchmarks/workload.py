"""Co-hosted workload benchmark: do the tuned decisions speed up a service like the one we target?

One asyncio process hosts ``callers`` coroutines (default 4) sharing one process pool (one worker per
core). They take calls from one shared sequence: the quantiles of the log-uniform mix over the kernel's
workload range in a seeded order (the same reference workload calibration measures, :mod:`offload_tuner.calibration._workload`); a
heartbeat coroutine measures event-loop lag. Policies, all through the real ``run_kernel``:

* ``tuned``        offload_if=None with the profile calibrated on this host
* ``static-256``   offload_if=size >= 256 (the old hand-picked gate)
* ``T=...``        every static threshold of a sweep: ``always`` (offload_if=True), powers of two across
                   the workload range, ``never`` (offload_if=False)

Policies that make the same decision on every call of the run are one policy: it is measured once per round
and its numbers are shared (otherwise two names for one policy differ by noise, and the oracle, a minimum,
takes the luckier). Every distinct policy runs once per round, in a shuffled order, for several rounds (the calls too come in a
fresh order each round, the same for every policy of the round, so where the largest calls fall is noise and
not a bias one order repeats);
medians are reported. The
oracle is the static policy with the lowest median makespan *in the same rounds* (``static-256``,
``always`` and ``never`` included), and each ratio is reported with its spread: the same ratio taken
round by round (tuned and oracle ran side by side in each), so drift between rounds cancels. The oracle
is the lowest of many noisy medians and reads low by selection; a **confirmation** (``--confirm-rounds``)
runs tuned and the sweep's best statics again in fresh rounds where nothing is selected, and the verdicts
judge that ratio.

    python -m benchmarks.workload [--profile PATH] [--rounds 5] [--confirm-rounds 8] [--kernel NAME ...] [--smoke]
    python -m benchmarks.workload --profile PATH --kernel NAME --compare 8,32,128   # thresholds side by side
    python -m benchmarks.workload --profile PATH --mixrange [--rounds 3]   # issue 29: served up to 5x the top

``--mixrange`` (issue 29, acceptance 3): each kernel of a profile calibrated with no stated mix (its
``workload_source`` is "assumed": the ladder's range stood in for the mix) is served sizes up to
``MIXRANGE_FACTOR`` times its calibrated top, log-uniform from the bottom of that range. The oracle is then the
best static threshold whose p99 loop lag stays within the profile's loop budget; the verdicts: tuned's p99 within
the budget wherever some static's is, and its makespan within 1.10x of the best such static, confirmed in fresh
rounds against the two best within the budget. Writes ``benchmarks/results/mixrange/mixrange.{json,md}``.

writes ``benchmarks/results/workload.{json,md}`` (and ``.png`` when matplotlib is installed; ``--out-dir``
to change).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Executor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any

import offload_tuner
from benchmarks.confirm import (
    CONFIRM_AGAINST,
    CONFIRM_MAX_FACTOR,
    CONFIRM_ROUNDS,
    CONFIRM_STANDARD_ERROR,
    analyse_basin,
    analyse_confirmation,
    confirmation_names,
    judged_ratio,
    normalised,
    per_round,
    until_settled,
    with_aliases,
)
from offload_tuner.calibration._workload import Calls, build_calls, run_calls, shuffled_calls, threshold_gate
from offload_tuner.inspection._report import format_threshold as _fmt_t
from offload_tuner.runtime._host import host_fingerprint
from offload_tuner.runtime._registry import KernelSpec

RESULTS = Path(__file__).resolve().parent / "results"
PLAN = Path(__file__).resolve().parent.parent / "calibration" / "plan.json"
TARGET_RUN_S = 1.5
"""Calls per run are sized so the inline run lasts about this long. At 0.5 s (40-400 calls) one run on this
VM varied by 12-34% round to round, too much to tell 1.00x from 1.10x; the spread of a mean of independent
calls falls as one over the square root of their number, and a run's few largest calls (which set its tail)
are a smaller share of it."""
MIN_CALLS, MAX_CALLS = 120, 1200
CHUNKS = 8
"""A round's calls run in this many slices, every policy taking a slice before the next slice starts, so
that policies alternate every ~0.2 s instead of every ~1.5 s. This VM's speed wanders over seconds (a fixed
0.22 s loop took 0.198-0.300 s, in runs of several slow or fast takes): seven blocks of 1.3 s of equal work
normalised round by round spread by 25% across rounds; the same work as six interleaved slices each, 5.6%.
The mix-shift benchmark's spread over rounds: 19-22% in whole runs, 10-11% in 4 slices, 6-7% in 8. Each
slice has its own ramp-up and drain, which the steady pass (timed per slice) leaves out."""
MIN_SLICE_CALLS_PER_CALLER = 8
"""A slice needs several calls per caller to be a workload rather than its ramp-up and drain."""
WARMUP_CALLS_PER_CALLER = 2
"""Calls per caller run again after a slice's last, so that each run also times a steady pass. Fewer than
calibration's 6 (``_loadphase.WARMUP_TAKES_PER_CALLER``): the benchmark's verdicts come from whole runs,
warm-up calls included, and a longer warm-up per slice would add to its time. The steady column and the model
check read that pass; it starts before the pool's backlog has filled, so it reads the best threshold up to
~12% further ahead of the others than a long stream does (the discrete-event model, 32 calls and 8 warm-up
takes)."""
LEARN_PASSES = 2
"""With ``--adaptive``: runs with adaptation on before the measured rounds (a service that has been running)."""


@dataclass(frozen=True)
class Workload:
    key: str
    lo: int
    hi: int


def load_workloads(plan_path: Path = PLAN) -> list[Workload]:
    """Size ranges come from the calibration plan's ``workload_range``: one statement of what the service
    calls each kernel with, used both to tune and to benchmark. They straddle the old constant 256."""
    plan = json.loads(plan_path.read_text())
    return [
        Workload(key, int(entry["workload_range"][0]), int(entry["workload_range"][1]))
        for key, entry in plan["kernels"].items()
        if "workload_range" in entry
    ]


@dataclass
class RunResult:
    policy: str
    makespan_s: float
    lag_p50_s: float
    lag_p99_s: float
    lag_max_s: float
    caller_cpu_s: float
    worker_cpu_s: float | None
    offloaded: int
    calls: int
    steady_s: float | None = None
    """One steady pass over the calls (ramp-up and drain left out), as calibration times it."""


def sweep_thresholds(workload: Workload) -> list[int | None]:
    """Static thresholds to sweep: always (0), powers of two across the range, never (None)."""
    grid: list[int | None] = [0]
    n = 1 << max(0, math.ceil(math.log2(workload.lo)))
    while n <= workload.hi:
        grid.append(n)
        n *= 2
    grid.append(None)
    return grid


def static_name(t: int | None) -> str:
    return "never" if t is None else ("always" if t == 0 else f"T={t}")


def policy_gate(name: str, named: Mapping[str, int | None] | None = None) -> Callable[[int], bool | None]:
    """The offload_if value a policy passes for a call of size n (None: let the profile decide). ``named``
    adds policies that are static thresholds under another name (e.g. ``{"retuned": 181}``)."""
    if named and name in named:
        return threshold_gate(named[name])
    if name == "tuned":
        return lambda n: None
    if name == "static-256":
        return lambda n: n >= 256
    if name == "never":
        return lambda n: False
    if name == "always":
        return lambda n: True
    threshold = int(name.removeprefix("T="))
    return lambda n: n >= threshold


def size_calls(spec: KernelSpec, workload: Workload, seed: int, smoke: bool) -> Calls:
    """A probe of 20 calls times the inline cost per call; the run is sized from it."""
    if smoke:
        return build_calls(spec.sample, spec.size, (workload.lo, min(workload.hi, workload.lo * 4)), 12, seed)  # type: ignore[arg-type]
    probe = build_calls(spec.sample, spec.size, (workload.lo, workload.hi), 20, seed)  # type: ignore[arg-type]
    start = time.perf_counter()
    for args, _ in probe:
        spec.fn(*args)
    per_call = (time.perf_counter() - start) / len(probe)
    count = int(min(MAX_CALLS, max(MIN_CALLS, TARGET_RUN_S / max(per_call, 1e-6))))
    return build_calls(spec.sample, spec.size, (workload.lo, workload.hi), count, seed)  # type: ignore[arg-type]


class DynamicPolicy:
    """A policy whose decisions change during the run (online adaptation): the profile decides
    (``offload_if=None``) inside ``during()``, which sets the policy up and tears it down around each run so
    the policies between its runs see the static profile; ``offloaded()`` counts what it offloaded."""

    def during(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def offloaded(self) -> int:
        raise NotImplementedError


def run_policy(
    spec: KernelSpec,
    calls: Calls,
    name: str,
    callers: int,
    named: Mapping[str, int | None] | None = None,
    dynamic: Mapping[str, DynamicPolicy] | None = None,
    warmup: int | None = None,
) -> RunResult:
    """One run of ``calls`` under one policy. ``warmup``: calls run again after the last so that a steady pass
    is timed (default: a few per caller; 0 runs the calls once, in order, as a time series)."""
    policy = (dynamic or {}).get(name)
    gate = (lambda n: None) if policy is not None else policy_gate(name, named)
    warmup = WARMUP_CALLS_PER_CALLER * callers if warmup is None else warmup

    async def call(args: tuple, n: int) -> Any:
        return await offload_tuner.run_kernel(spec.fn, *args, offload_if=gate(n))

    if policy is not None:
        with policy.during():
            stats = run_calls(calls, callers, call, offload_tuner.get_executor(), warmup=warmup)
            offloaded = policy.offloaded()
    else:
        # Counted outside the timed run, through the same decision run_kernel makes.
        offloaded = sum(1 for args, n in calls if offload_tuner.decide(spec.fn, *args, offload_if=gate(n)).offload)
        stats = run_calls(calls, callers, call, offload_tuner.get_executor(), warmup=warmup)
    return RunResult(
        name,
        stats.makespan_s,
        stats.lag_p50_s,
        stats.lag_p99_s,
        stats.lag_max_s,
        stats.caller_cpu_s,
        stats.worker_cpu_s,
        offloaded,
        len(calls),
        stats.steady_s,
    )


@contextmanager
def installed_pool(workers: int | None) -> Iterator[Executor]:
    """A recommended pool installed for the benchmark's calls; afterwards no adaptation, no executor, no pool."""
    pool = offload_tuner.recommended_pool(workers)
    offload_tuner.set_executor(pool)
    try:
        yield pool
    finally:
        offload_tuner.adapt(False)
        offload_tuner.set_executor(None)
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def installed_pools(workers: int) -> Iterator[dict[str, Executor]]:
    """A recommended process pool and a thread pool (not installed: each policy installs what it uses);
    afterwards no executor and no pool."""
    from concurrent.futures import ThreadPoolExecutor

    pools: dict[str, Executor] = {
        "process": offload_tuner.recommended_pool(workers),
        "thread": ThreadPoolExecutor(workers, thread_name_prefix="bench"),
    }
    try:
        yield pools
    finally:
        offload_tuner.set_executors({})
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


def lane_summary(
    runs: Mapping[str, list[dict[str, float]]],
) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """Per policy: the median makespan normalised round by round (each round's geometric mean over every
    policy), and the median p99 loop lag and CPU; and the normalised makespans themselves."""
    values = normalised(runs)
    summary = {
        n: {
            "makespan_s": statistics.median(values[n]),
            "lag_p99_s": statistics.median(run["lag_p99_s"] for run in runs[n]),
            "cpu_s": statistics.median(run["cpu_s"] for run in runs[n]),
        }
        for n in runs
    }
    return summary, values


def warm_workers(spec: KernelSpec, calls: Calls) -> None:
    """Each worker imports the kernel's module on its first call; keep that out of every timed run."""
    from offload_tuner.runtime._backends import dumps_call, invoke_pickled

    executor = offload_tuner.get_executor()
    args = calls[0][0]
    for future in [executor.submit(invoke_pickled, dumps_call(spec.fn, args)) for _ in range(8)]:
        future.result()


def bench_workload(
    spec: KernelSpec,
    workload: Workload,
    *,
    callers: int,
    rounds: int,
    seed: int,
    smoke: bool = False,
    named: Mapping[str, int | None] | None = None,
    calls: Calls | None = None,
    dynamic: Mapping[str, DynamicPolicy] | None = None,
    order: Callable[[Calls, random.Random], Calls] = shuffled_calls,
    warmup: int | None = None,
    chunks: int = CHUNKS,
    confirm_rounds: int = 0,
    confirm_max_rounds: int | None = None,
) -> dict[str, Any]:
    """Every policy in interleaved rounds: tuned (the profile decides), the old 256, ``named`` thresholds,
    ``dynamic`` policies, and the static sweep (the oracle is the best static measured, named ones included).
    ``order`` gives each round's order of the calls (the same for every policy of the round); each round runs
    in up to ``chunks`` slices (:func:`run_round`; 1 for a run that must stay one time series).
    ``confirm_rounds``: fresh rounds of tuned against the sweep's best statics (:func:`confirmation_names`),
    more until settled (``CONFIRM_STANDARD_ERROR``), at most ``confirm_max_rounds`` (default
    ``CONFIRM_MAX_FACTOR`` times as many)."""
    calls = calls if calls is not None else size_calls(spec, workload, seed, smoke)
    warm_workers(spec, calls)
    statics = [static_name(t) for t in sweep_thresholds(workload)]
    policies = ["tuned", "static-256"] + list(named or {}) + list(dynamic or {}) + [s for s in statics if s != "T=256"]
    same_as = identical_policies(spec, calls, [p for p in policies if p not in (dynamic or {})], named)
    same_as.update({p: p for p in dynamic or {}})
    distinct = [p for p in policies if same_as[p] == p]
    runs: dict[str, list[RunResult]] = {p: [] for p in policies}
    order_rng, calls_rng = random.Random(seed), random.Random(seed + 1)
    slices = chunk_count(len(calls), callers, chunks)

    def measure(names: list[str], count: int) -> Iterator[dict[str, RunResult]]:
        return fresh_rounds(
            calls,
            names,
            count,
            slices,
            order_rng,
            calls_rng,
            order,
            lambda piece, name: run_policy(spec, piece, name, callers, named, dynamic, warmup),
        )

    for results in measure(distinct, rounds):
        for name, result in results.items():
            for member in (p for p in policies if same_as[p] == name):
                runs[member].append(RunResult(member, *astuple(result)[1:]))
    tuned = offload_tuner.decide(spec.fn, *spec.sample(workload.lo))  # type: ignore[misc]
    entry: dict[str, Any] = {
        "kernel": spec.key,
        "sizes": [workload.lo, workload.hi],
        "calls": len(calls),
        "tuned_threshold": tuned.threshold,
        "tuned_reason": tuned.reason,
        "runs": {name: [asdict(r) for r in results] for name, results in runs.items()},
        "same_as": {name: rep for name, rep in same_as.items() if rep != name},
        "slices": slices,
    }
    if named:
        entry["named"] = dict(named)
    if dynamic:
        entry["dynamic"] = list(dynamic)
    analyse(entry)
    confirm = confirmation_names(entry) if confirm_rounds > 0 else None
    if confirm is not None:
        most = CONFIRM_MAX_FACTOR * confirm_rounds if confirm_max_rounds is None else confirm_max_rounds
        fresh = ({name: asdict(result) for name, result in results.items()} for results in measure(confirm, most))
        entry["confirmation"] = until_settled(fresh, confirm_rounds, analyse_confirmation)
    entry["model_check"] = model_check(spec, calls, entry["summary"], workload, named, list(dynamic or {}))
    return entry


def compare_statics(
    spec: KernelSpec,
    workload: Workload,
    thresholds: list[int | None],
    *,
    callers: int,
    seed: int,
    least: int,
    most: int,
    smoke: bool = False,
    chunks: int = CHUNKS,
) -> dict[str, Any]:
    """Static thresholds alone, side by side in fresh rounds (at least ``least``, at most ``most``, more until
    settled): is the basin between several calibrations' thresholds flat? Thresholds deciding every call alike
    are one policy (``same_as``)."""
    calls = size_calls(spec, workload, seed, smoke)
    warm_workers(spec, calls)
    names = list(dict.fromkeys(static_name(t) for t in thresholds))
    same_as = identical_policies(spec, calls, names)
    distinct = [name for name in names if same_as[name] == name]
    slices = chunk_count(len(calls), callers, chunks)
    order_rng, calls_rng = random.Random(seed), random.Random(seed + 1)

    rounds = fresh_rounds(
        calls,
        distinct,
        most,
        slices,
        order_rng,
        calls_rng,
        shuffled_calls,
        lambda piece, name: run_policy(spec, piece, name, callers),
    )
    if len(distinct) == 1:  # one policy under several names: flat by identity
        basin = {"runs": {}, "best": distinct[0], "vs_best": {distinct[0]: 1.0}, "rounds": 0, "standard_error": 0.0}
    else:
        basin = until_settled(
            ({name: asdict(r) for name, r in results.items()} for results in rounds), least, analyse_basin
        )
    aliases = {name: rep for name, rep in same_as.items() if rep != name}
    basin["vs_best"] = with_aliases(basin["vs_best"], aliases)
    return {"kernel": spec.key, "calls": len(calls), "thresholds": thresholds, "same_as": aliases, **basin}


def fresh_rounds(
    calls: Calls,
    names: list[str],
    count: int,
    slices: int,
    order_rng: random.Random,
    calls_rng: random.Random,
    order: Callable[[Calls, random.Random], Calls],
    run: Callable[[Calls, str], RunResult],
) -> Iterator[dict[str, RunResult]]:
    """``count`` rounds of ``names``, lazily (a caller may stop early): each a fresh order of the calls, the same
    for every policy of the round, run in ``slices`` slices (:func:`run_round`)."""
    for _ in range(count):
        yield run_round(order(calls, calls_rng), names, slices, order_rng, run)


def round_ends(entry: dict[str, Any], rounds: int) -> list[Any]:
    """A dynamic policy's threshold at the end of each measured round: it records one per run, and a round
    runs it once per slice."""
    slices = entry.get("slices", 1)
    return entry["adaptive"]["thresholds"][-rounds * slices :][slices - 1 :: slices]


def chunk_count(calls: int, callers: int, chunks: int) -> int:
    """Slices a round of ``calls`` runs in: at most ``chunks``, each with ``MIN_SLICE_CALLS_PER_CALLER``."""
    return max(1, min(chunks, calls // (MIN_SLICE_CALLS_PER_CALLER * callers)))


def run_round(
    calls: Calls, names: list[str], slices: int, rng: random.Random, run: Callable[[Calls, str], RunResult]
) -> dict[str, RunResult]:
    """One round: the calls cut into ``slices`` slices (every ``slices``-th call: each a sample of the mix),
    every policy running each slice, in a fresh shuffled order, before the next slice starts; per policy,
    its slices' results added up (:func:`combined`). See ``CHUNKS`` for why."""
    pieces = [calls[i::slices] for i in range(slices)]
    parts: dict[str, list[RunResult]] = {name: [] for name in names}
    for piece in pieces:
        order = names[:]
        rng.shuffle(order)
        for name in order:
            parts[name].append(run(piece, name))
    return {name: combined(results) for name, results in parts.items()}


def combined(parts: list[RunResult]) -> RunResult:
    """One run from its slices: times, CPU and counts add up; the p50 lag is the slices' median, the p99 and
    the maximum their largest (an upper bound of the whole run's p99)."""
    if len(parts) == 1:
        return parts[0]
    workers = [p.worker_cpu_s for p in parts]
    steady = [p.steady_s for p in parts]
    return RunResult(
        parts[0].policy,
        sum(p.makespan_s for p in parts),
        statistics.median(p.lag_p50_s for p in parts),
        max(p.lag_p99_s for p in parts),
        max(p.lag_max_s for p in parts),
        sum(p.caller_cpu_s for p in parts),
        None if any(w is None for w in workers) else sum(workers),  # type: ignore[misc]
        sum(p.offloaded for p in parts),
        sum(p.calls for p in parts),
        None if any(t is None for t in steady) else sum(steady),  # type: ignore[misc]
    )


def identical_policies(
    spec: KernelSpec, calls: Calls, policies: list[str], named: Mapping[str, int | None] | None = None
) -> dict[str, str]:
    """Each policy's representative: the first policy (in ``policies`` order) that decides every call alike."""
    first: dict[tuple[bool, ...], str] = {}
    same_as = {}
    for name in policies:
        gate = policy_gate(name, named)
        signature = tuple(offload_tuner.decide(spec.fn, *args, offload_if=gate(n)).offload for args, n in calls)
        same_as[name] = first.setdefault(signature, name)
    return same_as


def analyse(entry: dict[str, Any]) -> None:
    """Medians, the oracle and the ratios from an entry's raw runs (so a recorded report can be re-read).

    Makespans are normalised round by round (each round's geometric mean over every policy, scaled to the mean
    over rounds): the machine's slow and fast moments then weigh on every policy of a round alike, and what
    is left is each policy's own noise. The oracle is the static policy with the lowest normalised median;
    the per-round range is of tuned / oracle within each round, where both ran side by side. The same is
    done for the steady pass where the runs timed one."""
    runs = entry["runs"]
    names = list(runs)
    summary = {}
    for name in names:
        summary[name] = summarise([RunResult(**run) for run in runs[name]])
        summary[name]["raw_makespan_s"] = summary[name]["makespan_s"]
    made = _compare(entry, "makespan_s")
    for name in names:
        summary[name]["makespan_s"] = made["medians"][name]
    entry["summary"] = summary
    entry["oracle"] = made["oracle"]
    entry["tuned_vs_oracle"] = made["ratio"]
    entry["tuned_vs_oracle_per_round"] = made["per_round"]
    entry["spread"] = made["spread"]
    if all(run.get("steady_s") is not None for name in names for run in runs[name]):
        steady = _compare(entry, "steady_s")
        for name in names:
            summary[name]["raw_steady_s"] = statistics.median(run["steady_s"] for run in runs[name])
            summary[name]["steady_s"] = steady["medians"][name]
        entry["steady"] = {k: steady[k] for k in ("oracle", "ratio", "per_round", "spread")}
    if "confirmation" in entry:
        entry["confirmation"] = analyse_confirmation(entry["confirmation"]["runs"])


def _compare(entry: dict[str, Any], field: str) -> dict[str, Any]:
    """Normalised medians of ``field``, the best static policy and tuned's ratio to it (median, per round)."""
    runs, same_as = entry["runs"], entry.get("same_as", {})
    names = list(runs)
    rounds = len(runs[names[0]])
    distinct = [name for name in names if name not in same_as]
    # Aliases ran as their representative: normalise over distinct policies, then share the values.
    values = normalised({name: runs[name] for name in distinct}, field)
    normalised_all = {name: values[same_as.get(name, name)] for name in names}
    medians = {name: statistics.median(v) for name, v in normalised_all.items()}
    dynamic = set(entry.get("dynamic", ()))
    oracle = min((n for n in names if n != "tuned" and n not in dynamic), key=lambda n: medians[n])
    spread = (
        statistics.median((max(v) - min(v)) / statistics.median(v) for name, v in values.items() if len(v) > 1)
        if rounds > 1
        else 0.0
    )
    return {
        "medians": medians,
        "oracle": oracle,
        "ratio": medians["tuned"] / medians[oracle],
        "per_round": per_round(normalised_all, "tuned", oracle),
        "spread": spread,
    }


def summarise(results: list[RunResult]) -> dict[str, Any]:
    out: dict[str, Any] = {
        field: statistics.median(getattr(r, field) for r in results)
        for field in ("makespan_s", "lag_p50_s", "lag_p99_s", "lag_max_s", "caller_cpu_s", "offloaded")
    }
    workers = [r.worker_cpu_s for r in results if r.worker_cpu_s is not None]
    out["worker_cpu_s"] = statistics.median(workers) if workers else None
    out["calls"] = results[0].calls
    return out


def model_check(
    spec: KernelSpec,
    calls: Calls,
    summary: dict[str, Any],
    workload: Workload,
    named: Mapping[str, int | None] | None = None,
    entry_dynamic: Collection[str] = (),
) -> dict[str, Any] | None:
    """The profile's own prediction of each static policy's makespan on these exact calls (load factors
    included), against the measured median: where they disagree is where the model needs work."""
    from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, predict, workload_makespan

    profile = offload_tuner.current_profile()
    entry = profile.kernels.get(spec.key) if profile is not None else None
    if entry is None or "costs" not in entry.data:
        return None
    costs = KernelCosts.from_json(entry.data["costs"])
    transport = TransportModel.from_json(profile.data["transport"]["model"])
    knobs = PolicyKnobs.from_json(profile.data.get("policy", {}))
    sizes = sorted(n for _, n in calls)
    predictions = [predict(costs, transport, knobs, n) for n in sizes]
    rows = {}
    for name in summary:
        if name == "tuned" or name in entry_dynamic:
            continue
        if named and name in named:
            t = named[name]
        else:
            t = parse_threshold(name)
        k = len(sizes) if t is None else next((i for i, n in enumerate(sizes) if n >= t), len(sizes))
        predicted = workload_makespan(predictions, knobs, k)
        measured = summary[name].get("raw_steady_s", summary[name]["raw_makespan_s"])  # the model is steady-state
        rows[name] = {"predicted_s": predicted, "measured_s": measured, "error": abs(predicted - measured) / measured}
    return {"rows": rows, "median_error": statistics.median(r["error"] for r in rows.values())}


def verdicts(entry: dict[str, Any], loop_budget_s: float | None) -> dict[str, Any]:
    """The issue's goals, checked on the medians."""
    s = entry["summary"]
    per_round = entry["tuned_vs_oracle_per_round"]
    c = entry.get("confirmation")
    out = {
        "tuned_vs_oracle": entry["tuned_vs_oracle"],
        "tuned_vs_oracle_range": [min(per_round), max(per_round)],
        "confirmed_vs_oracle": None if c is None else c["ratio"],
        "confirmed_range": None if c is None else [min(c["per_round"]), max(c["per_round"])],
        "makespan_within_1.10x_oracle": judged_ratio(entry) <= 1.10,
        "steady_within_1.10x_oracle": None if "steady" not in entry else entry["steady"]["ratio"] <= 1.10,
        "p99_lag_not_above_static_256": s["tuned"]["lag_p99_s"] <= s["static-256"]["lag_p99_s"] * 1.05,
    }
    if loop_budget_s is not None:
        out["p99_lag_within_budget"] = s["tuned"]["lag_p99_s"] <= loop_budget_s
    return out


def _adaptive_section(report: dict[str, Any]) -> list[str]:
    """With ``--adaptive``: the adaptive policy against the static profile, measured in the same rounds."""
    entries = [e for e in report["workloads"] if "adaptive" in e["summary"]]
    if not entries:
        return []
    lines = [
        "",
        "## Online adaptation (warm) against the static profile",
        "",
        f"{LEARN_PASSES} runs with adaptation on before the rounds; its clock compressed (a window every "
        f"{entries[0]['adaptive']['settings']['every_s']} s on {entries[0]['adaptive']['settings']['min_calls']} "
        "calls). *adaptive / tuned* per round: the two ran side by side in each round.",
        "",
        "| kernel | tuned T | adaptive T (end of each round) | tuned / oracle | adaptive / oracle | "
        "adaptive / tuned [per round] | spread |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        s, runs = e["summary"], e["runs"]
        o = s[e["oracle"]]["makespan_s"]
        per_round = [a["makespan_s"] / t["makespan_s"] for a, t in zip(runs["adaptive"], runs["tuned"])]
        ratio = s["adaptive"]["makespan_s"] / s["tuned"]["makespan_s"]
        thresholds = ", ".join(_fmt_t(t) for t in round_ends(e, report["rounds"]))
        lines.append(
            f"| {_name(e)} | {_fmt_t(e['tuned_threshold'])} | {thresholds} | {s['tuned']['makespan_s'] / o:.2f} "
            f"| {s['adaptive']['makespan_s'] / o:.2f} | {ratio:.2f} [{min(per_round):.2f}, "
            f"{max(per_round):.2f}] | {e['spread']:.0%} |"
        )
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    host = report["host"]
    budget = report.get("loop_budget_s")
    budget_text = "off" if budget is None else f"{budget * 1e3:.0f} ms"
    lines = [
        "# Co-hosted workload benchmark\n",
        f"Host `{host['hostname']}` ({host['cpu_model']}, {host['logical_cores']} cores), Python "
        f"{host['python_version']}; {report['callers']} callers, pool of {report['workers']} workers; every policy "
        f"once per round, {report['rounds']} shuffled rounds, medians; profile `{report['profile']}` (loop budget "
        f"{budget_text}); {report['created']}.\n",
        f"Command: `{report['command']}`\n",
        "Makespans are normalised round by round (by the round's geometric mean over every policy: a slow moment "
        "of the machine weighs on all policies of its round alike). The oracle is the static policy (a threshold "
        "of the sweep, `always`, `never` or `static-256`) with the lowest normalised median in the same rounds. "
        "*tuned / oracle* is the ratio of those medians, with the range of the same ratio taken round by round; "
        "the oracle is the lowest of many noisy medians, so this ratio reads high by selection. *Confirmed* runs "
        f"tuned and the sweep's best {CONFIRM_AGAINST} statics again in fresh rounds of their own, at least "
        f"{report.get('confirm_rounds', 0)} and up to {CONFIRM_MAX_FACTOR}x as many until the standard error of the "
        f"median ratio is within {CONFIRM_STANDARD_ERROR:.0%} (no policy is picked in them; none needed where tuned "
        "decides like the oracle): the median of tuned / static round by round, against the static it compares "
        "worst with, ± the largest standard error of those medians, over the rounds run. The verdicts judge the "
        "confirmed ratio where "
        "there is one. "
        "*spread* is a policy's round-to-round (max - min) / median after normalisation, the median over "
        "policies. The *steady pass* is the same comparison on one pass of the calls with ramp-up and drain left "
        "out (what calibration times: a service's stream has no last call). Policies that decide every call alike are one policy, measured once per round (`(= tuned)` "
        "in the table below). The model check compares raw medians with the profile's predictions.\n",
        "| kernel | tuned T | oracle | tuned / oracle [per round] | confirmed: oracle, tuned / oracle ± SE [per round] "
        "| spread | steady pass: oracle, tuned / oracle [per round] "
        "| p99 lag: tuned / static-256 / always / never | tuned p99 lag within budget | model error (median) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["workloads"]:
        s, v = e["summary"], e["verdicts"]
        lo, hi = v["tuned_vs_oracle_range"]
        within = "-" if "p99_lag_within_budget" not in v else ("yes" if v["p99_lag_within_budget"] else "**no**")
        check = e.get("model_check")
        lags = " / ".join(f"{s[p]['lag_p99_s'] * 1e3:.1f}" for p in ("tuned", "static-256", "always", "never"))
        lines.append(
            f"| {_name(e)} | {_fmt_t(e['tuned_threshold'])} | {e['oracle']} | "
            f"{'**' if e['tuned_vs_oracle'] > 1.10 else ''}{e['tuned_vs_oracle']:.2f}"
            f"{'**' if e['tuned_vs_oracle'] > 1.10 else ''} [{lo:.2f}, {hi:.2f}] | {_confirmed(e)} | {e['spread']:.0%} | "
            f"{_steady(e)} | {lags} ms | "
            f"{within} | {'-' if check is None else format(check['median_error'], '.0%')} |"
        )
    lines += _adaptive_section(report)
    errors = [e["model_check"]["median_error"] for e in report["workloads"] if e.get("model_check")]
    if errors:
        lines += [
            "",
            f"Model check, median over kernels of each kernel's median error: **{statistics.median(errors):.0%}**.",
        ]
    lines += [
        "",
        "## Every policy",
        "",
        "| kernel | policy | makespan (raw median) | vs oracle (normalised) | loop lag p50 | p99 | max | caller CPU | worker CPU | offloaded |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["workloads"]:
        s = e["summary"]
        oracle = s[e["oracle"]]["makespan_s"]
        for name, r in sorted(s.items(), key=lambda item: item[1]["makespan_s"]):
            label = f"**{name}**" if name in ("tuned", e["oracle"]) else name
            if name in e.get("same_as", {}):
                label += f" (= {e['same_as'][name]})"
            worker = "-" if r["worker_cpu_s"] is None else f"{r['worker_cpu_s'] * 1e3:.0f} ms"
            lines.append(
                f"| {_name(e)} | {label} | {r['raw_makespan_s'] * 1e3:.0f} ms | {r['makespan_s'] / oracle:.2f}x | "
                f"{r['lag_p50_s'] * 1e3:.2f} ms | {r['lag_p99_s'] * 1e3:.1f} ms | {r['lag_max_s'] * 1e3:.1f} ms | "
                f"{r['caller_cpu_s'] * 1e3:.0f} ms | {worker} | {r['offloaded']:.0f}/{r['calls']} |"
            )
    lines += [
        "",
        "## Model check: the profile's predicted makespan (load factors included) vs measured",
        "",
        "| kernel | median error | policy: predicted / measured steady pass (ms) |",
        "|---|---|---|",
    ]
    for e in report["workloads"]:
        check = e.get("model_check")
        if not check:
            continue
        cells = ", ".join(
            f"{name}: {r['predicted_s'] * 1e3:.0f}/{r['measured_s'] * 1e3:.0f}" for name, r in check["rows"].items()
        )
        lines.append(f"| {_name(e)} | {check['median_error']:.0%} | {cells} |")
    return "\n".join(lines) + "\n"


def _confirmed(entry: dict[str, Any]) -> str:
    c = entry.get("confirmation")
    if c is None:
        return "-"
    bold = "**" if c["ratio"] > 1.10 else ""
    return (
        f"{c['oracle']}, {bold}{c['ratio']:.2f}{bold} ± {c['standard_error']:.2f} [{min(c['per_round']):.2f}, "
        f"{max(c['per_round']):.2f}], {c['rounds']} rounds"
    )


def _steady(entry: dict[str, Any]) -> str:
    st = entry.get("steady")
    if st is None:
        return "-"
    bold = "**" if st["ratio"] > 1.10 else ""
    return f"{st['oracle']}, {bold}{st['ratio']:.2f}{bold} [{min(st['per_round']):.2f}, {max(st['per_round']):.2f}]"


def _name(entry: dict[str, Any]) -> str:
    return entry["kernel"].split(":")[1]


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = ["tuned", "static-256", "always", "never"]
    names = [_name(e) for e in report["workloads"]]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
    width = 0.2
    for i, policy in enumerate(policies):
        xs = [k + (i - 1.5) * width for k in range(len(names))]
        rel = [
            e["summary"][policy]["makespan_s"] / e["summary"][e["oracle"]]["makespan_s"] for e in report["workloads"]
        ]
        lag = [max(e["summary"][policy]["lag_p99_s"] * 1e3, 0.01) for e in report["workloads"]]
        ax1.bar(xs, rel, width, label=policy)
        ax2.bar(xs, lag, width, label=policy)
    ax1.axhline(1.10, color="k", ls="--", lw=0.8)
    ax1.text(len(names) - 0.5, 1.12, "1.10x oracle", ha="right", fontsize=8)
    ax1.set_yscale("log")
    ax1.set_ylabel("makespan / oracle (log)")
    ax1.set_title(
        f"Co-hosted workload: {report['callers']} callers, {report['workers']} workers, "
        f"host {report['host']['hostname']} (medians of {report['rounds']} rounds)"
    )
    ax1.legend(ncol=4, fontsize=8, loc="upper left")
    if report.get("loop_budget_s"):
        ax2.axhline(report["loop_budget_s"] * 1e3, color="k", ls="--", lw=0.8)
        ax2.text(len(names) - 0.5, report["loop_budget_s"] * 1e3 * 1.1, "loop budget", ha="right", fontsize=8)
    ax2.set_yscale("log")
    ax2.set_ylabel("p99 loop lag (ms, log)")
    ax2.set_xticks(range(len(names)))
    ax2.set_xticklabels(names, rotation=15, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def benchmark_arguments(
    doc: str | None, *, out: Path, rounds: int, seed: int, profile: str | None = "required", kernel: bool = False
) -> argparse.ArgumentParser:
    """The options the co-hosted benchmarks share: ``--profile`` (``profile``: "required", or its help text when
    optional), ``--rounds``, ``--callers``, ``--smoke``, ``--out-dir``, ``--seed``, and ``--kernel`` if asked."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    if profile == "required":
        parser.add_argument("--profile", type=Path, required=True)
    elif profile is not None:
        parser.add_argument("--profile", type=Path, help=profile)
    if kernel:
        parser.add_argument("--kernel", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round: proves it runs, measures nothing")
    parser.add_argument("--out-dir", type=Path, default=out)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument(
        "--chunks",
        type=int,
        default=CHUNKS,
        help=f"slices per round, every policy taking one before the next (default {CHUNKS})",
    )
    return parser


def load_benchmark_profile(path: Path) -> Any:
    """A profile for a benchmark, whatever host wrote it (recorded profiles travel), strictly validated; the
    benchmark's own offload_if= policies must not warn on every run."""
    profile = offload_tuner.load_profile(path, strict=True, check_host=False)
    assert profile is not None
    warnings.filterwarnings("ignore", category=offload_tuner.ProfileOverriddenWarning)
    return profile


def report_header(module: str, argv: list[str] | None, smoke: bool) -> dict[str, Any]:
    """When, how and where a benchmark report was made (shared by the benchmarks that write one)."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "smoke": smoke,
        "host": host_fingerprint(),
    }


def write_report(report: dict[str, Any], out_dir: Path, stem: str, markdown: str) -> None:
    """``<stem>.json`` (everything measured) and ``<stem>.md`` (the table) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown)


MIXRANGE_FACTOR = 5
"""How far past the calibrated top the ``--mixrange`` case serves a kernel (issue 29: "5x the calibrated range")."""
MIXRANGE_CONFIRM_MAX_ROUNDS = 12
"""Confirmation rounds at most in the ``--mixrange`` case (its calls are long: the largest block a loop ~0.5 s)."""


def mixrange_workloads(profile_data: Mapping[str, Any], factor: int = MIXRANGE_FACTOR) -> list[Workload]:
    """Per kernel calibrated with no stated mix (``workload_source`` "assumed"), the sizes the case serves: from
    the bottom of the calibrated range to ``factor`` times its top. Kernels whose mix was stated are left out: their
    range is the co-hosted benchmark's plain case."""
    out = []
    for key, entry in profile_data.get("kernels", {}).items():
        measured = entry.get("calibrated_range") or entry.get("workload_range")
        if entry.get("status") != "ok" or entry.get("workload_source") != "assumed" or not measured:
            continue
        lo, hi = max(1, int(measured[0])), int(measured[1])
        out.append(Workload(key, lo, factor * hi))
    return out


def within_budget(entry: Mapping[str, Any], budget_s: float) -> dict[str, Any]:
    """The statics whose median p99 loop lag stays within ``budget_s``, best first by normalised makespan (the case's
    oracle is the first); tuned's p99 and makespan against them."""
    s = entry["summary"]
    dynamic = set(entry.get("dynamic", ()))
    statics = [name for name in s if name != "tuned" and name not in dynamic]
    within = sorted((n for n in statics if s[n]["lag_p99_s"] <= budget_s), key=lambda n: s[n]["makespan_s"])
    best = within[0] if within else None
    return {
        "budget_s": budget_s,
        "statics_within": within,
        "oracle": best,
        "tuned_lag_p99_s": s["tuned"]["lag_p99_s"],
        "tuned_vs_oracle": None if best is None else s["tuned"]["makespan_s"] / s[best]["makespan_s"],
    }


def mixrange_verdicts(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Issue 29's acceptance for the case: wherever some static keeps the p99 loop lag within the budget, tuned does,
    and its makespan is within 1.10x of the best such static (the confirmed ratio where a confirmation ran)."""
    w = entry["within_budget"]
    c = w.get("confirmation")
    ratio = w["tuned_vs_oracle"] if c is None else c["ratio"]
    lag = w["tuned_lag_p99_s"] if c is None else c["tuned_lag_p99_s"]
    if w["oracle"] is None:
        return {"some_static_within_budget": False, "tuned_lag_within_budget": None, "makespan_within_1.10x": None}
    return {
        "some_static_within_budget": True,
        "tuned_lag_within_budget": lag <= w["budget_s"],
        "tuned_vs_best_within_budget": ratio,
        "makespan_within_1.10x": ratio <= 1.10,
    }


def bench_mixrange(
    spec: KernelSpec,
    workload: Workload,
    budget_s: float,
    *,
    callers: int,
    rounds: int,
    seed: int,
    smoke: bool = False,
    chunks: int = CHUNKS,
    confirm_rounds: int = CONFIRM_ROUNDS,
    confirm_max_rounds: int = MIXRANGE_CONFIRM_MAX_ROUNDS,
) -> dict[str, Any]:
    """The ``--mixrange`` case for one kernel: the sweep (:func:`bench_workload`, no confirmation of its own), the
    statics within the loop budget, then fresh rounds of tuned against the best two of them where tuned decides
    differently, until settled."""
    calls = size_calls(spec, workload, seed, smoke)
    entry = bench_workload(
        spec, workload, callers=callers, rounds=rounds, seed=seed, smoke=smoke, calls=calls, chunks=chunks
    )
    w = within_budget(entry, budget_s)
    same_as = entry.get("same_as", {})
    against = [n for n in w["statics_within"] if same_as.get(n, n) != "tuned" and n not in same_as][:CONFIRM_AGAINST]
    if w["oracle"] is not None and confirm_rounds > 0 and same_as.get(w["oracle"], w["oracle"]) != "tuned" and against:
        slices = chunk_count(len(calls), callers, chunks)
        fresh = (
            {name: asdict(result) for name, result in results.items()}
            for results in fresh_rounds(
                calls,
                ["tuned", *against],
                max(confirm_rounds, confirm_max_rounds),
                slices,
                random.Random(seed + 2),
                random.Random(seed + 3),
                shuffled_calls,
                lambda piece, name: run_policy(spec, piece, name, callers),
            )
        )
        confirmation = until_settled(fresh, confirm_rounds, analyse_confirmation)
        confirmation["tuned_lag_p99_s"] = statistics.median(r["lag_p99_s"] for r in confirmation["runs"]["tuned"])
        confirmation["lag_p99_s"] = {
            name: statistics.median(r["lag_p99_s"] for r in runs) for name, runs in confirmation["runs"].items()
        }
        w["confirmation"] = confirmation
    entry["within_budget"] = w
    entry["mixrange_verdicts"] = mixrange_verdicts(entry)
    sizes = sorted(n for _, n in calls)
    guard = offload_tuner.decide(spec.fn, *spec.sample(sizes[-1]))  # type: ignore[misc]
    entry["largest_call"] = {"size": sizes[-1], "offload": guard.offload, "reason": guard.reason}
    return entry


def mixrange_markdown(report: dict[str, Any]) -> str:
    host, budget = report["host"], report["loop_budget_s"]
    lines = [
        "# Co-hosted benchmark: a mix reaching 5x the calibrated range, no plan (issue 29)\n",
        f"Host `{host['hostname']}` ({host['cpu_model']}, {host['logical_cores']} cores), Python "
        f"{host['python_version']}; {report['callers']} callers, pool of {report['workers']} workers; every policy "
        f"once per round, {report['rounds']} shuffled rounds, medians; profile `{report['profile']}` calibrated with "
        f"no stated mix (loop budget {budget * 1e3:.0f} ms); {report['created']}.\n",
        f"Command: `{report['command']}`\n",
        f"Each kernel is served sizes up to {report['factor']}x the top of the range it was calibrated on, which "
        "calibration assumed as its mix. The oracle is the static threshold (a power of two, `always`, `never` or "
        "`static-256`) with the lowest normalised median makespan among those whose median p99 loop lag stays "
        "within the budget. *Confirmed*: tuned against the best two such statics in fresh rounds of their own (the "
        "one tuned compares worst with, ± standard error [per round]).\n",
        "| kernel | served | tuned T | guard | statics within budget | oracle | tuned / oracle (sweep) "
        "| confirmed | p99 lag tuned / oracle / never | tuned p99 within budget | makespan within 1.10x |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["workloads"]:
        s, w, v = e["summary"], e["within_budget"], e["mixrange_verdicts"]
        c = w.get("confirmation")
        oracle = w["oracle"]
        confirmed = (
            "-"
            if c is None
            else f"{c['oracle']}, {c['ratio']:.2f} ± {c['standard_error']:.2f} [{min(c['per_round']):.2f}, "
            f"{max(c['per_round']):.2f}], {c['rounds']} rounds"
        )
        lags = " / ".join(
            "-" if name is None else f"{s[name]['lag_p99_s'] * 1e3:.1f}" for name in ("tuned", oracle, "never")
        )
        sweep = "-" if w["tuned_vs_oracle"] is None else f"{w['tuned_vs_oracle']:.2f}"
        lag_ok, span_ok = v["tuned_lag_within_budget"], v["makespan_within_1.10x"]
        lines.append(
            f"| {_name(e)} | {e['sizes'][0]}-{e['sizes'][1]} | {_fmt_t(e['tuned_threshold'])} | "
            f"{e.get('guard') or '-'} | {len(w['statics_within'])} of {len(s) - 1} | {oracle or '-'} | {sweep} | "
            f"{confirmed} | {lags} ms | {'-' if lag_ok is None else ('yes' if lag_ok else '**no**')} | "
            f"{'-' if span_ok is None else ('yes' if span_ok else '**no**')} |"
        )
    lines += ["", "Largest call served, as the tuned policy decided it:", ""]
    lines += [
        f"- {_name(e)}: size {e['largest_call']['size']}: {e['largest_call']['reason']}" for e in report["workloads"]
    ]
    lines += [
        "",
        "## Every policy",
        "",
        "| kernel | policy | makespan (raw median) | vs best within budget | loop lag p99 | offloaded |",
        "|---|---|---|---|---|---|",
    ]
    for e in report["workloads"]:
        s, oracle = e["summary"], e["within_budget"]["oracle"]
        for name, r in sorted(s.items(), key=lambda item: item[1]["makespan_s"]):
            label = f"**{name}**" if name in ("tuned", oracle) else name
            if name in e.get("same_as", {}):
                label += f" (= {e['same_as'][name]})"
            versus = "-" if oracle is None else f"{r['makespan_s'] / s[oracle]['makespan_s']:.2f}x"
            over = "" if r["lag_p99_s"] <= budget else " (over budget)"
            lines.append(
                f"| {_name(e)} | {label} | {r['raw_makespan_s'] * 1e3:.0f} ms | {versus} | "
                f"{r['lag_p99_s'] * 1e3:.1f} ms{over} | {r['offloaded']:.0f}/{r['calls']} |"
            )
    return "\n".join(lines) + "\n"


def mixrange_main(
    args: argparse.Namespace, profile: Any, profile_path: Path, workers: int, argv: list[str] | None
) -> int:
    """``--mixrange``: the case for every kernel of the profile calibrated with no stated mix (or ``--kernel``)."""
    from offload_tuner.runtime._registry import spec_by_key

    budget = profile.data.get("policy", {}).get("loop_budget_s")
    if not budget:
        raise SystemExit("benchmarks.workload: --mixrange needs a profile calibrated with a loop budget")
    workloads = [w for w in mixrange_workloads(profile.data) if not args.kernel or any(k in w.key for k in args.kernel)]
    if not workloads:
        raise SystemExit(
            f"benchmarks.workload: --mixrange: no kernel of {profile_path} was calibrated with an assumed mix; "
            "calibrate with a plan that states no workload_range (benchmarks/results/mixrange/plan.json)"
        )
    rounds = 1 if args.smoke else args.rounds
    started = time.perf_counter()
    entries = []
    with installed_pool(workers):
        for w in workloads:
            spec = spec_by_key(w.key)
            if spec is None:
                raise SystemExit(f"benchmarks.workload: kernel not registered: {w.key}")
            print(f"benchmarking {w.key} at {w.lo}-{w.hi} ...", file=sys.stderr)
            entry = bench_mixrange(
                spec,
                w,
                budget,
                callers=args.callers,
                rounds=rounds,
                seed=args.seed,
                smoke=args.smoke,
                chunks=args.chunks,
                confirm_rounds=min(1, args.confirm_rounds) if args.smoke else args.confirm_rounds,
                confirm_max_rounds=1 if args.smoke else MIXRANGE_CONFIRM_MAX_ROUNDS,
            )
            entry["guard"] = (profile.data["kernels"][w.key].get("guard") or {}).get("size")
            entries.append(entry)
    report = {
        **report_header("benchmarks.workload", argv, args.smoke),
        "profile": str(profile_path),
        "profile_created": profile.data.get("created"),
        "loop_budget_s": budget,
        "factor": MIXRANGE_FACTOR,
        "callers": args.callers,
        "workers": workers,
        "rounds": rounds,
        "duration_s": round(time.perf_counter() - started, 1),
        "workloads": entries,
    }
    out_dir = args.out_dir if args.out_dir != RESULTS else RESULTS / "mixrange"
    stem = "mixrange-smoke" if args.smoke else "mixrange"
    markdown = mixrange_markdown(report)
    write_report(report, out_dir, stem, markdown)
    print(markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_arguments(
        __doc__,
        out=RESULTS,
        rounds=5,
        seed=20261127,
        kernel=True,
        profile="profile for the tuned policy (default: this host's)",
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--confirm-rounds",
        type=int,
        default=CONFIRM_ROUNDS,
        help="fresh rounds of tuned against the sweep's best statics where they decide differently "
        f"(default {CONFIRM_ROUNDS}; 0: none)",
    )
    parser.add_argument(
        "--compare",
        metavar="T,T,...",
        help="measure only these static thresholds of one --kernel side by side ('always', 'never' "
        "or sizes) in fresh rounds, until settled; writes basin.json (the reruns' flat-basin check)",
    )
    parser.add_argument(
        "--adaptive",
        action="store_true",
        help="add the adaptive policy (online adaptation, warm: LEARN_PASSES runs first)",
    )
    parser.add_argument(
        "--mixrange",
        action="store_true",
        help=f"issue 29's case: kernels calibrated with no stated mix, served up to {MIXRANGE_FACTOR}x their "
        "calibrated top; the oracle is the best static within the loop budget (writes results/mixrange/)",
    )
    args = parser.parse_args(argv)

    import offload_tuner_kernels  # noqa: F401  (registers the bundled kernels)
    from offload_tuner.inspection._extras import install_hint, missing, requirement_problem
    from offload_tuner.runtime._backends import default_workers
    from offload_tuner.runtime._profile import ProfileError, configured_profile_path
    from offload_tuner.runtime._registry import spec_by_key

    # Everything a run needs is checked before anything is measured.
    profile_path = args.profile or configured_profile_path()
    try:
        # --compare runs static thresholds only: a profile recorded on another host serves (recorded reruns).
        profile = offload_tuner.load_profile(profile_path, strict=True, check_host=not args.compare)
    except ProfileError as exc:
        raise SystemExit(
            f"benchmarks.workload: {exc}; calibrate this host (offload-tuner calibrate --out PATH) "
            "and pass --profile PATH"
        ) from None
    workers = args.workers or default_workers()
    if args.mixrange:
        warnings.filterwarnings("ignore", category=offload_tuner.ProfileOverriddenWarning)
        return mixrange_main(args, profile, profile_path, workers, argv)
    workloads = [w for w in load_workloads() if not args.kernel or any(k in w.key for k in args.kernel)]
    unregistered = [w.key for w in workloads if spec_by_key(w.key) is None]
    if unregistered:  # detect_spikes registers only when numpy is importable
        numpy = f"; numpy is missing: {install_hint('calibrate')}" if "numpy" in missing("calibrate") else ""
        raise SystemExit(f"benchmarks.workload: kernels not registered: {', '.join(unregistered)}{numpy}")
    figure_problem = requirement_problem("plot", "the figure")
    if figure_problem:
        print(
            f"benchmarks.workload: {figure_problem}; it will be skipped (tables and JSON are written)", file=sys.stderr
        )
    # The fixed policies pass offload_if over a trusted profile on purpose: no need to be told.
    warnings.filterwarnings("ignore", category=offload_tuner.ProfileOverriddenWarning)
    rounds = 1 if args.smoke else args.rounds
    if args.compare:
        return compare_main(args, workloads, workers, argv)
    started = time.perf_counter()
    budget = profile.data.get("policy", {}).get("loop_budget_s")
    entries = []
    with installed_pool(workers):
        for w in workloads:
            spec = spec_by_key(w.key)
            assert spec is not None  # checked above
            print(f"benchmarking {w.key} ...", file=sys.stderr)
            calls = size_calls(spec, w, args.seed, args.smoke)
            adaptive = None
            if args.adaptive:
                from benchmarks.adaptive import EXTRA_LEARN_PASSES, Adaptive

                adaptive = Adaptive(spec, profile_path, warm=True)
                warm_workers(spec, calls)
                adaptive.learn(
                    calls,
                    args.callers,
                    1 if args.smoke else LEARN_PASSES,
                    extra=0 if args.smoke else EXTRA_LEARN_PASSES,
                )
            entry = bench_workload(
                spec,
                w,
                callers=args.callers,
                rounds=rounds,
                seed=args.seed,
                smoke=args.smoke,
                calls=calls,
                dynamic={"adaptive": adaptive} if adaptive else None,
                chunks=args.chunks,
                confirm_rounds=min(1, args.confirm_rounds) if args.smoke else args.confirm_rounds,
                confirm_max_rounds=min(1, args.confirm_rounds) if args.smoke else None,
            )
            if adaptive is not None:
                entry["adaptive"] = adaptive.record()
            entry["verdicts"] = verdicts(entry, budget)
            entries.append(entry)
    report = {
        **report_header("benchmarks.workload", argv, args.smoke),
        "profile": str(profile_path),
        "profile_created": profile.data.get("created"),
        "loop_budget_s": budget,
        "callers": args.callers,
        "workers": workers,
        "rounds": rounds,
        "confirm_rounds": min(1, args.confirm_rounds) if args.smoke else args.confirm_rounds,
        "duration_s": round(time.perf_counter() - started, 1),
        "workloads": entries,
    }
    stem = "workload-smoke" if args.smoke else "workload"
    write_report(report, args.out_dir, stem, to_markdown(report))
    if figure_problem is None:
        plot(report, args.out_dir / f"{stem}.png")
    print(to_markdown(report))
    if figure_problem:
        print(f"figure skipped: {figure_problem}", file=sys.stderr)
    return 0


def parse_threshold(text: str) -> int | None:
    """A static policy's threshold as the command line and the reports spell it: ``always`` (0), ``never``
    (None), ``static-256``, ``T=size`` or a size."""
    text = text.strip().removeprefix("T=").removeprefix("static-")
    if text in ("always", "never"):
        return 0 if text == "always" else None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not a static threshold: {text!r} (always, never, static-256, T=size or a size)") from None


def compare_main(args: argparse.Namespace, workloads: list[Workload], workers: int, argv: list[str] | None) -> int:
    """``--compare``: the static thresholds of one kernel side by side, written to ``basin.json``."""
    from offload_tuner.runtime._registry import spec_by_key

    if len(workloads) != 1:
        raise SystemExit(f"benchmarks.workload: --compare needs exactly one --kernel, got {len(workloads)}")
    try:
        thresholds = [parse_threshold(t) for t in args.compare.split(",")]
    except ValueError as exc:
        raise SystemExit(f"benchmarks.workload: --compare: {exc}") from None
    spec = spec_by_key(workloads[0].key)
    assert spec is not None  # checked by main
    least = 1 if args.smoke else args.confirm_rounds or CONFIRM_ROUNDS
    started = time.perf_counter()
    with installed_pool(workers):
        basin = compare_statics(
            spec,
            workloads[0],
            thresholds,
            callers=args.callers,
            seed=args.seed,
            least=least,
            most=1 if args.smoke else CONFIRM_MAX_FACTOR * least,
            smoke=args.smoke,
            chunks=args.chunks,
        )
    report = {
        **report_header("benchmarks.workload", argv, args.smoke),
        "callers": args.callers,
        "workers": workers,
        "duration_s": round(time.perf_counter() - started, 1),
        "basin": basin,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "basin.json").write_text(json.dumps(report, indent=1) + "\n")
    print(
        ", ".join(f"{name} {ratio:.2f}x" for name, ratio in basin["vs_best"].items())
        + f" the best ({basin['best']}), {basin['rounds']} rounds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
