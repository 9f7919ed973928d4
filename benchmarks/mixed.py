"""A mixed workload: a pure-Python O(n^2) kernel and a GIL-releasing numpy kernel on one event loop, both pools.

    python -m benchmarks.mixed --profile calibration/reference/vm.json [--rounds 5]

4 callers share one stream of calls of both kernels (``cluster_observations`` over 8-512 and ``detect_spikes``
over 2048-262144, about the same inline work each; sizes are the quantiles of each log-uniform mix, the order
shuffled per round) with a process pool and a thread pool installed. Policies:

* ``lanes (profile)``: ``set_executors`` and the profile decides every call (its process threshold for the
  clustering kernel, its thread lane for the numpy one);
* the static grid, per backend: the clustering kernel offloaded to processes from T_a (the profile's threshold,
  half and twice it, never); the numpy kernel from T_b to threads (the profile's thread threshold, a quarter
  and four times it), or to processes from its process threshold, or never. The best of that grid is what
  issue 12 calls "the best static per-backend thresholds found by a sweep".

Placement is per kernel and static here (issue 12's dynamic placement is not built); this measures how far
the profile's lanes are from the best static combination. Writes ``results/mixed/mixed.{json,md}``.
"""

from __future__ import annotations

import itertools
import random
import statistics
import sys
import time
from concurrent.futures import Executor
from typing import Any

import offload_tuner
from benchmarks.workload import (
    RESULTS,
    RunResult,
    benchmark_arguments,
    chunk_count,
    installed_pools,
    lane_summary,
    load_benchmark_profile,
    report_header,
    run_round,
    write_report,
)
from offload_tuner.calibration._workload import build_calls, process_call, run_calls, thread_call
from offload_tuner.inspection._report import format_threshold as _fmt

OUT = RESULTS / "mixed"
KERNELS = ("offload_tuner_kernels.clustering:cluster_observations", "offload_tuner_kernels.numeric:detect_spikes")
RANGES = {KERNELS[0]: (8, 512), KERNELS[1]: (2048, 262144)}
TARGET_RUN_S = 1.5


def _grid(t: int | None) -> list[int | None]:
    return [None] if t is None else sorted({max(1, t // 2), t, t * 2}) + [None]


def policies(profile: Any) -> list[tuple[str, dict[str, tuple[str, int | None]] | None]]:
    """(name, {kernel: (lane, threshold)}) for the static grid; None for the profile deciding."""
    a, b = (profile.kernels[k] for k in KERNELS)
    thread_b = b.thread.threshold if b.thread is not None else None
    b_options: list[tuple[str, int | None]] = [("never", None)]
    if thread_b is not None:
        b_options += [("thread", max(1, thread_b // 4)), ("thread", thread_b), ("thread", thread_b * 4)]
    if b.threshold is not None:
        b_options.append(("process", b.threshold))
    out: list[tuple[str, dict[str, tuple[str, int | None]] | None]] = [("lanes (profile)", None)]
    for ta, (lane_b, tb) in itertools.product(_grid(a.threshold), b_options):
        name = f"cluster process {_fmt(ta)} / spikes {lane_b if tb is not None else ''} {_fmt(tb)}".replace("  ", " ")
        out.append((name, {KERNELS[0]: ("process", ta), KERNELS[1]: (lane_b, tb)}))
    return out


def build_stream(specs: dict[str, Any], seed: int, smoke: bool) -> list[tuple[tuple, int]]:
    """Calls of both kernels, about the same inline work each, as ((key, args), size)."""
    stream = []
    for key, spec in specs.items():
        lo, hi = RANGES[key]
        if smoke:
            hi = min(hi, lo * 4)
        probe = build_calls(spec.sample, spec.size, (lo, hi), 12, seed)
        start = time.perf_counter()
        for args, _ in probe:
            spec.fn(*args)
        per_call = (time.perf_counter() - start) / len(probe)
        count = 8 if smoke else int(min(400, max(24, TARGET_RUN_S / 2 / max(per_call, 1e-6))))
        stream += [((key, args), n) for args, n in build_calls(spec.sample, spec.size, (lo, hi), count, seed)]
    random.Random(seed).shuffle(stream)
    return stream


def run_policy(specs: dict[str, Any], stream: list, rule: dict[str, tuple[str, int | None]] | None,
               pools: dict[str, Executor], callers: int) -> Any:
    if rule is None:
        offload_tuner.set_executors(pools)

        async def call(args: tuple, n: int) -> Any:
            key, real = args
            return await offload_tuner.run_kernel(specs[key].fn, *real)
    else:
        makers = {}
        for key, (lane, t) in rule.items():
            gate = (lambda n: False) if t is None else (lambda n, t=t: n >= t)
            make = thread_call if lane == "thread" else process_call
            makers[key] = make(pools["thread" if lane == "thread" else "process"], specs[key].fn, gate)

        async def call(args: tuple, n: int) -> Any:
            key, real = args
            return await makers[key](real, n)
    try:
        return run_calls(stream, callers, call, pools["process"], warmup=2 * callers)
    finally:
        offload_tuner.set_executors({})


def _same_decisions(specs: dict[str, Any], stream: list, named: list, pools: dict[str, Executor]) -> str | None:
    """The grid policy that places every call of the stream where the profile does (``decide`` with both pools
    installed), if any: the two then differ only by the benchmark's noise."""
    offload_tuner.set_executors(pools)
    try:
        profile_says = [offload_tuner.decide(specs[key].fn, *real).backend for (key, real), _ in stream]
    finally:
        offload_tuner.set_executors({})
    for name, rule in named:
        if rule is None:
            continue
        says = []
        for (key, _), n in stream:
            lane, t = rule[key]
            says.append(lane if t is not None and n >= t else "inline")
        if says == profile_says:
            return name
    return None


def to_markdown(report: dict[str, Any]) -> str:
    host, e = report["host"], report["entry"]
    s = e["summary"]
    best = e["best_static"]
    lines = [
        "# Mixed workload: a pure-Python kernel and a GIL-releasing kernel, both pools",
        "",
        f"Host `{host['hostname']}` ({host['cpu_model']}, {host['logical_cores']} cores), Python "
        f"{host['python_version']}; {report['callers']} callers, {report['workers']} process workers, "
        f"{report['workers']} threads, {report['rounds']} interleaved rounds; profile `{report['profile']}`; "
        f"{report['created']}; {e['calls']} calls per run.",
        "",
        f"Command: `{report['command']}` ({report['duration_s']:.0f} s).",
        "",
        "| policy | makespan (normalised) | vs best static | p99 loop lag | CPU |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(s, key=lambda n: s[n]["makespan_s"]):
        mark = " (best static)" if name == best else ""
        lines.append(f"| {name}{mark} | {s[name]['makespan_s'] * 1e3:.0f} ms | "
                     f"{s[name]['makespan_s'] / s[best]['makespan_s']:.2f} | {s[name]['lag_p99_s'] * 1e3:.1f} ms | "
                     f"{s[name]['cpu_s'] * 1e3:.0f} ms |")
    pr = e["lanes_vs_best_per_round"]
    twin = e.get("same_decisions_as_lanes")
    if twin is not None:
        lines += ["", f"`{twin}` decides every call as `lanes (profile)` does (through calibration's own call "
                      f"packaging instead of `run_kernel`): their ratio, "
                      f"{s['lanes (profile)']['makespan_s'] / s[twin]['makespan_s']:.2f}, is this benchmark's noise."]
    lines += [
        "",
        f"lanes (profile) / best static: **{e['lanes_vs_best']:.2f}x** (per round {min(pr):.2f}-{max(pr):.2f}); "
        f"spread of a round: {e['spread']:.0%}. Makespans are the steady pass of each run, normalised round by "
        "round (each round's geometric mean over every policy); p99 loop lag and CPU (caller + process workers) "
        f"are medians over rounds. The best static is the best of {len(s) - 1} noisy medians: it reads low by "
        "selection.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = benchmark_arguments(__doc__, out=OUT, rounds=5, seed=20261130).parse_args(argv)

    import offload_tuner_kernels  # noqa: F401  (registers the bundled kernels)
    from offload_tuner.runtime._backends import default_workers
    from offload_tuner.runtime._registry import spec_by_key

    profile = load_benchmark_profile(args.profile)
    missing = [k for k in KERNELS if k not in profile.kernels or spec_by_key(k) is None]
    if missing:
        raise SystemExit(f"benchmarks.mixed: {', '.join(missing)} not in the profile or not registered")
    specs = {k: spec_by_key(k) for k in KERNELS}
    rounds = 1 if args.smoke else args.rounds
    workers = default_workers()
    started = time.perf_counter()
    with installed_pools(workers) as pools:
        stream = build_stream(specs, args.seed, args.smoke)
        offload_tuner.set_executors({"process": pools["process"]})
        for key, spec in specs.items():  # the workers import each kernel's module outside every timed run
            args0 = next(real for (k, real), _ in stream if k == key)
            for _ in range(4):
                offload_tuner.run_kernel_sync(spec.fn, *args0, offload_if=True)
        offload_tuner.set_executors({})
        named = policies(profile)
        twin = _same_decisions(specs, stream, named, pools)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in named}
        rules = dict(named)
        order_rng, calls_rng = random.Random(args.seed), random.Random(args.seed + 1)
        slices = 1 if args.smoke else chunk_count(len(stream), args.callers, args.chunks)

        def run(piece: list, name: str) -> RunResult:
            stats = run_policy(specs, piece, rules[name], pools, args.callers)
            return RunResult(name, stats.makespan_s, stats.lag_p50_s, stats.lag_p99_s, stats.lag_max_s,
                             stats.caller_cpu_s, stats.worker_cpu_s, 0, len(piece), stats.steady_s)

        for _ in range(rounds):
            round_stream = stream[:]
            calls_rng.shuffle(round_stream)
            for name, result in run_round(round_stream, list(rules), slices, order_rng, run).items():
                runs[name].append({"makespan_s": result.steady_s or result.makespan_s, "lag_p99_s": result.lag_p99_s,
                                   "cpu_s": result.caller_cpu_s + (result.worker_cpu_s or 0.0)})
    names = [name for name, _ in named]
    summary, normalised = lane_summary(runs)
    best = min((n for n in names if n != "lanes (profile)"), key=lambda n: summary[n]["makespan_s"])
    spread = statistics.median((max(v) - min(v)) / statistics.median(v) for v in normalised.values()) if rounds > 1 else 0.0
    entry = {
        "calls": len(stream), "runs": runs, "summary": summary, "best_static": best, "spread": spread,
        "same_decisions_as_lanes": twin,
        "lanes_vs_best": summary["lanes (profile)"]["makespan_s"] / summary[best]["makespan_s"],
        "lanes_vs_best_per_round": [a / b for a, b in zip(normalised["lanes (profile)"], normalised[best])],
    }
    report = {
        **report_header("benchmarks.mixed", argv, args.smoke),
        "profile": str(args.profile), "callers": args.callers, "workers": workers, "rounds": rounds,
        "duration_s": round(time.perf_counter() - started, 1), "entry": entry,
    }
    write_report(report, args.out_dir, "mixed-smoke" if args.smoke else "mixed", to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
