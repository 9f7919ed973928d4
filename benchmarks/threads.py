"""The thread lane against processes only: a kernel that releases the GIL, co-hosted, interleaved rounds.

    offload-tuner calibrate --kernel detect_spikes --out /tmp/spikes.json
    python -m benchmarks.threads --profile /tmp/spikes.json [--kernel detect_spikes] [--rounds 7]

For each kernel (by default the bundled ones whose profile entry has a thread lane): the co-hosted workload
(4 callers on one event loop, sizes log-uniform over the plan's workload range) under

* ``process T=t``: a process pool only, every call from size ``t`` up offloaded to it (always, powers of
  two, never): the static policies the project's oracle is the best of;
* ``thread T=t``: a thread pool only, the same thresholds;
* ``lanes``: both installed (``set_executors``), the profile decides per call, each kernel on its static lane
  (placement off: the thread lane for this kernel);
* ``placed``: the same, with placement by expected completion on (the default): an offloaded call goes to the
  thread or the process pool, whichever is expected to complete it soonest given what each has in flight.

Each round runs every policy once, in a shuffled order, with the calls in a fresh order. Makespans are
normalised round by round (each round's geometric mean over every policy); p99 loop lag is the median over
rounds. The best static of either lane is the best of ~15 noisy medians and reads low by selection, so a
**confirmation** follows (``--confirm-rounds``): ``placed``, ``lanes`` and that best static in fresh rounds of
their own. Writes ``results/threads/threads.{json,md}``.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import offload_tuner
from benchmarks.confirm import per_round
from benchmarks.workload import (
    RESULTS,
    benchmark_arguments,
    installed_pools,
    lane_summary,
    load_benchmark_profile,
    load_workloads,
    report_header,
    size_calls,
    static_name,
    sweep_thresholds,
    warm_workers,
    write_report,
)
from offload_tuner.calibration._workload import run_calls, shuffled_calls, threshold_gate
from offload_tuner.inspection._report import format_threshold as _fmt
from offload_tuner.runtime import _placer

OUT = RESULTS / "threads"


def policies(workload: Any) -> list[tuple[str, str, int | None]]:
    """(name, lane, threshold): the static sweeps on each lane alone, and both lanes with the profile deciding."""
    out = [(f"process {static_name(t)}", "process", t) for t in sweep_thresholds(workload)]
    out += [(f"thread {static_name(t)}", "thread", t) for t in sweep_thresholds(workload) if t is not None]
    return out + [("lanes", "both", None), ("placed", "placed", None)]


def run_one(spec: Any, calls: Any, lane: str, t: int | None, pools: dict[str, Executor], callers: int) -> Any:
    if lane in ("both", "placed"):
        offload_tuner.set_executors(pools)
        _placer.set_placement(lane == "placed")
        gate: Callable[[int], bool | None] = lambda n: None  # noqa: E731
    else:
        offload_tuner.set_executors({lane: pools[lane]})
        gate = threshold_gate(t)

    async def call(args: tuple, n: int) -> Any:
        return await offload_tuner.run_kernel(spec.fn, *args, offload_if=gate(n))

    try:
        return run_calls(calls, callers, call, pools["process"], warmup=2 * callers)
    finally:
        offload_tuner.set_executors({})
        _placer.set_placement(True)


def bench(
    spec: Any,
    workload: Any,
    pools: dict[str, Executor],
    *,
    callers: int,
    rounds: int,
    seed: int,
    smoke: bool,
    confirm_rounds: int = 0,
) -> dict[str, Any]:
    calls = size_calls(spec, workload, seed, smoke)
    offload_tuner.set_executors({"process": pools["process"]})
    warm_workers(spec, calls)  # the workers import the kernel's module outside every timed run
    offload_tuner.set_executors({})
    named = policies(workload)
    order_rng, calls_rng = random.Random(seed), random.Random(seed + 1)

    def measure(chosen: list[tuple[str, str, int | None]], count: int) -> dict[str, list[dict[str, float]]]:
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in chosen}
        for _ in range(count):
            order = chosen[:]
            order_rng.shuffle(order)
            round_calls = shuffled_calls(calls, calls_rng)
            for name, lane, t in order:
                stats = run_one(spec, round_calls, lane, t, pools, callers)
                runs[name].append(
                    {
                        "makespan_s": stats.steady_s or stats.makespan_s,
                        "lag_p99_s": stats.lag_p99_s,
                        "cpu_s": stats.caller_cpu_s + (stats.worker_cpu_s or 0.0),
                    }
                )
        return runs

    runs = measure(named, rounds)
    names = [name for name, _, _ in named]
    summary, normalised = lane_summary(runs)
    best_process = min((n for n in names if n.startswith("process")), key=lambda n: summary[n]["makespan_s"])
    best_thread = min((n for n in names if n.startswith("thread")), key=lambda n: summary[n]["makespan_s"])
    best_static = min(best_process, best_thread, key=lambda n: summary[n]["makespan_s"])
    confirmation = None
    if confirm_rounds > 0:
        again = measure([p for p in named if p[0] in ("placed", "lanes", best_static)], confirm_rounds)
        c_summary, c_normalised = lane_summary(again)
        placed_ratios = per_round(c_normalised, "placed", best_static)
        lanes_ratios = per_round(c_normalised, "lanes", best_static)
        confirmation = {
            "runs": again,
            "summary": c_summary,
            "best_static": best_static,
            "placed_vs_best_static": statistics.median(placed_ratios),
            "placed_vs_best_static_per_round": placed_ratios,
            "lanes_vs_best_static": statistics.median(lanes_ratios),
            "lanes_vs_best_static_per_round": lanes_ratios,
        }
    offload_tuner.set_executors(pools)
    decision = offload_tuner.decide(spec.fn, *spec.sample(workload.hi))
    offload_tuner.set_executors({})
    lanes_per_round = per_round(normalised, "lanes", best_process)
    placed_per_round = per_round(normalised, "placed", best_process)
    return {
        "kernel": spec.key,
        "sizes": [workload.lo, workload.hi],
        "calls": len(calls),
        "runs": runs,
        "summary": summary,
        "best_process": best_process,
        "best_thread": best_thread,
        "lanes_vs_best_process": summary["lanes"]["makespan_s"] / summary[best_process]["makespan_s"],
        "lanes_vs_best_process_per_round": lanes_per_round,
        "placed_vs_best_process": summary["placed"]["makespan_s"] / summary[best_process]["makespan_s"],
        "placed_vs_best_process_per_round": placed_per_round,
        "placed_vs_lanes": summary["placed"]["makespan_s"] / summary["lanes"]["makespan_s"],
        "decision_at_top": {"backend": decision.backend, "threshold": decision.threshold, "reason": decision.reason},
        **({} if confirmation is None else {"confirmation": confirmation}),
    }


def to_markdown(report: dict[str, Any]) -> str:
    host = report["host"]
    lines = [
        "# The thread lane against processes only",
        "",
        f"Host `{host['hostname']}` ({host['cpu_model']}, {host['logical_cores']} cores), Python "
        f"{host['python_version']}; {report['callers']} callers, {report['workers']} process workers, "
        f"{report['threads']} threads, {report['rounds']} interleaved rounds; profile `{report['profile']}`; "
        f"{report['created']}.",
        "",
        f"Command: `{report['command']}` ({report['duration_s']:.0f} s).",
        "",
        "| kernel | sizes | policy | makespan (normalised) | vs best process-only | p99 loop lag | CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in report["workloads"]:
        s = e["summary"]
        base = s[e["best_process"]]["makespan_s"]
        shown = [e["best_process"], e["best_thread"], "lanes", *(["placed"] if "placed" in s else []), "process never"]
        for name in dict.fromkeys(shown):
            label = name + (
                " (best process-only)"
                if name == e["best_process"]
                else " (best thread-only)"
                if name == e["best_thread"]
                else ""
            )
            lines.append(
                f"| {e['kernel'].split(':')[-1]} | {e['sizes'][0]}-{e['sizes'][1]} | {label} | "
                f"{s[name]['makespan_s'] * 1e3:.1f} ms | {s[name]['makespan_s'] / base:.2f} | "
                f"{s[name]['lag_p99_s'] * 1e3:.1f} ms | {s[name]['cpu_s'] * 1e3:.0f} ms |"
            )
        ratios = e["lanes_vs_best_process_per_round"]
        d = e["decision_at_top"]
        lines.append(
            f"| | | lanes / best process-only per round: {min(ratios):.2f}-{max(ratios):.2f}; the "
            f"profile at size {e['sizes'][1]}: {d['backend']} from {_fmt(d['threshold'])} | | | | |"
        )
        if "placed_vs_best_process_per_round" in e:
            placed = e["placed_vs_best_process_per_round"]
            lines.append(
                f"| | | placed / best process-only per round: {min(placed):.2f}-{max(placed):.2f}; placed / "
                f"lanes (static): {e['placed_vs_lanes']:.2f} | | | | |"
            )
        c = e.get("confirmation")
        if c is not None:
            pr, lr = c["placed_vs_best_static_per_round"], c["lanes_vs_best_static_per_round"]
            lines.append(
                f"| | | confirmation ({len(pr)} fresh rounds, nothing selected): placed / `{c['best_static']}` "
                f"**{c['placed_vs_best_static']:.2f}** (per round {min(pr):.2f}-{max(pr):.2f}); lanes / "
                f"`{c['best_static']}` {c['lanes_vs_best_static']:.2f} ({min(lr):.2f}-{max(lr):.2f}) | | | | |"
            )
    lines += [
        "",
        "Makespans are the steady pass of each run, normalised round by round (each round's geometric mean over "
        "every policy); p99 loop lag and CPU (caller + process workers; a thread pool's CPU is the caller's) are "
        "medians over rounds.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_arguments(__doc__, out=OUT, rounds=7, seed=20261130, kernel=True)
    parser.add_argument(
        "--confirm-rounds",
        type=int,
        default=5,
        help="fresh rounds of placed and lanes against the sweep's best static (0: none)",
    )
    args = parser.parse_args(argv)

    import offload_tuner_kernels  # noqa: F401  (registers the bundled kernels)
    from offload_tuner.runtime._backends import default_workers
    from offload_tuner.runtime._registry import spec_by_key

    profile = load_benchmark_profile(args.profile)
    with_lane = [key for key, entry in profile.kernels.items() if entry.thread and entry.thread.threshold is not None]
    workloads = [
        w for w in load_workloads() if (any(k in w.key for k in args.kernel) if args.kernel else w.key in with_lane)
    ]
    if not workloads:
        raise SystemExit("benchmarks.threads: no kernel to run (none named, or none with a thread lane in the profile)")
    rounds = 1 if args.smoke else args.rounds
    workers = default_workers()
    started = time.perf_counter()
    entries = []
    with installed_pools(workers) as pools:
        for w in workloads:
            spec = spec_by_key(w.key)
            if spec is None:
                raise SystemExit(f"benchmarks.threads: kernel {w.key} is not registered")
            print(f"threads {w.key}: sizes {w.lo}-{w.hi} ...", file=sys.stderr)
            entries.append(
                bench(
                    spec,
                    w,
                    pools,
                    callers=args.callers,
                    rounds=rounds,
                    seed=args.seed,
                    smoke=args.smoke,
                    confirm_rounds=min(1, args.confirm_rounds) if args.smoke else args.confirm_rounds,
                )
            )
    report = {
        **report_header("benchmarks.threads", argv, args.smoke),
        "profile": str(args.profile),
        "callers": args.callers,
        "workers": workers,
        "threads": workers,
        "rounds": rounds,
        "duration_s": round(time.perf_counter() - started, 1),
        "workloads": entries,
    }
    write_report(report, args.out_dir, "threads-smoke" if args.smoke else "threads", to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
