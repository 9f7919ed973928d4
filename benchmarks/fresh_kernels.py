"""Kernels the reruns campaign measures that the bundled set (``kernels/``) lacks: written for issue 29's acceptance.

Two cost shapes the bundled kernels do not cover with these constants and mixes, where a short calibration phase
was seen to swing from rerun to rerun and to pick a threshold whose long-stream p99 loop lag broke the budget:

=====================================  ======================================================================
kernel                                 cost shape
=====================================  ======================================================================
``fresh_kernels.match_listings``       O(n^2) pure Python over small records (7-field tuples), wide mix
                                       (16-700 in ``fresh_plan.json``); args O(n), result O(n) ints
``fresh_kernels.settle_ledger``        O(k^3) pure Python from tiny arguments (two ints): a k x k matrix
                                       built from a seed, squared; result k ints
=====================================  ======================================================================

Both are pure, module-level and deterministic (equal arguments give equal results). Their plan is
``benchmarks/fresh_plan.json``; ``python -m benchmarks.reruns --plan benchmarks/fresh_plan.json`` runs the
campaign on them. Nothing in the library knows them: they stand for a user's kernels.
"""

from __future__ import annotations

import random

from offload_tuner import kernel

Listing = tuple[int, int, int, float, float, int, str]
"""One small record: (id, category, seller, price, rating, tag bits, region)."""
REGIONS = ("eu-west", "eu-north", "us-east", "us-west", "ap-south", "sa-east")


def _listings(n: int) -> tuple[tuple[Listing, ...]]:
    """``n`` seeded listings, a few near-duplicate groups among unrelated ones."""
    rng = random.Random(n * 7919 + 13)
    out: list[Listing] = []
    for i in range(n):
        base = rng.randrange(max(1, n // 6))
        tags = 0
        for _ in range(4):
            tags |= 1 << rng.randrange(24)
        out.append(
            (
                i,
                base % 9,
                base % 17 + rng.randrange(2),
                round(10.0 + base * 3.5 + rng.random() * 4, 2),
                round(rng.uniform(2.5, 5.0), 1),
                tags,
                REGIONS[(base + rng.randrange(2)) % len(REGIONS)],
            )
        )
    return (tuple(out),)


def _listings_size(listings: tuple[Listing, ...]) -> int:
    return len(listings)


@kernel(size=_listings_size, sample=_listings)
def match_listings(listings: tuple[Listing, ...]) -> list[int]:
    """For each listing, how many others look like the same offer: every pair scored in full (no blocking), on
    category, seller, price, rating, shared tags and region. O(n^2), pure Python, the GIL held throughout."""
    counts = [0] * len(listings)
    for i, a in enumerate(listings):
        _, cat_a, seller_a, price_a, rating_a, tags_a, region_a = a
        for j in range(i + 1, len(listings)):
            _, cat_b, seller_b, price_b, rating_b, tags_b, region_b = listings[j]
            score = 0.3 if cat_a == cat_b else 0.0
            score += 0.2 if seller_a == seller_b else 0.0
            gap = abs(price_a - price_b) / (price_a + price_b)
            score += 0.25 * (1.0 - min(1.0, 8.0 * gap))
            score += 0.05 * (1.0 - abs(rating_a - rating_b) / 2.5)
            score += 0.15 * (tags_a & tags_b).bit_count() / 4
            score += 0.05 if region_a == region_b else 0.0
            if score >= 0.7:
                counts[i] += 1
                counts[j] += 1
    return counts


def _ledger_sample(k: int) -> tuple[int, int]:
    return k, k * 31 + 5


def _ledger_size(k: int, seed: int) -> int:
    return k


@kernel(size=_ledger_size, sample=_ledger_sample)
def settle_ledger(k: int, seed: int) -> list[int]:
    """Two-hop netting between ``k`` accounts: the transfer matrix (built from ``seed``) squared, each account's
    row sum. Two ints in, k ints out: pickling is negligible, the cube of ``k`` is all of the cost."""
    rng = random.Random(seed)
    matrix = [[rng.randrange(-50, 51) for _ in range(k)] for _ in range(k)]
    columns = list(zip(*matrix))
    out = []
    for row in matrix:
        total = 0
        for column in columns:
            acc = 0
            for x, y in zip(row, column):
                acc += x * y
            total += acc
        out.append(total % 1_000_003)
    return out
