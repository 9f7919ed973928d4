"""Long-stream p99 loop lag: the lag model (``offload_tuner.calibration._lagmodel``) against long runs.

For each kernel of a profile and each static threshold given, one long stream of the reference workload (4 callers
on one loop, the process pool, a heartbeat; ``offload_tuner.calibration._workload``): ``--calls`` calls drawn at
random from the mix's quantiles (a production stream, not calibration's short ring), run once through, its p99
loop lag beside the one the model predicts from the profile's corrected costs. Writes ``long_lag.{json,md}``.

    python -m benchmarks.long_lag --profile P --plan benchmarks/fresh_plan.json --thresholds 16,64,128,256,512
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import offload_tuner
from benchmarks.fresh_runs import register_plan_targets
from offload_tuner.calibration._grid import offload_from
from offload_tuner.calibration._lagmodel import call_costs, long_stream_lag_p99, stream_draws
from offload_tuner.calibration._workload import kernel_calls, mix_sizes, process_call, run_calls, threshold_gate
from offload_tuner.inspection._report import format_threshold
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, predict
from offload_tuner.runtime._registry import spec_by_key


def predicted(profile: dict[str, Any], key: str, thresholds: list[int | None], seed: int) -> dict[str, float]:
    """The model's long-stream p99 per threshold, from the profile's corrected costs over its ring's sizes."""
    entry, knobs = profile["kernels"][key], PolicyKnobs.from_json(profile["policy"])
    transport = TransportModel.from_json(profile["transport"]["model"])
    costs = KernelCosts.from_json(entry["costs"])
    lo, hi = entry["load"]["workload_range"]
    sizes = mix_sizes(lo, hi, entry["load"]["calls"])
    ring = call_costs([predict(costs, transport, knobs, n) for n in sizes])
    draws = stream_draws(len(sizes), seed)
    return {
        format_threshold(t): long_stream_lag_p99(
            ring, offload_from(sizes, t), draws, callers=knobs.concurrency, workers=knobs.workers, cores=knobs.cores
        )
        for t in thresholds
    }


def measured(key: str, workload_range: tuple[int, int], thresholds: list[int | None], calls: int, seed: int) -> dict:
    """One long stream per threshold (the same calls, in the same random order), its p99 loop lag and wall time."""
    spec = spec_by_key(key)
    assert spec is not None
    ring = kernel_calls(spec, workload_range, 64, seed)
    rng = random.Random(seed)
    stream = [ring[rng.randrange(len(ring))] for _ in range(calls)]
    out = {}
    executor = offload_tuner.get_executor()
    for t in thresholds:
        started = time.perf_counter()
        stats = run_calls(stream, 4, process_call(executor, spec.fn, threshold_gate(t)), executor)
        out[format_threshold(t)] = {"lag_p99_s": stats.lag_p99_s, "makespan_s": stats.makespan_s}
        print(
            f"{key}: {format_threshold(t)} p99 {stats.lag_p99_s * 1e3:.1f} ms ({time.perf_counter() - started:.0f} s)"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", type=Path, required=True)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--kernel", action="append", default=[])
    parser.add_argument("--thresholds", required=True, help="always, never or sizes, comma-separated")
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    from benchmarks.workload import installed_pool, parse_threshold

    plan = register_plan_targets(args.plan)
    profile = json.loads(args.profile.read_text())
    thresholds = [parse_threshold(t) for t in args.thresholds.split(",")]
    rows = {}
    with installed_pool(None):
        for key, entry in plan["kernels"].items():
            if args.kernel and not any(k in key for k in args.kernel):
                continue
            lo, hi = entry["workload_range"]
            rows[key] = {
                "predicted_p99_s": predicted(profile, key, thresholds, args.seed),
                "measured": measured(key, (lo, hi), thresholds, args.calls, args.seed),
            }
    report = {"command": "python -m benchmarks.long_lag " + " ".join(argv or sys.argv[1:]), "calls": args.calls}
    report["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report["kernels"] = rows
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "long_lag.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["| kernel | threshold | predicted p99 | measured p99 (long stream) |", "|---|---|---|---|"]
    for key, row in rows.items():
        for name, value in row["predicted_p99_s"].items():
            got = row["measured"][name]["lag_p99_s"]
            lines.append(f"| {key.split(':')[1]} | {name} | {value * 1e3:.1f} ms | {got * 1e3:.1f} ms |")
    (args.out_dir / "long_lag.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
