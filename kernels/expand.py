"""A small-input, large-result kernel: two ints in, ``n`` rows out.

Expanding a compact recurring schedule into concrete occurrences is cheap arithmetic per row, but the
result is a list of ``n`` tuples that a worker would have to pickle and the caller unpickle. That
transport is what dominates, so the size that matters is the *result's*: ``size(seed, n) = n``,
not the length of any argument.
"""

from __future__ import annotations

import random

from offload_tuner import kernel

WORKERS = tuple(f"worker-{i:02d}" for i in range(24))
"""The pool the schedule assigns occurrences to."""

Occurrence = tuple[int, int, float, str]
"""``(index, start_minute, cpu_weight, worker)``."""


def _size(seed: int, n: int) -> int:
    return n


def _sample(n: int) -> tuple[int, int]:
    return (n * 7919 + 23, n)


@kernel(size=_size, sample=_sample)
def expand_schedule(seed: int, n: int) -> list[Occurrence]:
    """The first ``n`` occurrences of the recurring job described by ``seed``, in start order.

    The seed fixes the job's period, start, and small tables of start jitter and CPU weights, so the
    per-row work is a few index lookups and integer adds: the kernel is as cheap as its result is big.
    Equal arguments give an equal result in any process.
    """
    rng = random.Random(seed)
    first = rng.randrange(0, 24 * 60)  # minutes after the schedule's epoch
    period = rng.choice((5, 10, 15, 30, 60))
    jitter = [rng.randrange(0, period) for _ in range(61)]  # prime lengths: patterns do not line up
    weights = [round(rng.uniform(0.25, 4.0), 2) for _ in range(17)]
    stride = rng.choice((5, 7, 11, 13))  # coprime to len(WORKERS): every worker gets a turn
    return [
        (i, first + i * period + jitter[i % 61], weights[i % 17], WORKERS[i * stride % len(WORKERS)]) for i in range(n)
    ]
