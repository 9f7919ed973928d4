"""The co-hosted workload benchmark (:mod:`benchmarks.workload`) on the kernels of any calibration plan, not only
the bundled ones: what the reruns campaign runs with ``--plan`` (``benchmarks/fresh_plan.json``: the kernels of
:mod:`benchmarks.fresh_kernels`, which the bundled set lacks).

    python -m benchmarks.fresh_runs --plan benchmarks/fresh_plan.json --profile P --out-dir D [--kernel NAME]
    python -m benchmarks.fresh_runs --plan ... --profile P --kernel NAME --compare 16,64,256 --out-dir D

The same measurement as ``benchmarks.workload`` (its functions, its report): the sweep of static thresholds and
tuned in interleaved rounds, then the confirmation. One kernel per invocation keeps a locked run short; each
run adds its kernel's entry to ``D/workload.json`` (replacing an earlier one of the same kernel).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any


def register_plan_targets(plan_path: Path) -> dict[str, Any]:
    """The plan, its targets imported (which registers their kernels)."""
    plan = json.loads(plan_path.read_text())
    for target in plan.get("targets", []):
        importlib.import_module(target)
    return plan


def plan_workloads(plan_path: Path, kernels: list[str]) -> list[Any]:
    """The plan's kernels with a served mix, as the workload benchmark's :class:`Workload` (``kernels``: keep
    those whose key contains one of these, all if empty)."""
    from benchmarks.workload import load_workloads

    return [w for w in load_workloads(plan_path) if not kernels or any(k in w.key for k in kernels)]


def main(argv: list[str] | None = None) -> int:
    from benchmarks import workload

    parser = workload.benchmark_arguments(__doc__, out=Path("."), rounds=5, seed=20261127, kernel=True)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--confirm-rounds", type=int, default=workload.CONFIRM_ROUNDS)
    parser.add_argument("--compare", metavar="T,T,...")
    args = parser.parse_args(argv)
    register_plan_targets(args.plan)
    from offload_tuner.runtime._backends import default_workers
    from offload_tuner.runtime._registry import spec_by_key

    workloads = plan_workloads(args.plan, args.kernel)
    profile = workload.load_benchmark_profile(args.profile)
    workers = default_workers()
    if args.compare:
        return workload.compare_main(args, workloads, workers, argv)
    budget = profile.data.get("policy", {}).get("loop_budget_s")
    report_path = args.out_dir / "workload.json"
    previous = json.loads(report_path.read_text()) if report_path.exists() else None
    started = time.perf_counter()
    entries = []
    with workload.installed_pool(workers):
        for w in workloads:
            spec = spec_by_key(w.key)
            assert spec is not None, w.key
            print(f"benchmarking {w.key} ...", file=sys.stderr)
            entry = workload.bench_workload(
                spec,
                w,
                callers=args.callers,
                rounds=1 if args.smoke else args.rounds,
                seed=args.seed,
                smoke=args.smoke,
                chunks=args.chunks,
                confirm_rounds=min(1, args.confirm_rounds) if args.smoke else args.confirm_rounds,
                confirm_max_rounds=min(1, args.confirm_rounds) if args.smoke else None,
            )
            entry["verdicts"] = workload.verdicts(entry, budget)
            entries.append(entry)
    kept = [e for e in (previous or {}).get("workloads", []) if e["kernel"] not in {e["kernel"] for e in entries}]
    report = {
        **workload.report_header("benchmarks.fresh_runs", argv, args.smoke),
        "profile": str(args.profile),
        "profile_created": profile.data.get("created"),
        "loop_budget_s": budget,
        "callers": args.callers,
        "workers": workers,
        "rounds": 1 if args.smoke else args.rounds,
        "confirm_rounds": args.confirm_rounds,
        "duration_s": round(time.perf_counter() - started, 1) + ((previous or {}).get("duration_s") or 0.0),
        "workloads": kept + entries,
    }
    workload.write_report(report, args.out_dir, "workload", workload.to_markdown(report))
    print(workload.to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
