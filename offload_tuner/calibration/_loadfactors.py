"""Load factors (pure): :func:`fit_load_factors` scales the isolated model's inline, loop-side and worker-side
terms so that its predicted makespans match the ones measured under load (least squares in log space, gently
pulled towards 1 so a term no candidate exercises stays as measured in isolation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from offload_tuner.runtime._policy import LoadFactors, PolicyKnobs, Prediction, makespan, partition_sums

FACTOR_RANGE = (0.5, 5.0)
"""Load factors are searched in this range: under load, costs do not shrink by 2x or grow by 5x."""
FACTOR_PRIOR = 0.05
"""Weight of ``log(factor)**2`` in the fit: without evidence a factor stays near 1."""


def fit_load_factors(
    predictions: Sequence[Prediction],
    measured: Sequence[tuple[int, float]],
    knobs: PolicyKnobs,
) -> LoadFactors:
    """Factors that make the isolated model's makespans match measured ones under load.

    ``predictions`` are per call of the measured stream, sorted by size, from the isolated model (all
    factors 1); ``measured`` pairs each candidate's ``offload_from`` index with its median makespan.
    A coarse-to-fine grid search over the three factors minimises the squared log error plus
    ``FACTOR_PRIOR * sum(log(f)**2)``.
    """
    if not measured:
        return LoadFactors()
    parts = [partition_sums(predictions, k) for k, _ in measured]
    targets = [math.log(m) for _, m in measured]

    def loss(f: tuple[float, float, float]) -> float:
        total = FACTOR_PRIOR * sum(math.log(x) ** 2 for x in f)
        for part, target in zip(parts, targets):
            predicted = _scaled_makespan(part, f, knobs)
            total += (math.log(predicted) - target) ** 2 if predicted > 0 else 1e9
        return total

    lo, hi = (math.log(x) for x in FACTOR_RANGE)
    best = (1.0, 1.0, 1.0)
    best_loss = loss(best)
    centre, half_width = [0.0, 0.0, 0.0], (hi - lo) / 2
    steps = 10
    for _ in range(4):  # each pass: an 11^3 grid around the best so far, 4x narrower than the last
        axes = [
            sorted({min(hi, max(lo, c + half_width * (i / steps * 2 - 1))) for i in range(steps + 1)}) for c in centre
        ]
        for a in axes[0]:
            for b in axes[1]:
                for c in axes[2]:
                    f = (math.exp(a), math.exp(b), math.exp(c))
                    value = loss(f)
                    if value < best_loss - 1e-12:
                        best, best_loss = f, value
        centre = [math.log(x) for x in best]
        half_width /= 4
    return LoadFactors(*(round(x, 4) for x in best))


def predicted_makespans(
    predictions: Sequence[Prediction], indices: Sequence[int], knobs: PolicyKnobs, factors: LoadFactors
) -> list[float]:
    """The model's makespan for each ``offload_from`` index, with ``factors`` applied."""
    f = (factors.inline, factors.offload_loop, factors.offload_worker)
    return [_scaled_makespan(partition_sums(predictions, k), f, knobs) for k in indices]


def _scaled_makespan(
    part: tuple[float, float, float, float], f: tuple[float, float, float], knobs: PolicyKnobs
) -> float:
    inline, loop, worker, latency = part
    return makespan(f[0] * inline + f[1] * loop, f[2] * worker, f[0] * inline + f[2] * latency, knobs)
