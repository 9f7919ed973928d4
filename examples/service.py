"""An asyncio service co-hosting two clustering workers over one process pool, run twice side by side:
once with the old constant at every call site (``offload_if=len(batch) >= 256``), once letting a profile
calibrated on this host decide (no ``offload_if``). A heartbeat coroutine measures event-loop lag.

    python examples/service.py [--profile PATH] [--calls N] [--min-size N] [--max-size N] [--seed N]

Without ``--profile`` it uses ``$OFFLOAD_TUNER_PROFILE`` or this host's default profile, if there is one
(make it with ``offload-tuner calibrate --kernel cluster_observations --kernel cluster_campaigns``); with none,
only the old constant runs. Needs only ``pip install -e .``. It prints, per kernel and mode, how many calls ran
inline and how many were offloaded, the p99 event-loop lag and the wall time. Timings from a short run
(``--calls 4 --max-size 64``, what the tests run) mean nothing; the counts always add up.

In the old-constant run the call sites pass ``offload_if`` while the profile has a trusted entry, so the
runtime says once per kernel that the profile is being overridden (a ProfileOverriddenWarning on stderr):
that is what a service sees when it swaps the import but keeps its constant.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offload_tuner import (
    current_profile,
    decide,
    default_profile_path,
    load_profile,
    recommended_pool,
    run_kernel,
    set_executor,
)
from offload_tuner_kernels.clustering import cluster_campaigns, cluster_observations
from offload_tuner_kernels.records import make_identities, make_observations

OLD_CONSTANT = 256
HEARTBEAT_S = 0.001
OLD, TUNED = "old constant", "profile"
KERNELS: dict[str, tuple[Callable[..., Any], Callable[[int, int], list]]] = {
    "cluster_observations": (cluster_observations, make_observations),
    "cluster_campaigns": (cluster_campaigns, make_identities),
}


@dataclass
class KernelCounts:
    calls: int = 0
    inline: int = 0
    offloaded: int = 0
    threshold: str = ""


@dataclass
class ModeReport:
    mode: str
    kernels: dict[str, KernelCounts] = field(default_factory=dict)
    lag_p99_s: float = 0.0
    heartbeats: int = 0
    wall_s: float = 0.0


def batches(make: Callable[[int, int], list], calls: int, lo: int, hi: int, seed: int) -> list[list]:
    """Seeded batch sizes, log-uniform over [lo, hi]: the same stream for both modes."""
    rng = random.Random(seed)
    sizes = [round(math.exp(rng.uniform(math.log(lo), math.log(hi)))) for _ in range(calls)]
    return [make(n, seed + i) for i, n in enumerate(sizes)]


async def clustering_worker(fn: Callable[..., Any], work: list[list], mode: str, counts: KernelCounts) -> None:
    """One worker: the call site is the only line that differs between the two modes."""
    for observations in work:
        if mode == OLD:
            offload = len(observations) >= OLD_CONSTANT  # the caller's word, as run_kernel takes it
            await run_kernel(fn, observations, offload_if=len(observations) >= OLD_CONSTANT)
            counts.threshold = f"offload_if=len >= {OLD_CONSTANT}"
        else:
            where = decide(fn, observations)  # what run_kernel decides for this call, and why
            await run_kernel(fn, observations)
            offload = where.offload
            threshold = "never" if where.threshold is None else where.threshold
            fallback = "" if where.reason.startswith("profile") else f", {where.reason.split(':')[0]}"
            counts.threshold = f"threshold {threshold}{fallback}"
        counts.calls += 1
        counts.offloaded += offload
        counts.inline += not offload


async def heartbeat(lags: list[float], stop: asyncio.Event) -> None:
    """How late the loop wakes us up: the time a call running inline steals from every other coroutine."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(HEARTBEAT_S)
        lags.append(max(0.0, loop.time() - start - HEARTBEAT_S))


async def serve(mode: str, work: dict[str, list[list]]) -> ModeReport:
    report = ModeReport(mode, {name: KernelCounts() for name in KERNELS})
    lags: list[float] = []
    stop = asyncio.Event()
    beat = asyncio.create_task(heartbeat(lags, stop))
    started = time.perf_counter()
    await asyncio.gather(
        *(clustering_worker(fn, work[name], mode, report.kernels[name]) for name, (fn, _) in KERNELS.items())
    )
    report.wall_s = time.perf_counter() - started
    stop.set()
    await beat
    lags.sort()
    report.heartbeats = len(lags)
    report.lag_p99_s = lags[min(len(lags) - 1, math.ceil(0.99 * len(lags)) - 1)] if lags else 0.0
    return report


def warm_up(pool: Any, work: dict[str, list[list]]) -> None:
    """Each pool worker imports the kernels on its first call: keep that out of both runs."""
    futures = [pool.submit(fn, work[name][0][:8]) for name, (fn, _) in KERNELS.items() for _ in range(4)]
    for future in futures:
        future.result()


def format_table(reports: list[ModeReport]) -> str:
    def cell(counts: KernelCounts) -> str:
        return f"{counts.calls} calls: {counts.inline} inline, {counts.offloaded} offloaded ({counts.threshold})"

    rows = [["", *(f"[{r.mode}]" for r in reports)]]
    for name in KERNELS:
        rows.append([name, *(cell(r.kernels[name]) for r in reports)])
    rows.append(["loop lag p99", *(f"{r.lag_p99_s * 1e3:.1f} ms ({r.heartbeats} heartbeats)" for r in reports)])
    rows.append(["wall time", *(f"{r.wall_s:.2f} s" for r in reports)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def profile_to_use(named: Path | None) -> Path | None:
    """--profile, else $OFFLOAD_TUNER_PROFILE, else this host's default profile; None if that file is absent."""
    path = named or Path(os.environ.get("OFFLOAD_TUNER_PROFILE") or default_profile_path())
    return path if named or path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", type=Path, help="calibrated profile for the second run")
    parser.add_argument("--calls", type=int, default=30, help="calls per worker and mode (default 30)")
    parser.add_argument("--min-size", type=int, default=8)
    parser.add_argument("--max-size", type=int, default=512, help="default: the plan's workload range, 8-512")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if not 1 <= args.min_size <= args.max_size or args.calls < 1:
        parser.error("need 1 <= --min-size <= --max-size and --calls >= 1")

    profile = profile_to_use(args.profile)
    modes = [OLD] if profile is None else [OLD, TUNED]
    if profile is not None:
        load_profile(profile)  # a profile it cannot use is reported by one warning; kernels then use defaults
    work = {
        name: batches(make, args.calls, args.min_size, args.max_size, args.seed + k)
        for k, (name, (_, make)) in enumerate(KERNELS.items())
    }

    pool = recommended_pool()  # the supervisor: one forkserver pool for every worker coroutine
    set_executor(pool)
    try:
        warm_up(pool, work)
        reports = [asyncio.run(serve(mode, work)) for mode in modes]
    finally:
        set_executor(None)
        pool.shutdown(wait=True, cancel_futures=True)

    print(
        f"{len(KERNELS)} clustering workers sharing one recommended_pool(); {args.calls} calls "
        f"each per mode, sizes {args.min_size}-{args.max_size} log-uniform (seed {args.seed})"
    )
    if profile is None:
        print(
            "profile: none found, so only the old constant ran; calibrate this host with `offload-tuner calibrate "
            "--kernel cluster_observations --kernel cluster_campaigns` or pass --profile PATH"
        )
    else:
        used = current_profile()
        print(f"profile: {profile}" + ("" if used else " (not usable here: kernels fall back to their defaults)"))
    print()
    print(format_table(reports))
    return 0


if __name__ == "__main__":  # worker processes import this file too: only the parent runs the service
    sys.exit(main())
