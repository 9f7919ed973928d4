"""Co-hosted workload benchmark: do the tuned decisions speed up a service like the one we target?

One asyncio process hosts ``callers`` coroutines (default 4) sharing one process pool (one worker per
core). Each caller awaits its kernel on a seeded stream of sizes drawn log-uniformly over a range where
the decision matters; a heartbeat coroutine measures event-loop lag. Policies, all through the real
``run_kernel``:

* ``inline``      offload_if=False
* ``offload``     offload_if=True
* ``static-256``  offload_if=size >= 256 (the old hand-picked gate)
* ``tuned``       offload_if=None with the profile calibrated on this host
* ``oracle``      size >= T*, the best static threshold per kernel from a brute-force sweep

Policies run interleaved (shuffled per round, seeded) for several rounds; medians are reported.

    python -m benchmarks.workload [--profile PATH] [--rounds 3] [--kernel NAME ...] [--smoke]

writes ``benchmarks/results/workload.{json,md,png}`` (``--out-dir`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import random
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import offload_tuner
from offload_tuner._host import host_fingerprint
from offload_tuner._registry import KernelSpec

HEARTBEAT_S = 0.001
RESULTS = Path(__file__).resolve().parent / "results"
PLAN = Path(__file__).resolve().parent.parent / "calibration" / "plan.json"


@dataclass(frozen=True)
class Workload:
    key: str
    lo: int
    hi: int
    calls: int
    """Calls per caller in a full run (smoke runs use far fewer)."""


CALLS_PER_CALLER = {
    "offload_tuner_kernels.clustering:cluster_observations": 40,
    "offload_tuner_kernels.clustering:cluster_campaigns": 30,
}
"""Calls per caller in a full run (default 60): sized so one run of a policy lasts 0.1-1.5 s."""


def load_workloads(plan_path: Path = PLAN) -> list[Workload]:
    """Size ranges come from the calibration plan's ``workload_range``: one statement of what the service
    calls each kernel with, used both to tune and to benchmark. They straddle the old constant 256."""
    plan = json.loads(plan_path.read_text())
    return [
        Workload(key, int(entry["workload_range"][0]), int(entry["workload_range"][1]), CALLS_PER_CALLER.get(key, 60))
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
    offloaded: int
    calls: int


def build_streams(spec: KernelSpec, workload: Workload, callers: int, calls: int, seed: int) -> list[list[tuple]]:
    """Per caller, a list of (args, size): sizes log-uniform over the workload's range, args prebuilt."""
    rng = random.Random(seed)
    cache: dict[int, tuple] = {}
    streams = []
    for _ in range(callers):
        stream = []
        for _ in range(calls):
            n = int(round(math.exp(rng.uniform(math.log(workload.lo), math.log(workload.hi)))))
            if n not in cache:
                cache[n] = spec.sample(n)  # type: ignore[misc]
            stream.append((cache[n], spec.size(*cache[n])))
        streams.append(stream)
    return streams


def policy_gate(name: str, threshold: int | None) -> Callable[[int], bool | None]:
    """The offload_if value a policy passes for a call of size n (None: let the profile decide)."""
    if name == "inline":
        return lambda n: False
    if name == "offload":
        return lambda n: True
    if name == "static-256":
        return lambda n: n >= 256
    if name == "tuned":
        return lambda n: None
    if threshold is None:  # a static threshold of "never"
        return lambda n: False
    return lambda n: n >= threshold


async def heartbeat(lags: list[float], done: asyncio.Event) -> None:
    """Sleep HEARTBEAT_S at a time until ``done``; record how late each wake-up was (event-loop lag)."""
    loop = asyncio.get_running_loop()
    while not done.is_set():
        start = loop.time()
        await asyncio.sleep(HEARTBEAT_S)
        lags.append(max(0.0, loop.time() - start - HEARTBEAT_S))


async def _run(fn: Callable[..., Any], streams: list[list[tuple]], gate: Callable[[int], bool | None]) -> tuple:
    lags: list[float] = []
    done = asyncio.Event()

    async def caller(stream: list[tuple]) -> None:
        for args, n in stream:
            await offload_tuner.run_kernel(fn, *args, offload_if=gate(n))

    beat = asyncio.create_task(heartbeat(lags, done))
    await asyncio.sleep(0)
    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(s) for s in streams))
    makespan, cpu = time.perf_counter() - start, time.process_time() - cpu
    done.set()
    await beat
    return makespan, cpu, lags


def run_policy(spec: KernelSpec, streams: list[list[tuple]], name: str, threshold: int | None = None) -> RunResult:
    gate = policy_gate(name, threshold)
    # Counted outside the timed run, through the same decision run_kernel makes.
    offloaded = sum(
        1 for stream in streams for args, n in stream
        if gate(n) or (gate(n) is None and offload_tuner.decide(spec.fn, *args).offload)
    )
    gc.collect()
    makespan, cpu, lags = asyncio.run(_run(spec.fn, streams, gate))
    lags.sort()
    pick = lambda q: lags[min(len(lags) - 1, int(q * (len(lags) - 1)))] if lags else 0.0  # noqa: E731
    return RunResult(name, makespan, pick(0.5), pick(0.99), lags[-1] if lags else 0.0, cpu, offloaded,
                     sum(len(s) for s in streams))


def warm_workers(spec: KernelSpec, streams: list[list[tuple]]) -> None:
    """Each worker imports the kernel's module on its first call; keep that out of every timed run."""
    from offload_tuner._backends import dumps_call, invoke_pickled

    executor = offload_tuner.get_executor()
    args = streams[0][0][0]
    for future in [executor.submit(invoke_pickled, dumps_call(spec.fn, args)) for _ in range(8)]:
        future.result()


def oracle_grid(workload: Workload) -> list[int | None]:
    """Static thresholds to sweep: always, powers of two across the range, never."""
    grid: list[int | None] = [0]
    n = 1 << max(0, int(math.log2(workload.lo)))
    while n <= workload.hi:
        grid.append(n)
        n *= 2
    grid.append(None)
    return grid


def find_oracle(spec: KernelSpec, streams: list[list[tuple]], workload: Workload, rounds: int) -> tuple[int | None, dict]:
    """Brute force: the static threshold with the smallest median makespan over ``rounds`` sweeps."""
    grid = oracle_grid(workload)
    times: dict[str, list[float]] = {str(t): [] for t in grid}
    for _ in range(rounds):
        for t in grid:
            times[str(t)].append(run_policy(spec, streams, "static", t).makespan_s)
    best = min(grid, key=lambda t: statistics.median(times[str(t)]))
    return best, {k: statistics.median(v) for k, v in times.items()}


def bench_workload(spec: KernelSpec, workload: Workload, *, callers: int, rounds: int, calls: int,
                   oracle_rounds: int, seed: int) -> dict[str, Any]:
    streams = build_streams(spec, workload, callers, calls, seed)
    warm_workers(spec, streams)
    oracle, sweep = find_oracle(spec, streams, workload, oracle_rounds)
    policies = ["inline", "offload", "static-256", "tuned", "oracle"]
    runs: dict[str, list[RunResult]] = {p: [] for p in policies}
    order_rng = random.Random(seed)
    for _ in range(rounds):
        order = policies[:]
        order_rng.shuffle(order)
        for name in order:
            result = run_policy(spec, streams, "static", oracle) if name == "oracle" else run_policy(spec, streams, name)
            result.policy = name
            runs[name].append(result)
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            field: statistics.median(getattr(r, field) for r in results)
            for field in ("makespan_s", "lag_p50_s", "lag_p99_s", "lag_max_s", "caller_cpu_s", "offloaded")
        }
        summary[name]["calls"] = results[0].calls
    tuned = offload_tuner.decide(spec.fn, *spec.sample(workload.lo))  # type: ignore[misc]
    predicted = predicted_sweep(spec, streams, sweep)
    return {
        "kernel": spec.key,
        "sizes": [workload.lo, workload.hi],
        "calls_per_caller": calls,
        "tuned_threshold": tuned.threshold,
        "tuned_reason": tuned.reason,
        "oracle_threshold": oracle,
        "oracle_sweep_makespan_s": sweep,
        "model_sweep_makespan_s": predicted,
        "summary": summary,
        "runs": {name: [asdict(r) for r in results] for name, results in runs.items()},
    }


def predicted_sweep(spec: KernelSpec, streams: list[list[tuple]], sweep: dict[str, float]) -> dict[str, float] | None:
    """The profile's own prediction of each swept threshold's makespan on these exact calls: where it
    and the measurement disagree is where the model needs work."""
    from offload_tuner._policy import KernelCosts, PolicyKnobs, TransportModel, predict, workload_makespan

    profile = offload_tuner.current_profile()
    entry = profile.kernels.get(spec.key) if profile is not None else None
    if entry is None or "costs" not in entry.data:
        return None
    costs = KernelCosts.from_json(entry.data["costs"])
    transport = TransportModel.from_json(profile.data["transport"]["model"])
    knobs = PolicyKnobs.from_json(profile.data.get("policy", {}))
    sizes = sorted(n for stream in streams for _, n in stream)
    predictions = [predict(costs, transport, knobs, n) for n in sizes]
    out = {}
    for t in sweep:
        k = len(sizes) if t == "None" else next((i for i, n in enumerate(sizes) if n >= int(t)), len(sizes))
        out[t] = workload_makespan(predictions, knobs, k)
    return out


def verdicts(entry: dict[str, Any], loop_budget_s: float | None) -> dict[str, Any]:
    """The issue's goals, checked on the medians."""
    s = entry["summary"]
    tuned, oracle = s["tuned"]["makespan_s"], s["oracle"]["makespan_s"]
    best_fixed = min(s[p]["makespan_s"] for p in ("inline", "offload", "static-256"))
    out = {
        "tuned_vs_oracle": tuned / oracle,
        "tuned_vs_best_fixed": tuned / best_fixed,
        "makespan_within_1.10x_oracle": tuned <= 1.10 * oracle,
        "not_worse_than_best_fixed": tuned <= best_fixed * 1.02,  # 2%: the noise floor of medians here
        "p99_lag_not_above_static_256": s["tuned"]["lag_p99_s"] <= s["static-256"]["lag_p99_s"] * 1.05,
    }
    if loop_budget_s is not None:
        out["p99_lag_within_budget"] = s["tuned"]["lag_p99_s"] <= loop_budget_s
    return out


def to_markdown(report: dict[str, Any]) -> str:
    host = report["host"]
    lines = [
        "# Co-hosted workload benchmark\n",
        f"Host `{host['hostname']}` ({host['cpu_model']}, {host['logical_cores']} cores), Python "
        f"{host['python_version']}; {report['callers']} callers, pool of {report['workers']} workers; "
        f"{report['rounds']} interleaved rounds, medians; profile `{report['profile']}`; {report['created']}.\n",
        f"Command: `{report['command']}`\n",
        "| kernel | policy | makespan | vs oracle | loop lag p50 | p99 | max | caller CPU | offloaded |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["workloads"]:
        s = entry["summary"]
        oracle = s["oracle"]["makespan_s"]
        for name in ("inline", "offload", "static-256", "tuned", "oracle"):
            r = s[name]
            label = name
            if name == "tuned":
                label += f" (T={_fmt_t(entry['tuned_threshold'])})"
            if name == "oracle":
                label += f" (T={_fmt_t(entry['oracle_threshold'])})"
            lines.append(
                f"| {entry['kernel'].split(':')[1]} | {label} | {r['makespan_s'] * 1e3:.0f} ms | "
                f"{r['makespan_s'] / oracle:.2f}x | {r['lag_p50_s'] * 1e3:.2f} ms | {r['lag_p99_s'] * 1e3:.1f} ms | "
                f"{r['lag_max_s'] * 1e3:.1f} ms | {r['caller_cpu_s'] * 1e3:.0f} ms | {r['offloaded']:.0f}/{r['calls']} |"
            )
    lines += ["", "## Goals", "", "| kernel | tuned / oracle | tuned / best of inline, offload, 256 | "
              "<= 1.10x oracle | not worse than best fixed | p99 lag <= static-256 |", "|---|---|---|---|---|---|"]
    for entry in report["workloads"]:
        v = entry["verdicts"]
        mark = lambda ok: "yes" if ok else "**no**"  # noqa: E731
        lines.append(
            f"| {entry['kernel'].split(':')[1]} | {v['tuned_vs_oracle']:.2f} | {v['tuned_vs_best_fixed']:.2f} | "
            f"{mark(v['makespan_within_1.10x_oracle'])} | {mark(v['not_worse_than_best_fixed'])} | "
            f"{mark(v['p99_lag_not_above_static_256'])} |"
        )
    lines += ["", "## Model check: predicted vs measured makespan per static threshold (oracle sweep)", "",
              "| kernel | threshold: predicted / measured (ms) |", "|---|---|"]
    for entry in report["workloads"]:
        model = entry.get("model_sweep_makespan_s") or {}
        cells = ", ".join(
            f"{_fmt_t(None if t == 'None' else int(t))}: {model[t] * 1e3:.0f}/{m * 1e3:.0f}"
            for t, m in entry["oracle_sweep_makespan_s"].items() if t in model
        )
        lines.append(f"| {entry['kernel'].split(':')[1]} | {cells} |")
    return "\n".join(lines) + "\n"


def _fmt_t(t: int | None) -> str:
    return "never" if t is None else str(t)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = ["inline", "offload", "static-256", "tuned", "oracle"]
    names = [e["kernel"].split(":")[1] for e in report["workloads"]]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
    width = 0.16
    for i, policy in enumerate(policies):
        xs = [k + (i - 2) * width for k in range(len(names))]
        rel = [e["summary"][policy]["makespan_s"] / e["summary"]["oracle"]["makespan_s"] for e in report["workloads"]]
        lag = [e["summary"][policy]["lag_p99_s"] * 1e3 for e in report["workloads"]]
        ax1.bar(xs, rel, width, label=policy)
        ax2.bar(xs, lag, width, label=policy)
    ax1.axhline(1.10, color="k", ls="--", lw=0.8)
    ax1.text(len(names) - 0.5, 1.12, "1.10x oracle", ha="right", fontsize=8)
    ax1.set_yscale("log")
    ax1.set_ylabel("makespan / oracle (log)")
    ax1.set_title(f"Co-hosted workload: {report['callers']} callers, {report['workers']} workers, "
                  f"host {report['host']['hostname']} (medians of {report['rounds']} rounds)")
    ax1.legend(ncol=5, fontsize=8, loc="upper left")
    ax2.set_yscale("log")
    ax2.set_ylabel("p99 loop lag (ms, log)")
    ax2.set_xticks(range(len(names)))
    ax2.set_xticklabels(names, rotation=15, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", type=Path, help="profile for the tuned policy (default: this host's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--oracle-rounds", type=int, default=1)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--kernel", action="append", default=[])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round: proves it runs, measures nothing")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args(argv)

    import offload_tuner_kernels  # noqa: F401  (registers the bundled kernels)
    from offload_tuner._backends import default_workers
    from offload_tuner._extras import install_hint, missing, requirement_problem
    from offload_tuner._profile import ProfileError, configured_profile_path
    from offload_tuner._registry import spec_by_key

    # Everything a run needs is checked before anything is measured.
    profile_path = args.profile or configured_profile_path()
    try:
        profile = offload_tuner.load_profile(profile_path, strict=True)
    except ProfileError as exc:
        raise SystemExit(f"benchmarks.workload: {exc}; calibrate this host (offload-tuner calibrate --out PATH) "
                         "and pass --profile PATH") from None
    workers = args.workers or default_workers()
    workloads = [w for w in load_workloads() if not args.kernel or any(k in w.key for k in args.kernel)]
    unregistered = [w.key for w in workloads if spec_by_key(w.key) is None]
    if unregistered:  # detect_spikes registers only when numpy is importable
        numpy = f"; numpy is missing: {install_hint('calibrate')}" if "numpy" in missing("calibrate") else ""
        raise SystemExit(f"benchmarks.workload: kernels not registered: {', '.join(unregistered)}{numpy}")
    figure_problem = requirement_problem("plot", "the figure")
    if figure_problem:
        print(f"benchmarks.workload: {figure_problem}; it will be skipped (tables and JSON are written)",
              file=sys.stderr)
    # The fixed policies pass offload_if over a trusted profile on purpose: no need to be told.
    warnings.filterwarnings("ignore", category=offload_tuner.ProfileOverriddenWarning)
    rounds = 1 if args.smoke else args.rounds
    pool = offload_tuner.recommended_pool(workers)
    offload_tuner.set_executor(pool)
    started = time.perf_counter()
    entries = []
    try:
        for w in workloads:
            spec = spec_by_key(w.key)
            if args.smoke:
                w = Workload(w.key, w.lo, min(w.hi, w.lo * 4), 3)
            print(f"benchmarking {w.key} ...", file=sys.stderr)
            entry = bench_workload(spec, w, callers=args.callers, rounds=rounds, calls=w.calls,
                                   oracle_rounds=1 if args.smoke else args.oracle_rounds, seed=args.seed)
            entry["verdicts"] = verdicts(entry, profile.data.get("policy", {}).get("loop_budget_s"))
            entries.append(entry)
    finally:
        offload_tuner.set_executor(None)
        pool.shutdown(wait=True, cancel_futures=True)
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m benchmarks.workload " + " ".join(argv if argv is not None else sys.argv[1:]),
        "smoke": args.smoke,
        "host": host_fingerprint(),
        "profile": str(profile_path),
        "profile_created": profile.data.get("created"),
        "callers": args.callers,
        "workers": workers,
        "rounds": rounds,
        "duration_s": round(time.perf_counter() - started, 1),
        "workloads": entries,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "workload-smoke" if args.smoke else "workload"
    (args.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out_dir / f"{stem}.md").write_text(to_markdown(report))
    if figure_problem is None:
        plot(report, args.out_dir / f"{stem}.png")
    print(to_markdown(report))
    if figure_problem:
        print(f"figure skipped: {figure_problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
