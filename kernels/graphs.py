"""Tiny arguments, heavy compute: all-pairs shortest paths on a small weighted graph, O(k^3).

A service that answers "how far apart can two nodes of this topology get" hands over a few hundred
edges and gets back one number per node, yet the pure-Python Floyd-Warshall pass behind it grows as the
cube of the node count. Pickling is negligible at every size, so the decision is all compute against the pool's
fixed costs, and large calls cross asyncio's 100 ms slow-callback line.
"""

from __future__ import annotations

import random

from offload_tuner import kernel

Edge = tuple[int, int, int]
"""``(u, v, weight)`` of an undirected edge."""
EDGES_PER_NODE = 3


def _sample(nodes: int) -> tuple[int, tuple[Edge, ...]]:
    """A seeded connected graph: a random spanning tree plus ``EDGES_PER_NODE - 1`` extra edges per node."""
    rng = random.Random(nodes * 104729 + 7)
    edges = [(rng.randrange(i), i, rng.randint(1, 20)) for i in range(1, nodes)]
    edges += [
        (rng.randrange(nodes), rng.randrange(nodes), rng.randint(1, 20)) for _ in range(nodes * (EDGES_PER_NODE - 1))
    ]
    return nodes, tuple(edges)


def _size(nodes: int, edges: tuple[Edge, ...]) -> int:
    return nodes


@kernel(size=_size, sample=_sample)
def graph_eccentricities(nodes: int, edges: tuple[Edge, ...]) -> list[int]:
    """Each node's eccentricity (its largest shortest-path distance to any node) by Floyd-Warshall.

    Unreachable pairs are ignored (``-1`` for an isolated node). Equal arguments give an equal result.
    """
    inf = float("inf")
    dist = [[inf] * nodes for _ in range(nodes)]
    for i in range(nodes):
        dist[i][i] = 0
    for u, v, w in edges:
        if w < dist[u][v]:
            dist[u][v] = dist[v][u] = w
    for m in range(nodes):
        via = dist[m]
        for i in range(nodes):
            row = dist[i]
            to_m = row[m]
            if to_m == inf:
                continue
            for j in range(nodes):
                candidate = to_m + via[j]
                if candidate < row[j]:
                    row[j] = candidate
    out = []
    for row in dist:
        reachable = [d for d in row if d != inf]
        out.append(int(max(reachable)) if len(reachable) > 1 else -1)
    return out
