"""The threshold grid (pure): thresholds live on a half-octave grid (``round(2 ** (k / 2))``), so reruns that
agree up to noise produce the same numbers, and neighbouring grid points are 1.41x apart.

Shared by the choice (:mod:`_choice`), the candidates proposed (:mod:`_proposals`) and the phases that measure
them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

GRID_RATIO = 2**0.5
"""Thresholds are snapped to powers of this ratio (rounded to integers)."""

NEVER = math.inf
"""The order key of the threshold ``None`` (never offload)."""


def order_key(threshold: int | None) -> float:
    """Thresholds in offload order: 0 (always) first, ``None`` (never) last."""
    return NEVER if threshold is None else float(threshold)


def snap(n: float) -> int:
    """The half-octave grid point nearest to ``n`` in log scale (``n >= 1``; smaller sizes snap to 1)."""
    if n <= 1:
        return 1
    return grid_point(round(2 * math.log2(n)))


def grid_point(k: int) -> int:
    """The ``k``-th grid point: ``round(2 ** (k / 2))``."""
    return max(1, round(GRID_RATIO ** max(0, k)))


def grid_index(n: float) -> int:
    return 0 if n <= 1 else round(2 * math.log2(n))


def grid_above(n: float) -> int:
    """The smallest grid point strictly above ``n``."""
    k = max(0, grid_index(n) - 1)
    while grid_point(k) <= n:
        k += 1
    return grid_point(k)


def grid_below(n: float) -> int:
    """The largest grid point strictly below ``n`` (1 when nothing is)."""
    k = grid_index(n) + 1
    while k > 0 and grid_point(k) >= n:
        k -= 1
    return grid_point(k)


def snap_down(n: float) -> int:
    """The largest grid point ``<= n`` (0 below 1): a budget cap must never move up."""
    if n < 1:
        return 0
    k = grid_index(n) + 1
    while grid_point(k) > n:
        k -= 1
    return grid_point(k)


def offload_from(sorted_sizes: Sequence[int], threshold: int | None) -> int:
    """Index of the first call a threshold offloads in a sorted stream of sizes."""
    return len(sorted_sizes) if threshold is None else bisect.bisect_left(sorted_sizes, threshold)
