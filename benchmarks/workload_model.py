"""A discrete-event model of the reference workload (pure, seeded): questions timing cannot settle on this VM.

Timing on a noisy 2-core VM needs many minutes of rounds to resolve a few percent; a model answers in seconds:

* ``callers`` callers take calls from one shared ring (the quantiles of the log-uniform mix, shuffled);
* the event loop is one FIFO server: inline calls, and each offloaded call's pickling and unpickling;
* ``workers`` worker processes take offloaded calls from one FIFO queue;
* the loop thread and the busy workers share ``cores`` CPUs equally (each runs at ``min(1, cores/busy)``).

Two studies, ``python -m benchmarks.workload_model`` (numbers in ``benchmarks/results/workload_model.md``):

1. **Warm-up of the steady pass.** Calibration times each candidate over one steady pass of a ring of calls
   (``_workload``). If the pass starts before the pool's backlog has filled, it ends with more queued work than
   it started with, leaves that work out, and reads offloading cheaper than a long stream runs it. Per ring
   length and warm-up: each threshold's steady-pass time relative to the best, against a long stream. Costs:
   an O(n^2) kernel like ``cluster_observations`` on this VM.
2. **What a 2x slowdown can cost a static threshold on 2 cores.** A linear kernel whose offloading costs the
   loop ``L`` per element of result against ``c`` of compute: the threshold best before it gets 2x slower,
   kept for a run that is half before and half after, against the best static threshold for the whole run.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from offload_tuner.calibration._workload import mix_sizes


@dataclass(frozen=True, slots=True)
class Costs:
    """Seconds of CPU each part of a call takes at size ``n``."""

    inline: Callable[[int], float]
    worker: Callable[[int], float]
    loop_side: Callable[[int], float]
    """Pickling the arguments plus unpickling the result, on the loop thread, for one offloaded call."""


def quadratic(at_512_s: float = 0.110) -> Costs:
    """An O(n^2) kernel with a small result (``cluster_observations``-like): 110 ms inline at n=512."""
    a = at_512_s / 512**2
    return Costs(lambda n: a * n * n, lambda n: 1.1 * a * n * n + 0.2e-3, lambda n: 0.15e-3 + 0.4e-6 * n)


def steady_pass(
    sizes: Sequence[int],
    threshold: int | None,
    costs: Costs,
    *,
    warmup: int,
    callers: int = 4,
    workers: int = 2,
    cores: int = 2,
) -> tuple[float, float]:
    """(whole-run makespan, steady pass) of one run of the ring ``sizes``, the same definitions as ``_workload``:
    the pass runs from taking call ``warmup`` to taking call ``len(sizes) + warmup``."""
    count = len(sizes)
    total = count + warmup
    taken, marks, now = 0, [], 0.0
    loop_queue: list[list] = []  # [remaining s, caller, kind, n]
    pool_queue: list[tuple[int, int]] = []
    running: list[list] = []  # [remaining s, caller, n]
    current: list | None = None

    def take(caller: int) -> bool:
        nonlocal taken
        index, taken = taken, taken + 1
        if warmup and index in (warmup, total):
            marks.append(now)
        if index >= total:
            return False
        n = sizes[index % count]
        if threshold is not None and n >= threshold:
            loop_queue.append([costs.loop_side(n) / 2, caller, "pickle", n])
        else:
            loop_queue.append([costs.inline(n), caller, "inline", n])
        return True

    active = sum(take(c) for c in range(callers))
    while active:
        if current is None and loop_queue:
            current = loop_queue.pop(0)
        while len(running) < workers and pool_queue:
            n, caller = pool_queue.pop(0)
            running.append([costs.worker(n), caller, n])
        busy = (current is not None) + len(running)
        rate = min(1.0, cores / busy)
        step = min([r[0] for r in running] + ([current[0]] if current else [])) / rate
        now += step
        for r in running:
            r[0] -= step * rate
        if current is not None:
            current[0] -= step * rate
        for r in [r for r in running if r[0] <= 1e-12]:
            running.remove(r)
            loop_queue.append([costs.loop_side(r[2]) / 2, r[1], "unpickle", r[2]])
        if current is not None and current[0] <= 1e-12:
            _, caller, kind, n = current
            current = None
            if kind == "pickle":
                pool_queue.append((n, caller))
            elif not take(caller):
                active -= 1
    return now, (marks[1] - marks[0]) if len(marks) == 2 else float("nan")


def shuffled_orders(ring: Sequence[int], reps: int, seed: int) -> list[list[int]]:
    """``reps`` seeded orders of ``ring``; every threshold runs the same ones, so comparisons carry no order
    noise."""
    rng = random.Random(seed)
    orders = []
    for _ in range(reps):
        order = list(ring)
        rng.shuffle(order)
        orders.append(order)
    return orders


def relative_pass_times(
    count: int,
    warmup: int,
    thresholds: Sequence[int | None],
    *,
    costs: Costs | None = None,
    lo: float = 8,
    hi: float = 512,
    reps: int = 200,
    seed: int = 1,
) -> dict[int | None, tuple[float, float]]:
    """Per threshold: (mean steady-pass time per call relative to the best threshold's, spread of one pass
    relative to its mean), over ``reps`` shuffled orders of the ring."""
    costs = costs or quadratic()
    times: dict[int | None, list[float]] = {t: [] for t in thresholds}
    for order in shuffled_orders(mix_sizes(lo, hi, count), reps, seed):
        for t in thresholds:
            times[t].append(steady_pass(order, t, costs, warmup=warmup)[1] / count)
    means = {t: statistics.fmean(v) for t, v in times.items()}
    best = min(means.values())
    return {t: (means[t] / best, statistics.pstdev(v) / means[t]) for t, v in times.items()}


def linear(per_element_s: float, loop_per_element_s: float) -> Costs:
    """A linear kernel: ``per_element_s`` of compute per element; offloaded, the loop pays
    ``loop_per_element_s`` per element (unpickling the result) plus a fixed 0.15 ms, and the worker the
    compute plus 20% (pickling the result) plus 0.2 ms."""
    c, loop = per_element_s, loop_per_element_s
    return Costs(lambda n: c * n, lambda n: 1.2 * c * n + 0.2e-3, lambda n: 0.15e-3 + loop * n)


SLOWDOWN_THRESHOLDS: list[int | None] = [1000, 2000, 4000, 8000, 16000, 32000, 64000, None]


def slowdown_cost(loop_over_compute: float, *, slower: float = 2.0, reps: int = 3, seed: int = 3) -> dict[str, object]:
    """The static threshold best before a ``slower``-times slowdown, over a run half before and half after,
    against the best static threshold for the whole run (sizes log-uniform 1000-100000, a 200-call ring)."""
    c = 1e-6
    before, after = linear(c, loop_over_compute * c), linear(slower * c, loop_over_compute * c)
    orders = shuffled_orders(mix_sizes(1000, 100000, 200), reps, seed)
    totals: dict[int | None, tuple[float, float]] = {}
    for t in SLOWDOWN_THRESHOLDS:
        totals[t] = (
            sum(steady_pass(o, t, before, warmup=len(o))[1] for o in orders),
            sum(steady_pass(o, t, after, warmup=len(o))[1] for o in orders),
        )
    static = min(SLOWDOWN_THRESHOLDS, key=lambda t: totals[t][0])
    oracle = min(SLOWDOWN_THRESHOLDS, key=lambda t: sum(totals[t]))
    return {
        "static": static,
        "after": min(SLOWDOWN_THRESHOLDS, key=lambda t: totals[t][1]),
        "oracle": oracle,
        "loss": sum(totals[static]) / sum(totals[oracle]),
    }


THRESHOLDS: list[int | None] = [8, 64, 128, 256, 362, None]
SETUPS = [
    (400, 400, "long stream (the truth)"),
    (24, 8, "calibration through campaign 9: 2 warm-up takes per caller"),
    (24, 24, "calibration: 6 takes per caller, one whole pass of a 24-call ring"),
    (45, 45, "campaigns 10-11 on a 45-call ring: one whole pass"),
    (45, 24, "calibration now on a 45-call ring: 6 takes per caller"),
    (64, 64, "campaigns 10-11 on a 64-call ring: one whole pass"),
    (64, 24, "calibration now on a 64-call ring: 6 takes per caller"),
    (32, 8, "the benchmark's steady column"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args(argv)
    names = ["always" if t == 8 else "never" if t is None else f"T={t}" for t in THRESHOLDS]
    print("## 1. Warm-up of the steady pass\n")
    print("| ring + warm-up | " + " | ".join(names) + " | setup |")
    print("|---" * (len(names) + 2) + "|")
    for count, warmup, label in SETUPS:
        rel = relative_pass_times(count, warmup, THRESHOLDS, reps=1 if count >= 400 else args.reps)
        cells = " | ".join(f"{rel[t][0]:.3f} ±{rel[t][1]:.2f}" for t in THRESHOLDS)
        print(f"| {count} + {warmup} | {cells} | {label} |")
    print("\n## 2. What a 2x slowdown can cost a static threshold on 2 cores\n")
    print(
        "| loop cost of offloading / compute, per element | best before | best after | best for the whole run "
        "| static (best before) / oracle |"
    )
    print("|---|---|---|---|---|")
    for ratio in (0.6, 0.8, 1.0, 1.2, 1.5, 2.0):
        r = slowdown_cost(ratio)
        name = {t: ("never" if t is None else str(t)) for t in SLOWDOWN_THRESHOLDS}
        print(f"| {ratio} | {name[r['static']]} | {name[r['after']]} | {name[r['oracle']]} | {r['loss']:.3f} |")


if __name__ == "__main__":
    main()
