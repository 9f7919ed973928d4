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

Each kernel's sizes span its workload range in the profile. The best of the grid is the best of ~20 noisy
medians, so it reads low by selection: a policy exactly as good reads a few percent above it. So a
**confirmation** stage follows (``--confirm-rounds``): the profile's lanes and the grid's best static (and the
grid policy making exactly the profile's decisions, if any) in fresh interleaved rounds, where nothing was
selected. A profile calibrated with ``offload-tuner calibrate --shared`` has thresholds tuned on the kernels'
shared stream; one calibrated without has each kernel's alone. Writes ``results/mixed/mixed.{json,md}``.
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
from benchmarks.confirm import per_round
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
from offload_tuner.calibration._workload import build_calls, process_call, run_calls, thread_call, threshold_gate
from offload_tuner.inspection._report import format_threshold as _fmt

OUT = RESULTS / "mixed"
KERNELS = ("offload_tuner_kernels.clustering:cluster_observations", "offload_tuner_kernels.numeric:detect_spikes")
TARGET_RUN_S = 1.5
LANES = "lanes (profile)"


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
    out: list[tuple[str, dict[str, tuple[str, int | None]] | None]] = [(LANES, None)]
    for ta, (lane_b, tb) in itertools.product(_grid(a.threshold), b_options):
        name = f"cluster process {_fmt(ta)} / spikes {lane_b if tb is not None else ''} {_fmt(tb)}".replace("  ", " ")
        out.append((name, {KERNELS[0]: ("process", ta), KERNELS[1]: (lane_b, tb)}))
    return out


def workload_ranges(profile: Any) -> dict[str, tuple[int, int]]:
    """Each kernel's workload range as its profile entry records it (what calibration measured it over)."""
    ranges = {key: profile.kernels[key].data.get("workload_range") for key in KERNELS}
    missing = [key for key, r in ranges.items() if not r]
    if missing:
        raise SystemExit(
            f"benchmarks.mixed: no workload range in the profile for {', '.join(missing)} (calibrate them again)"
        )
    return {key: (int(r[0]), int(r[1])) for key, r in ranges.items()}


def build_stream(
    specs: dict[str, Any], ranges: dict[str, tuple[int, int]], seed: int, smoke: bool
) -> list[tuple[tuple, int]]:
    """Calls of both kernels, about the same inline work each, as ((key, args), size)."""
    stream = []
    for key, spec in specs.items():
        lo, hi = ranges[key]
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


def run_policy(
    specs: dict[str, Any],
    stream: list,
    rule: dict[str, tuple[str, int | None]] | None,
    pools: dict[str, Executor],
    callers: int,
) -> Any:
    if rule is None:
        offload_tuner.set_executors(pools)

        async def call(args: tuple, n: int) -> Any:
            key, real = args
            return await offload_tuner.run_kernel(specs[key].fn, *real)
    else:
        makers = {}
        for key, (lane, t) in rule.items():
            make = thread_call if lane == "thread" else process_call
            makers[key] = make(pools["thread" if lane == "thread" else "process"], specs[key].fn, threshold_gate(t))

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
        "The profile's thresholds "
        + (
            "(tuned on the kernels' shared stream, `calibrate --shared`): "
            if e.get("shared") and "error" not in e["shared"]
            else "(each kernel's alone): "
        )
        + "; ".join(
            f"`{key.split(':')[-1]}` processes from {_fmt(t['process'])}, threads from {_fmt(t['thread'])}"
            for key, t in e.get("thresholds", {}).items()
        )
        + ".",
        "",
        "| policy | makespan (normalised) | vs best static | p99 loop lag | CPU |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(s, key=lambda n: s[n]["makespan_s"]):
        mark = " (best static)" if name == best else ""
        lines.append(
            f"| {name}{mark} | {s[name]['makespan_s'] * 1e3:.0f} ms | "
            f"{s[name]['makespan_s'] / s[best]['makespan_s']:.2f} | {s[name]['lag_p99_s'] * 1e3:.1f} ms | "
            f"{s[name]['cpu_s'] * 1e3:.0f} ms |"
        )
    pr = e["lanes_vs_best_per_round"]
    twin = e.get("same_decisions_as_lanes")
    if twin is not None:
        lines += [
            "",
            f"`{twin}` decides every call as `{LANES}` does (through calibration's own call "
            f"packaging instead of `run_kernel`): their ratio, "
            f"{s[LANES]['makespan_s'] / s[twin]['makespan_s']:.2f}, is this benchmark's noise.",
        ]
    lines += [
        "",
        f"Sweep: {LANES} / best static: **{e['lanes_vs_best']:.2f}x** (per round {min(pr):.2f}-{max(pr):.2f}); "
        f"spread of a round: {e['spread']:.0%}. Makespans are the steady pass of each run, normalised round by "
        "round (each round's geometric mean over every policy); p99 loop lag and CPU (caller + process workers) "
        f"are medians over rounds. The best static is the best of {len(s) - 1} noisy medians: it reads low by "
        "selection.",
    ]
    c = e.get("confirmation")
    if c is not None:
        cr = c["lanes_vs_best_per_round"]
        lines += [
            "",
            f"Confirmation ({report['confirm_rounds']} fresh round{'s' if report['confirm_rounds'] != 1 else ''} of {', '.join(f'`{n}`' for n in c['summary'])} "
            f"only, nothing selected): {LANES} / `{best}` **{c['lanes_vs_best']:.2f}x** (median of per-round "
            f"ratios; per round {min(cr):.2f}-{max(cr):.2f})"
            + (f"; against its identical-decision twin {c['lanes_vs_twin']:.2f}x" if "lanes_vs_twin" in c else "")
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_arguments(__doc__, out=OUT, rounds=5, seed=20261130)
    parser.add_argument(
        "--confirm-rounds",
        type=int,
        default=5,
        help="fresh rounds of the lanes against the sweep's best static (0: no confirmation)",
    )
    args = parser.parse_args(argv)

    import offload_tuner_kernels  # noqa: F401  (registers the bundled kernels)
    from offload_tuner.runtime._backends import default_workers
    from offload_tuner.runtime._registry import spec_by_key

    profile = load_benchmark_profile(args.profile)
    missing = [k for k in KERNELS if k not in profile.kernels or spec_by_key(k) is None]
    if missing:
        raise SystemExit(f"benchmarks.mixed: {', '.join(missing)} not in the profile or not registered")
    specs = {k: spec_by_key(k) for k in KERNELS}
    rounds = 1 if args.smoke else args.rounds
    confirm_rounds = min(1, args.confirm_rounds) if args.smoke else args.confirm_rounds
    workers = default_workers()
    started = time.perf_counter()
    with installed_pools(workers) as pools:
        stream = build_stream(specs, workload_ranges(profile), args.seed, args.smoke)
        offload_tuner.set_executors({"process": pools["process"]})
        for key, spec in specs.items():  # the workers import each kernel's module outside every timed run
            args0 = next(real for (k, real), _ in stream if k == key)
            for _ in range(4):
                offload_tuner.run_kernel_sync(spec.fn, *args0, offload_if=True)
        offload_tuner.set_executors({})
        named = policies(profile)
        twin = _same_decisions(specs, stream, named, pools)
        rules = dict(named)
        order_rng, calls_rng = random.Random(args.seed), random.Random(args.seed + 1)
        slices = 1 if args.smoke else chunk_count(len(stream), args.callers, args.chunks)

        def run(piece: list, name: str) -> RunResult:
            stats = run_policy(specs, piece, rules[name], pools, args.callers)
            return RunResult(
                name,
                stats.makespan_s,
                stats.lag_p50_s,
                stats.lag_p99_s,
                stats.lag_max_s,
                stats.caller_cpu_s,
                stats.worker_cpu_s,
                0,
                len(piece),
                stats.steady_s,
            )

        def measure(names: list[str], count: int) -> dict[str, list[dict[str, float]]]:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
            for _ in range(count):
                round_stream = stream[:]
                calls_rng.shuffle(round_stream)
                for name, result in run_round(round_stream, names, slices, order_rng, run).items():
                    runs[name].append(
                        {
                            "makespan_s": result.steady_s or result.makespan_s,
                            "lag_p99_s": result.lag_p99_s,
                            "cpu_s": result.caller_cpu_s + (result.worker_cpu_s or 0.0),
                        }
                    )
            return runs

        names = [name for name, _ in named]
        runs = measure(names, rounds)
        summary, normalised = lane_summary(runs)
        best = min((n for n in names if n != LANES), key=lambda n: summary[n]["makespan_s"])
        confirm_names = list(dict.fromkeys([LANES, best] + ([twin] if twin is not None else [])))
        confirm = measure(confirm_names, confirm_rounds) if confirm_rounds > 0 else None
    spread = (
        statistics.median((max(v) - min(v)) / statistics.median(v) for v in normalised.values()) if rounds > 1 else 0.0
    )
    entry = {
        "calls": len(stream),
        "runs": runs,
        "summary": summary,
        "best_static": best,
        "spread": spread,
        "same_decisions_as_lanes": twin,
        "lanes_vs_best": summary[LANES]["makespan_s"] / summary[best]["makespan_s"],
        "lanes_vs_best_per_round": per_round(normalised, LANES, best),
        "shared": profile.data.get("shared"),
        "thresholds": {
            key: {
                "process": profile.kernels[key].threshold,
                "thread": None if profile.kernels[key].thread is None else profile.kernels[key].thread.threshold,
            }
            for key in KERNELS
        },
    }
    if confirm is not None:
        entry["confirmation"] = confirmation(confirm, best, twin)
    report = {
        **report_header("benchmarks.mixed", argv, args.smoke),
        "profile": str(args.profile),
        "callers": args.callers,
        "workers": workers,
        "rounds": rounds,
        "confirm_rounds": confirm_rounds if confirm is not None else 0,
        "duration_s": round(time.perf_counter() - started, 1),
        "entry": entry,
    }
    write_report(report, args.out_dir, "mixed-smoke" if args.smoke else "mixed", to_markdown(report))
    print(to_markdown(report))
    return 0


def confirmation(runs: dict[str, list[dict[str, float]]], best: str, twin: str | None) -> dict[str, Any]:
    """The lanes against the sweep's best static in rounds where nothing was selected: per round, the two
    measured side by side; the median ratio and its range."""
    summary, normalised = lane_summary(runs)
    ratios = per_round(normalised, LANES, best)
    out = {
        "runs": runs,
        "summary": summary,
        "lanes_vs_best": statistics.median(ratios),
        "lanes_vs_best_per_round": ratios,
    }
    if twin is not None and twin != best:
        out["lanes_vs_twin"] = statistics.median(per_round(normalised, LANES, twin))
    return out


if __name__ == "__main__":
    sys.exit(main())
