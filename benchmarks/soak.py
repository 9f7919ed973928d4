"""Soak: a bounded mixed load over every reference kernel, with a heartbeat, checking for errors and leaks.

    python -m benchmarks.soak [--calls 20000] [--callers 8] [--profile PATH --adapt]

Each call picks a kernel, a small size and a gate at random (seeded): the profile decides, or the caller
forces inline or offload. Every result is compared with the inline result. Memory is traced with
tracemalloc after a warm-up; the growth over the run must stay bounded (the runtime's statistics
included: they are on, as in production). Every call the profile decides must be counted in them exactly
once (one event loop, no thread races). ``--adapt`` turns online adaptation on (a window every second, so
that trials run throughout); it needs a profile with cost models (``--profile``, loaded whatever its host).
Prints a JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import tracemalloc
from typing import Any

import offload_tuner
from offload_tuner.calibration._calibrate import same_result
from offload_tuner.calibration._workload import heartbeat

SIZES = {"offload_tuner_kernels.clustering": (4, 48), "offload_tuner_kernels.graphs": (4, 40)}
DEFAULT_SIZES = (16, 512)


def _traced_outside_this_file() -> int:
    """Bytes traced and still reachable, minus the soak's own bookkeeping and the heartbeat's lag samples (both
    grow by design). Cyclic garbage is collected first: futures, their conditions and asyncio's callbacks
    form cycles that the collector frees only now and then, and without a collection each quarter counted
    several hundred KB of them as growth (100k calls: 328 KB, 597 KB, 819 KB, 1.08 MB)."""
    import gc

    from offload_tuner.calibration import _workload

    gc.collect()
    mine = [tracemalloc.Filter(False, __file__), tracemalloc.Filter(False, _workload.__file__)]
    snapshot = tracemalloc.take_snapshot().filter_traces(mine)
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def _soak(calls: int, callers: int, seed: int) -> dict[str, Any]:
    import offload_tuner_kernels  # noqa: F401  (registers the bundled kernels)
    from offload_tuner.runtime._registry import registered

    specs = [s for s in registered() if s.fn.__module__.startswith("offload_tuner_kernels.")]
    offload_tuner.reset_stats()
    rng = random.Random(seed)
    plan = []
    inputs: dict[tuple[str, int], tuple[tuple, Any]] = {}
    for _ in range(calls):
        spec = rng.choice(specs)
        lo, hi = SIZES.get(spec.fn.__module__, DEFAULT_SIZES)
        n = rng.randint(lo, hi)
        if (spec.key, n) not in inputs:
            args = spec.sample(n)
            inputs[(spec.key, n)] = (args, spec.fn(*args))
        plan.append((spec, n, rng.choice((None, None, True, False))))
    lags: list[float] = []
    errors: list[str] = []
    done = asyncio.Event()
    memory: list[int] = []

    async def caller(items: list) -> None:
        for spec, n, gate in items:
            args, expected = inputs[(spec.key, n)]
            try:
                result = await offload_tuner.run_kernel(spec.fn, *args, offload_if=gate)
                if not same_result(result, expected):
                    errors.append(f"{spec.key} n={n}: wrong result")
            except Exception as exc:  # every exception is a soak failure, recorded
                errors.append(f"{spec.key} n={n}: {type(exc).__name__}: {exc}")

    warmup, rest = plan[: calls // 10], plan[calls // 10 :]
    await asyncio.gather(*(caller(warmup[i::callers]) for i in range(callers)))
    tracemalloc.start()
    beat = asyncio.create_task(heartbeat(lags, done))
    started = time.perf_counter()
    quarter = max(1, len(rest) // 4)
    for q in range(0, len(rest), quarter):
        chunk = rest[q : q + quarter]
        await asyncio.gather(*(caller(chunk[i::callers]) for i in range(callers)))
        memory.append(_traced_outside_this_file())
    elapsed = time.perf_counter() - started
    done.set()
    await beat
    tracemalloc.stop()
    lags.sort()
    counted = sum(
        sum(kernel["calls"]["inline"].values()) + sum(kernel["calls"]["offload"].values())
        for section in offload_tuner.stats()["processes"].values()
        for key, kernel in section["kernels"].items()
        if key in {s.key for s in specs}
    )
    decided = sum(1 for _, _, gate in plan if gate is None)  # the caller's own decisions are not counted
    if counted != decided:
        errors.append(f"statistics counted {counted} calls, the profile decided {decided}")
    from offload_tuner.runtime.feedback._adapt import _adapter

    return {
        "adaptation": dict(_adapter.events) if offload_tuner.adapt() else None,
        "profile": str(offload_tuner.current_profile().source) if offload_tuner.current_profile() else None,
        "calls": calls,
        "callers": callers,
        "errors": errors[:20],
        "error_count": len(errors),
        "seconds": round(elapsed, 2),
        "traced_bytes_after_each_quarter": memory,
        "growth_after_first_quarter_bytes": memory[-1] - memory[0],
        "counted_calls": counted,
        "profile_decided_calls": decided,
        "sample_every": offload_tuner.sample_every(),
        "lag_p99_ms": round(lags[int(0.99 * (len(lags) - 1))] * 1e3, 2) if lags else None,
        "lag_max_ms": round(lags[-1] * 1e3, 2) if lags else None,
    }


def soak(
    calls: int = 20_000,
    callers: int = 8,
    seed: int = 7,
    workers: int | None = None,
    profile: str | None = None,
    adapt: bool = False,
) -> dict[str, Any]:
    pool = offload_tuner.recommended_pool(workers)
    previous = offload_tuner.get_executor()
    offload_tuner.set_executor(pool)
    if profile is not None:
        offload_tuner.load_profile(profile, strict=True, check_host=False)
    if adapt:
        offload_tuner.adapt(True, every_s=1.0)
    try:
        report = asyncio.run(_soak(calls, callers, seed))
    finally:
        offload_tuner.set_executor(previous)
        pool.shutdown(wait=True, cancel_futures=True)
    offload_tuner.adapt(False)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", help="profile to load (whatever its host); default: the configured one")
    parser.add_argument("--adapt", action="store_true", help="online adaptation on, a window every second")
    parser.add_argument("--out", help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    if args.adapt and args.profile is None:
        parser.error("--adapt needs --profile (a profile with cost models to adapt)")
    report = soak(args.calls, args.callers, args.seed, profile=args.profile, adapt=args.adapt)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(
            json.dumps({"command": "python -m benchmarks.soak " + " ".join(argv or sys.argv[1:]), **report}, indent=1)
            + "\n"
        )
    print(json.dumps(report, indent=1))
    return 1 if report["error_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
