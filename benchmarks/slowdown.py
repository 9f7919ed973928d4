"""A kernel that gets 2x slower per call halfway through the run: static vs retuned vs adaptive vs the oracle.

    python -m benchmarks.slowdown [--rounds 5] [--effort standard] [--profile PATH]

The kernel is ``benchmarks.bench_kernels:tally`` (linear compute, a result whose unpickling costs the caller
about as much as computing it: the class where the best threshold depends most on the compute/transport
ratio). It is calibrated first (``--effort``, the bundled plan's rules) unless ``--profile`` names a profile
that has it. One run of the co-hosted workload is two phases over the same log-uniform mix of sizes: the
first calls it with ``repeat=1``, the second with ``repeat=2`` (the same bytes, twice the compute: data that
got heavier); each phase's calls come in a fresh order every round. Policies, in interleaved rounds:

* ``tuned``     the static profile;
* ``retuned``   ``offload-tuner retune``'s threshold from the statistics of one earlier run under the
                static profile with every call timed (what a user gets by retuning after such a run);
* ``adaptive``  the profile with online adaptation on, starting afresh in every run from the profile's
                threshold (it must notice the slowdown within the run), its clock compressed
                (:mod:`benchmarks.adaptive`);
* the static sweep (always, powers of two, never), whose best is the oracle for this run.

Writes ``results/slowdown/slowdown.{json,md}`` and the profile it used.
"""

from __future__ import annotations

import json
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import offload_tuner
from benchmarks.adaptive import Adaptive
from benchmarks.workload import (
    RESULTS,
    Calls,
    Workload,
    bench_workload,
    benchmark_arguments,
    installed_pool,
    report_header,
    size_calls,
    warm_workers,
    write_report,
)
from offload_tuner.inspection._report import format_threshold as _fmt

OUT = RESULTS / "slowdown"
KEY = "benchmarks.bench_kernels:tally"
PLAN = {"min_size": 100, "max_size": 100_000, "workload_range": [1000, 100_000]}
SLOWER = 2


def calibrate(out_dir: Path, effort: str) -> Path:
    """The kernel calibrated on this host, with a plan of its own (written next to the profile)."""
    from offload_tuner.inspection._cli import main as cli

    out_dir.mkdir(parents=True, exist_ok=True)
    plan = out_dir / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "schema": 1,
                "targets": ["benchmarks.bench_kernels"],
                "effort": effort,
                "concurrency": 4,
                "kernels": {KEY: PLAN},
            },
            indent=1,
        )
        + "\n"
    )
    profile = out_dir / "profile.json"
    code = cli(["calibrate", "--plan", str(plan), "--kernel", "tally", "--out", str(profile), "-q"])
    if code != 0:
        raise SystemExit(f"benchmarks.slowdown: calibration failed (exit {code})")
    return profile


def two_phases(calls: Calls) -> Calls:
    """The calls as they are, then the same sizes with ``repeat=SLOWER``."""
    return list(calls) + [((args[0], SLOWER), n) for args, n in calls]


def phase_order(calls: Calls, rng: random.Random) -> Calls:
    """Each phase in a fresh order; the slowdown stays halfway."""
    half = len(calls) // 2
    first, second = list(calls[:half]), list(calls[half:])
    rng.shuffle(first)
    rng.shuffle(second)
    return first + second


def record_and_retune(spec: Any, calls: Calls, callers: int, profile_data: dict) -> dict[str, Any]:
    """One run under the static profile with every call timed, then retune on what it recorded."""
    from benchmarks.workload import run_policy
    from offload_tuner.runtime.feedback._retune import retune, traffic

    offload_tuner.reset_stats()
    previous = offload_tuner.sample_every(1)
    try:
        run_policy(spec, calls, "tuned", callers, warmup=0)
    finally:
        offload_tuner.sample_every(previous)
    (r,) = [r for r in retune(profile_data, traffic(offload_tuner.stats())) if r.key == spec.key]
    return {
        "old": r.old,
        "new": r.new,
        "predicted_gain": r.gain,
        "factors": {kind: {"ratio": ratio, "samples": n} for kind, (ratio, n) in r.factors.items()},
    }


def to_markdown(report: dict[str, Any]) -> str:
    host = report["host"]
    e = report["entry"]
    s = e["summary"]
    o = s[e["oracle"]]["makespan_s"]
    a = report["adaptive"]
    lines = [
        "# A kernel 2x slower per call halfway through the run",
        "",
        f"Host `{host['hostname']}` ({host['cpu_model']}, {host['logical_cores']} cores), Python "
        f"{host['python_version']}; `{KEY}` over sizes {e['sizes'][0]}-{e['sizes'][1]}, {e['calls'] // 2} calls "
        f"per phase, {report['callers']} callers, {report['workers']} workers, {report['rounds']} interleaved "
        f"rounds; profile `{report['profile']}`; {report['created']}.",
        "",
        f"Command: `{report['command']}` ({report['duration_s']:.0f} s).",
        "",
        "| policy | threshold | makespan / oracle | per round | p99 loop lag | offloaded |",
        "|---|---|---|---|---|---|",
    ]
    rows = [
        ("static profile", "tuned", _fmt(e["tuned_threshold"])),
        ("retuned from stats", "retuned", _fmt(report["retune"]["new"])),
        ("adaptive", "adaptive", " -> ".join(sorted({_fmt(t) for t in a["thresholds"]})) + " (end of run)"),
        (f"oracle ({e['oracle']})", e["oracle"], e["oracle"]),
    ]
    for label, name, threshold in rows:
        per_round = e["ratios_per_round"][name]
        lines.append(
            f"| {label} | {threshold} | {s[name]['makespan_s'] / o:.2f} | "
            f"{min(per_round):.2f}-{max(per_round):.2f} | {s[name]['lag_p99_s'] * 1e3:.0f} ms | "
            f"{s[name]['offloaded']:.0f} of {e['calls']} |"
        )
    lines += [
        "",
        f"Spread: {e['spread']:.0%} (median over policies of (max - min) / median across rounds). Ratios are of "
        "normalised median makespans (each round scaled by its geometric mean over every policy); the oracle "
        "is the best static threshold of the sweep, measured in the same rounds. Retune's corrections: "
        + (", ".join(f"{k} x{v['ratio']:.2f}" for k, v in report["retune"]["factors"].items()) or "none")
        + f". Adaptive's clock: a step every {a['settings']['every_s']} s on {a['settings']['min_calls']} new "
        f"calls, 1 call in {a['settings']['sample_every']} timed (production defaults: 30 s, 256, 64); its "
        "threshold at the end of each run: " + ", ".join(_fmt(t) for t in a["thresholds"]) + ".",
    ]
    return "\n".join(lines) + "\n"


def ratios_per_round(entry: dict[str, Any]) -> dict[str, list[float]]:
    """Each policy's makespan over the oracle's, round by round (they ran side by side)."""
    runs = entry["runs"]
    oracle = [r["makespan_s"] for r in runs[entry["oracle"]]]
    return {name: [r["makespan_s"] / o for r, o in zip(results, oracle)] for name, results in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_arguments(
        __doc__, out=OUT, rounds=5, seed=20261129, profile="a profile with the kernel (default: calibrate it now)"
    )
    parser.add_argument("--effort", default="standard", choices=["quick", "standard", "thorough"])
    args = parser.parse_args(argv)

    from benchmarks import bench_kernels  # noqa: F401  (registers the kernel)
    from offload_tuner.runtime._backends import default_workers
    from offload_tuner.runtime._registry import spec_by_key

    started = time.perf_counter()
    profile_path = args.profile or calibrate(args.out_dir, "quick" if args.smoke else args.effort)
    profile = offload_tuner.load_profile(profile_path, strict=True, check_host=False)
    spec = spec_by_key(KEY)
    assert spec is not None
    if KEY not in profile.kernels:
        raise SystemExit(f"benchmarks.slowdown: {profile_path} has no entry for {KEY}")
    warnings.filterwarnings("ignore", category=offload_tuner.ProfileOverriddenWarning)
    warnings.filterwarnings("ignore", message=".*no longer behaves as calibrated.*")  # the slowdown is the point
    workers = default_workers()
    rounds = 1 if args.smoke else args.rounds
    workload = Workload(KEY, *PLAN["workload_range"])
    with installed_pool(workers):
        calls = two_phases(size_calls(spec, workload, args.seed, args.smoke))
        warm_workers(spec, calls)
        retuned = record_and_retune(spec, phase_order(calls, random.Random(args.seed)), args.callers, profile.data)
        # Windows of 32 calls: a run has ~360-400, so a trial (seven windows after the first) can finish in one.
        adaptive = Adaptive(spec, profile_path, min_calls=32)
        entry = bench_workload(
            spec,
            workload,
            callers=args.callers,
            rounds=rounds,
            seed=args.seed,
            smoke=args.smoke,
            named={"retuned": retuned["new"]},
            calls=calls,
            dynamic={"adaptive": adaptive},
            order=phase_order,
            warmup=0,
            chunks=1,
        )  # one time series: the slowdown is halfway
    entry["ratios_per_round"] = ratios_per_round(entry)
    report = {
        **report_header("benchmarks.slowdown", argv, args.smoke),
        "profile": str(profile_path),
        "callers": args.callers,
        "workers": workers,
        "rounds": rounds,
        "duration_s": round(time.perf_counter() - started, 1),
        "retune": retuned,
        "adaptive": adaptive.record(),
        "entry": entry,
    }
    write_report(report, args.out_dir, "slowdown-smoke" if args.smoke else "slowdown", to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
