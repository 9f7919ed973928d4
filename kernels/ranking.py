"""An O(n log n) kernel over plain tuples: sort latency samples, summarise the slowest endpoints.

The middle of the cost range: cheaper per element than the clusterers, dearer than a linear scan, and
the arguments (a list of 2-tuples) pickle quickly while the result is a handful of tuples. Whether
offloading pays off depends on ``n`` more delicately here than for the quadratic kernels.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter

from offload_tuner import kernel

ENDPOINTS = 48
"""Endpoints in the sample data: more than ``k`` so the ranking has something to discard."""


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence: always an observed value.

    Latency SLOs are stated this way ("99% of requests took at most x"), and unlike interpolation it
    never reports a latency no request had.
    """
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _sample_rows(n: int) -> tuple[list[tuple[int, float]]]:
    """``n`` (endpoint_id, latency_ms) rows: log-normal latencies, each endpoint with its own median."""
    rng = random.Random(n * 7919 + 17)
    medians = [rng.uniform(2.0, 120.0) for _ in range(ENDPOINTS)]
    rows = []
    for _ in range(n):
        endpoint = rng.randrange(ENDPOINTS)
        rows.append((endpoint, round(rng.lognormvariate(math.log(medians[endpoint]), 0.6), 3)))
    return (rows,)


@kernel(sample=_sample_rows)
def rank_latencies(rows: Sequence[tuple[int, float]], k: int = 5) -> tuple[tuple[int, int, float, float], ...]:
    """The ``k`` endpoints with the worst p99 latency, as ``(endpoint_id, count, p50, p99)``, worst first.

    One sort by ``(endpoint, latency)`` groups each endpoint's samples contiguously and in ascending
    order, so both percentiles are index lookups. Ties on p99 go to the lower endpoint id, so the
    result is deterministic.
    """
    summaries: list[tuple[int, int, float, float]] = []
    for endpoint, group in groupby(sorted(rows), key=itemgetter(0)):
        latencies = [latency for _, latency in group]
        summaries.append((endpoint, len(latencies), percentile(latencies, 50), percentile(latencies, 99)))
    summaries.sort(key=lambda s: (-s[3], s[0]))
    return tuple(summaries[:k])
