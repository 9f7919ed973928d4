"""O(n^2) clustering kernels: compare every pair, union the similar ones, label the components.

These are the expensive, CPU-bound shape offloading exists for: pure Python, the GIL held throughout,
cost quadratic in the input while the arguments and result grow only linearly. There is deliberately
no blocking or early exit: every one of the n(n-1)/2 pairs is scored in full, so the cost depends on
``n`` and not on how the data happens to cluster, which keeps the calibration curve clean.

Features are extracted once per record (O(n)): sets become bitmasks over a vocabulary built from the
input, so the pair loop is integer AND/popcount and a little float arithmetic. What remains is the
honest per-pair cost of a weighted similarity in pure Python.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

from offload_tuner import kernel

from .records import Identity, Observation, make_identities, make_observations

T = TypeVar("T")


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving and union by size: near-O(1) per operation."""

    __slots__ = ("parent", "size")

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # halve the path as we walk it
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra  # the smaller tree hangs under the larger: trees stay shallow
        self.size[ra] += self.size[rb]

    def labels(self) -> tuple[int, ...]:
        """One label per element, numbered 0, 1, ... in order of first appearance.

        Canonical labels make results comparable across runs and processes whatever the root choice.
        """
        numbering: dict[int, int] = {}
        return tuple(numbering.setdefault(self.find(i), len(numbering)) for i in range(len(self.parent)))


def pairwise_clusters(features: Sequence[T], similarity: Callable[[T, T], float], threshold: float) -> tuple[int, ...]:
    """Union every pair with ``similarity >= threshold``; canonical label per item."""
    sets = UnionFind(len(features))
    for i, a in enumerate(features):
        for j in range(i + 1, len(features)):
            if similarity(a, features[j]) >= threshold:
                sets.union(i, j)
    return sets.labels()


def _mask(items: Iterable[Hashable], vocabulary: dict[Hashable, int]) -> int:
    """A set as a bitmask over ``vocabulary`` (grown as new items appear).

    The overlap of two bitmasks is an AND and a popcount on small ints, about twice as cheap as
    intersecting two frozensets (which builds a new set for every pair). Done once per record.
    """
    bits = 0
    for item in items:
        bits |= 1 << vocabulary.setdefault(item, len(vocabulary))
    return bits


# ---------------------------------------------------------------------------------------- observations

W_PORTS, W_USER_AGENTS, W_HEADERS, W_SUBNET, W_ASN, W_JA3 = 0.30, 0.20, 0.20, 0.10, 0.10, 0.10
"""How much each feature counts. Optional fields (asn, tls_ja3) only count when both records have them:
unknown is not a mismatch, so their weight is left out of the total instead."""

_ALWAYS_OBS = W_PORTS + W_USER_AGENTS + W_HEADERS + W_SUBNET

# (ports, |ports|, user agents, |user agents|, header pairs, |header pairs|, subnet, asn, ja3)
_ObsFeatures = tuple[int, int, int, int, int, int, str, int | None, str | None]


def _observation_features(observations: Iterable[Observation]) -> list[_ObsFeatures]:
    ports: dict[Hashable, int] = {}
    agents: dict[Hashable, int] = {}
    headers: dict[Hashable, int] = {}
    features = []
    for o in observations:
        p, u, h = _mask(o.ports, ports), _mask(o.user_agents, agents), _mask(o.headers, headers)
        features.append((p, p.bit_count(), u, u.bit_count(), h, h.bit_count(), o.subnet, o.asn, o.tls_ja3))
    return features


def _observation_similarity(a: _ObsFeatures, b: _ObsFeatures) -> float:
    a_ports, a_np, a_agents, a_na, a_headers, a_nh, a_subnet, a_asn, a_ja3 = a
    b_ports, b_np, b_agents, b_na, b_headers, b_nh, b_subnet, b_asn, b_ja3 = b
    # Jaccard index of each pair of sets, inlined: this runs n^2/2 times and a helper call per set
    # would be a third of the cost. Two empty sets say nothing, so they score 0, not a perfect match.
    shared = (a_ports & b_ports).bit_count()
    union = a_np + b_np - shared
    score = W_PORTS * shared / union if union else 0.0
    shared = (a_agents & b_agents).bit_count()
    union = a_na + b_na - shared
    if union:
        score += W_USER_AGENTS * shared / union
    shared = (a_headers & b_headers).bit_count()  # overlap of (name, value) pairs: the mapping overlap
    union = a_nh + b_nh - shared
    if union:
        score += W_HEADERS * shared / union
    if a_subnet == b_subnet:
        score += W_SUBNET
    total = _ALWAYS_OBS
    if a_asn is not None and b_asn is not None:
        score += W_ASN * (a_asn == b_asn)
        total += W_ASN
    if a_ja3 is not None and b_ja3 is not None:
        score += W_JA3 * (a_ja3 == b_ja3)
        total += W_JA3
    return score / total


def observation_similarity(a: Observation, b: Observation) -> float:
    """Weighted similarity in [0, 1] of two observations (what the clusterer thresholds), for inspection."""
    fa, fb = _observation_features((a, b))
    return _observation_similarity(fa, fb)


def _sample_observations(n: int) -> tuple[list[Observation]]:
    return (make_observations(n, seed=n * 7919 + 11),)


@kernel(sample=_sample_observations)
def cluster_observations(observations: Sequence[Observation], threshold: float = 0.5) -> tuple[int, ...]:
    """Group observations that look like the same scanning operation; one label per record.

    Labels are numbered by first appearance, so the result is a small tuple of ints that is equal
    wherever it is computed.
    """
    return pairwise_clusters(_observation_features(observations), _observation_similarity, threshold)


# ------------------------------------------------------------------------------------------ identities

W_INFRASTRUCTURE, W_TOOLS, W_FEATURES, W_FIRST_SEEN = 0.35, 0.25, 0.30, 0.10
"""Shared infrastructure is the strongest tie; ``first_seen`` only counts when both reports date it."""

FIRST_SEEN_WINDOW_DAYS = 90
"""Reports first seen this close together count as the same period of activity."""

_ALWAYS_ID = W_INFRASTRUCTURE + W_TOOLS + W_FEATURES

# (infrastructure, |infrastructure|, tools, |tools|, feature weights, sum of weights, first-seen day)
_IdFeatures = tuple[int, int, int, int, dict[str, float], float, int | None]


def _identity_features(identities: Iterable[Identity]) -> list[_IdFeatures]:
    hosts: dict[Hashable, int] = {}
    tools: dict[Hashable, int] = {}
    features = []
    for x in identities:
        i, t = _mask(x.infrastructure, hosts), _mask(x.tools, tools)
        weights = x.feature_map()
        day = x.first_seen.toordinal() if x.first_seen is not None else None
        features.append((i, i.bit_count(), t, t.bit_count(), weights, sum(weights.values()), day))
    return features


def _weighted_overlap(a: dict[str, float], a_total: float, b: dict[str, float], b_total: float) -> float:
    """Weighted Jaccard: sum of min over sum of max. Absent keys weigh 0, so sum(max) = sum(a) + sum(b) - sum(min).

    Summed in ``a``'s (sorted) key order, not a set's: set order varies with the hash seed, and a float
    sum in another order can differ in the last bit, which could flip a pair at the threshold in a
    worker process and make its result differ from the caller's.
    """
    shared = 0.0
    for key, weight in a.items():
        other = b.get(key)
        if other is not None:
            shared += weight if weight < other else other
    union = a_total + b_total - shared
    return shared / union if union > 0 else 0.0


def _identity_similarity(a: _IdFeatures, b: _IdFeatures) -> float:
    a_hosts, a_nh, a_tools, a_nt, a_weights, a_sum, a_day = a
    b_hosts, b_nh, b_tools, b_nt, b_weights, b_sum, b_day = b
    shared = (a_hosts & b_hosts).bit_count()  # Jaccard of the sets, inlined as in _observation_similarity
    union = a_nh + b_nh - shared
    score = W_INFRASTRUCTURE * shared / union if union else 0.0
    shared = (a_tools & b_tools).bit_count()
    union = a_nt + b_nt - shared
    if union:
        score += W_TOOLS * shared / union
    score += W_FEATURES * _weighted_overlap(a_weights, a_sum, b_weights, b_sum)
    total = _ALWAYS_ID
    if a_day is not None and b_day is not None:
        score += W_FIRST_SEEN * (abs(a_day - b_day) <= FIRST_SEEN_WINDOW_DAYS)
        total += W_FIRST_SEEN
    return score / total


def identity_similarity(a: Identity, b: Identity) -> float:
    """Weighted similarity in [0, 1] of two identities (what the clusterer thresholds), for inspection."""
    fa, fb = _identity_features((a, b))
    return _identity_similarity(fa, fb)


def _sample_identities(n: int) -> tuple[list[Identity]]:
    return (make_identities(n, seed=n * 7919 + 13),)


@kernel(sample=_sample_identities)
def cluster_campaigns(identities: Sequence[Identity], threshold: float = 0.45) -> tuple[int, ...]:
    """Group per-report identities that are the same actor under different names; one label per record.

    Heavier per pair than :func:`cluster_observations` (a weighted overlap over a dict of features on
    top of the set overlaps): the same quadratic shape with a larger constant.
    """
    return pairwise_clusters(_identity_features(identities), _identity_similarity, threshold)
