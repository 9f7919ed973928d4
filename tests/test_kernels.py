"""The bundled kernels: registration, deterministic samples, picklability, and known answers."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import itertools
import os
import pickle
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import offload_tuner_kernels
from offload_tuner.runtime._registry import KernelSpec, registered, spec_for
from offload_tuner_kernels import (
    bytes_by_status,
    cluster_campaigns,
    cluster_observations,
    detect_spikes,
    expand_schedule,
    graph_eccentricities,
    rank_latencies,
    smooth_frames,
)
from offload_tuner_kernels.clustering import UnionFind, identity_similarity, observation_similarity
from offload_tuner_kernels.expand import WORKERS
from offload_tuner_kernels.ranking import percentile
from offload_tuner_kernels.records import Identity, Observation

EXPECTED_KEYS = {
    cluster_observations: "offload_tuner_kernels.clustering:cluster_observations",
    cluster_campaigns: "offload_tuner_kernels.clustering:cluster_campaigns",
    rank_latencies: "offload_tuner_kernels.ranking:rank_latencies",
    bytes_by_status: "offload_tuner_kernels.rows:bytes_by_status",
    expand_schedule: "offload_tuner_kernels.expand:expand_schedule",
    detect_spikes: "offload_tuner_kernels.numeric:detect_spikes",
    graph_eccentricities: "offload_tuner_kernels.graphs:graph_eccentricities",
    smooth_frames: "offload_tuner_kernels.frames:smooth_frames",
}
KERNELS = list(EXPECTED_KEYS)
SIZES = (0, 1, 17, 100)
ROOT = Path(__file__).resolve().parent.parent

by_name = pytest.mark.parametrize("fn", KERNELS, ids=lambda fn: fn.__name__)


def spec(fn: Callable[..., Any]) -> KernelSpec:
    found = spec_for(fn)
    assert found is not None, f"{fn.__name__} is not registered"
    return found


def same(a: Any, b: Any) -> bool:
    """Equality that also holds for numpy arrays (same dtype and values), nested in tuples/lists/dicts."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# ------------------------------------------------------------------------------------ every kernel


def test_import_registers_every_kernel_under_its_key() -> None:
    assert set(offload_tuner_kernels.__all__) == {fn.__name__ for fn in KERNELS}
    for fn, key in EXPECTED_KEYS.items():
        assert spec(fn).key == key
        assert spec(fn).sample is not None
    bundled = {s.key for s in registered() if s.fn.__module__.startswith("offload_tuner_kernels.")}
    assert bundled == set(EXPECTED_KEYS.values())


@by_name
@pytest.mark.parametrize("n", SIZES)
def test_sample_is_deterministic_and_has_size_n(fn: Callable[..., Any], n: int) -> None:
    s = spec(fn)
    args = s.sample(n)
    assert isinstance(args, tuple)
    assert same(args, s.sample(n))
    assert s.size(*args) == n
    assert s.checked_size(args) == n


@by_name
def test_samples_differ_between_sizes(fn: Callable[..., Any]) -> None:
    s = spec(fn)
    assert not same(s.sample(16), s.sample(17))


@by_name
@pytest.mark.parametrize("n", SIZES)
def test_runs_on_its_sample_without_mutating_it(fn: Callable[..., Any], n: int) -> None:
    args = spec(fn).sample(n)
    before = copy.deepcopy(args)
    first = fn(*args)
    assert same(args, before)
    assert same(fn(*args), first)


@by_name
def test_kernel_pickles_by_reference(fn: Callable[..., Any]) -> None:
    assert pickle.loads(pickle.dumps(fn)) is fn
    assert pickle.loads(pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)) is fn


@by_name
@pytest.mark.parametrize("n", (0, 17, 100))
def test_arguments_and_result_round_trip_through_pickle(fn: Callable[..., Any], n: int) -> None:
    args = spec(fn).sample(n)
    result = fn(*args)
    for protocol in (pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        assert same(pickle.loads(pickle.dumps(args, protocol=protocol)), args)
        assert same(pickle.loads(pickle.dumps(result, protocol=protocol)), result)


# ------------------------------------------------------------------------------------ records


def test_records_are_frozen_normalised_and_hashable() -> None:
    o = Observation("10.0.0.1", {443, 80}, ["curl/8.4.0"], {"b": "2", "a": "1"}, asn=64500)
    assert o.ports == frozenset({80, 443})
    assert o.user_agents == frozenset({"curl/8.4.0"})
    assert o.headers == (("a", "1"), ("b", "2"))
    assert o.header_map() == {"a": "1", "b": "2"}
    assert o.subnet == "10.0.0"
    assert hash(o) == hash(Observation("10.0.0.1", {80, 443}, {"curl/8.4.0"}, [("b", "2"), ("a", "1")], 64500))
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.asn = 1  # type: ignore[misc]
    i = Identity("amber-lynx-01", {"1.1.1.1"}, {"sliver"}, {"ttp:T1059": 0.5}, dt.date(2023, 1, 1))
    assert i.feature_map() == {"ttp:T1059": 0.5}
    assert pickle.loads(pickle.dumps(i)) == i and hash(i) == hash(pickle.loads(pickle.dumps(i)))


# ------------------------------------------------------------------------------------ clustering


def test_union_find_merges_and_labels_by_first_appearance() -> None:
    sets = UnionFind(6)
    sets.union(4, 5)
    sets.union(1, 4)
    sets.union(3, 0)
    assert sets.find(5) == sets.find(1)
    assert sets.labels() == (0, 1, 2, 0, 1, 1)
    assert UnionFind(0).labels() == ()


def obs(
    ip: str, ports: set[int], agents: set[str], headers: dict[str, str], asn: int | None = None, ja3: str | None = None
) -> Observation:
    return Observation(ip, frozenset(ports), frozenset(agents), tuple(headers.items()), asn, ja3)


# A ~ B (ports, agents, asn) and B ~ C (headers, subnet, ja3, some ports/agents), but A !~ C.
A = obs("10.0.1.5", {22, 80}, {"curl/8.4.0"}, {"accept": "*/*"}, asn=100)
B = obs("10.0.2.5", {22, 80}, {"curl/8.4.0"}, {"accept": "text/html"}, asn=100, ja3="j1")
C = obs("10.0.2.9", {80, 443}, {"curl/8.4.0", "zgrab/0.x"}, {"accept": "text/html"}, asn=300, ja3="j1")
D = obs("192.168.7.7", {3389}, {"masscan/1.3"}, {"connection": "close"}, asn=999, ja3="j9")


def test_observation_similarity_by_hand() -> None:
    # ports 0.3*1 + agents 0.2*1 + headers 0 + subnet 0 + asn 0.1; ja3 unknown on A: total 0.9
    assert observation_similarity(A, B) == pytest.approx(0.6 / 0.9)
    # ports 0.3/3 + agents 0.2/2 + headers 0.2 + subnet 0.1 + asn 0 + ja3 0.1; total 1.0
    assert observation_similarity(B, C) == pytest.approx(0.6)
    # ports 0.3/3 + agents 0.2/2, nothing else; ja3 unknown on A: total 0.9
    assert observation_similarity(A, C) == pytest.approx(0.2 / 0.9)
    assert observation_similarity(A, D) == 0.0
    assert observation_similarity(A, A) == pytest.approx(1.0)


def test_unknown_optional_fields_do_not_count_against_a_match() -> None:
    assert observation_similarity(A, dataclasses.replace(A, asn=None)) == pytest.approx(1.0)
    assert observation_similarity(A, dataclasses.replace(A, asn=200)) == pytest.approx(0.8 / 0.9)


def test_cluster_observations_known_answers() -> None:
    assert cluster_observations([]) == ()
    assert cluster_observations([A]) == (0,)
    assert cluster_observations([A, A]) == (0, 0)  # identical records
    assert cluster_observations([A, D]) == (0, 1)  # nothing in common
    assert cluster_observations([A, C, B]) == (0, 0, 0)  # A-C only through B: transitivity
    assert cluster_observations([A, C]) == (0, 1)
    assert cluster_observations([D, A, B, D, C]) == (0, 1, 1, 0, 1)  # labels by first appearance
    assert cluster_observations([A, B, C], threshold=0.65) == (0, 0, 1)  # B-C (0.6) no longer joins
    assert cluster_observations([A, A], threshold=1.0) == (0, 0)  # similarity == threshold (exactly 1.0) joins


P = Identity("amber-lynx-01", {"1.1.1.1", "2.2.2.2"}, {"sliver", "rclone"}, {"ttp:a": 1.0}, dt.date(2023, 1, 1))
Q = Identity("lynx-amber", {"1.1.1.1", "2.2.2.2"}, {"sliver", "rclone"}, {"ttp:b": 1.0}, None)
R = Identity("grey-owl", {"9.9.9.9"}, {"sliver", "rclone"}, {"ttp:b": 1.0}, dt.date(2024, 6, 1))
S = Identity("iron-wolf", {"8.8.8.8"}, {"psexec"}, {"lang:zh": 0.7}, dt.date(2022, 3, 3))


def test_identity_similarity_by_hand() -> None:
    assert identity_similarity(P, Q) == pytest.approx(0.60 / 0.9)  # infra + tools; Q undated
    assert identity_similarity(Q, R) == pytest.approx(0.55 / 0.9)  # tools + features; Q undated
    assert identity_similarity(P, R) == pytest.approx(0.25)  # tools only; 517 days apart
    assert identity_similarity(P, S) == 0.0
    # weighted Jaccard of features: min-sum 0.5 over max-sum 1.0 + 1.0 + 0.5
    x = Identity("x", set(), set(), {"a": 0.5, "b": 1.0})
    y = Identity("y", set(), set(), {"a": 1.0, "c": 0.5})
    assert identity_similarity(x, y) == pytest.approx(0.3 * 0.2 / 0.9)
    near = dataclasses.replace(R, first_seen=dt.date(2023, 3, 1))  # 59 days after P
    assert identity_similarity(P, near) == pytest.approx(0.35)


def test_cluster_campaigns_known_answers() -> None:
    assert cluster_campaigns([]) == ()
    assert cluster_campaigns([P, P]) == (0, 0)
    assert cluster_campaigns([P, S]) == (0, 1)
    assert cluster_campaigns([P, R, Q]) == (0, 0, 0)  # P-R only through Q
    assert cluster_campaigns([P, R]) == (0, 1)
    assert cluster_campaigns([S, P, S, R, Q]) == (0, 1, 0, 1, 1)


@pytest.mark.parametrize("fn", (cluster_observations, cluster_campaigns), ids=lambda fn: fn.__name__)
def test_sample_data_has_real_clusters(fn: Callable[..., Any]) -> None:
    labels = fn(*spec(fn).sample(100))
    sizes = Counter(labels).values()
    assert 5 <= len(sizes) <= 60  # ~10 latent groups plus singleton noise, not one blob nor all apart
    assert max(sizes) >= 5


# ------------------------------------------------------------------------------------ ranking


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 50) == percentile([7.0], 99) == 7.0
    assert percentile([5.0, 7.0], 50) == 5.0 and percentile([5.0, 7.0], 99) == 7.0


def test_rank_latencies_by_hand() -> None:
    rows = [(1, 10.0), (2, 5.0), (1, 30.0), (1, 20.0), (2, 7.0), (3, 100.0)]
    assert rank_latencies(rows) == ((3, 1, 100.0, 100.0), (1, 3, 20.0, 30.0), (2, 2, 5.0, 7.0))
    assert rank_latencies(rows, k=2) == ((3, 1, 100.0, 100.0), (1, 3, 20.0, 30.0))
    assert rank_latencies([(9, 4.0), (2, 4.0)]) == ((2, 1, 4.0, 4.0), (9, 1, 4.0, 4.0))  # ties: lower id
    assert rank_latencies([]) == ()


def test_rank_latencies_result_stays_small() -> None:
    assert len(rank_latencies(*spec(rank_latencies).sample(2000))) == 5


# ------------------------------------------------------------------------------------ rows


def access(status: int, nbytes: int) -> dict[str, Any]:
    return {
        "ts": 0.0,
        "client": "10.0.0.1",
        "method": "GET",
        "path": "/",
        "status": status,
        "bytes": nbytes,
        "duration_ms": 1.0,
    }


def test_bytes_by_status_by_hand() -> None:
    rows = [access(404, 5), access(200, 100), access(500, 0), access(200, 50)]
    result = bytes_by_status(rows)
    assert result == {200: 150, 404: 5, 500: 0}
    assert list(result) == [200, 404, 500]
    assert bytes_by_status([]) == {}


def test_access_log_sample_rows_look_like_log_rows() -> None:
    (rows,) = spec(bytes_by_status).sample(50)
    assert all(len(row) == 7 for row in rows)
    assert sum(bytes_by_status(rows).values()) == sum(row["bytes"] for row in rows)


# ------------------------------------------------------------------------------------ expand


def test_expand_schedule_rows() -> None:
    rows = expand_schedule(42, 200)
    assert len(rows) == 200
    assert [r[0] for r in rows] == list(range(200))
    starts = [r[1] for r in rows]
    assert all(a < b for a, b in itertools.pairwise(starts))  # jitter < period: strictly in start order
    assert {r[3] for r in rows} == set(WORKERS)
    assert all(0.25 <= r[2] <= 4.0 for r in rows)
    assert expand_schedule(42, 50) == rows[:50]  # a longer expansion extends a shorter one
    assert expand_schedule(43, 50) != rows[:50]
    assert expand_schedule(42, 0) == []


# ------------------------------------------------------------------------------------ numeric


def test_detect_spikes_by_hand() -> None:
    flat_then_spike = np.array([1.0] * 8 + [10.0] + [1.0] * 3)
    # the windows after the spike contain it (spread ~3.9), so the 1.0s that follow are not flagged
    assert detect_spikes(flat_then_spike, window=4).tolist() == [8]
    # window [0, 2, 0, 2]: mean 1, std 1, so 5.5 is 4.5 sigma away and 4.5 only 3.5 sigma
    assert detect_spikes(np.array([0.0, 2.0, 0.0, 2.0, 5.5]), window=4).tolist() == [4]
    assert detect_spikes(np.array([0.0, 2.0, 0.0, 2.0, 4.5]), window=4).tolist() == []
    assert detect_spikes(np.array([0.0, 2.0, 0.0, 2.0, 5.5]), window=4, threshold=5.0).tolist() == []
    assert detect_spikes(np.array([0.0, 2.0, 0.0, 2.0, -3.5]), window=4).tolist() == [4]


def test_detect_spikes_edges() -> None:
    assert detect_spikes(np.full(100, 3.7), window=8).tolist() == []  # flat: rounding is not a spike
    assert detect_spikes(np.zeros(100), window=8).tolist() == []
    short = detect_spikes(np.arange(4.0), window=4)
    assert short.dtype == np.int64 and short.size == 0
    assert detect_spikes(np.array([1e9 + 1.0] * 10 + [1e9 + 50.0]), window=8).tolist() == [10]


def _eccentricities_by_dijkstra(nodes: int, edges: tuple) -> list[int]:
    """An independent answer: Dijkstra from every node."""
    import heapq

    adjacency: dict[int, list[tuple[int, int]]] = {i: [] for i in range(nodes)}
    for u, v, w in edges:
        adjacency[u].append((v, w))
        adjacency[v].append((u, w))
    out = []
    for source in range(nodes):
        best = {source: 0}
        heap = [(0, source)]
        while heap:
            d, u = heapq.heappop(heap)
            if d > best[u]:
                continue
            for v, w in adjacency[u]:
                if d + w < best.get(v, float("inf")):
                    best[v] = d + w
                    heapq.heappush(heap, (d + w, v))
        out.append(max(best.values()) if len(best) > 1 else -1)
    return out


@pytest.mark.parametrize("n", [1, 2, 9, 40])
def test_graph_eccentricities_match_dijkstra(n: int) -> None:
    args = spec(graph_eccentricities).sample(n)
    assert graph_eccentricities(*args) == _eccentricities_by_dijkstra(*args)


def test_graph_eccentricities_known_answer() -> None:
    # A path 0 -1- 1 -2- 2 and an isolated node 3.
    assert graph_eccentricities(4, ((0, 1, 1), (1, 2, 2))) == [3, 2, 3, -1]


# ------------------------------------------------------------------------------------ across processes

_DIGEST = """
import hashlib, pickle, offload_tuner_kernels as kernels
from offload_tuner.runtime._registry import spec_for
for name in sorted(kernels.__all__):
    fn = getattr(kernels, name)
    print(name, hashlib.sha256(pickle.dumps(fn(*spec_for(fn).sample(100)), protocol=4)).hexdigest())
"""


def test_results_do_not_depend_on_the_hash_seed() -> None:
    """A worker process has its own string-hash seed; its results must still equal the caller's."""
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", _DIGEST], env=env, cwd=ROOT, capture_output=True, text=True, check=True
        )
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == len(KERNELS)
