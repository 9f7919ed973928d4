"""Placement by expected completion (pure): which offload backend finishes a call soonest.

The profile's threshold decides *whether* a call is offloaded (chosen by measurements under the production load;
see :mod:`_policy`). When several offload backends can take the call (the local process pool and a Dask cluster),
placement decides *where*, the way StarPU's dmda scheduler does: each backend's expected queue end plus the call's
predicted latency there, the soonest wins.

* latency: :func:`_policy.predict`'s offloaded latency with that backend's transport (round trip, per byte) and
  its workers' compute speed relative to this host (a cluster's workers may be faster or slower);
* loop-thread time: what the choice blocks the event loop for (pickling on the caller, the executor's own CPU, a
  thread's share of the GIL), charged once per other caller it delays (``concurrency - 1``): the loop is the
  resource every caller shares;
* queue end: the predicted worker-seconds already in flight on the backend over its slots, counted only once all
  its slots are busy. The runtime keeps that backlog in O(1) (calls and predicted work in flight, added at submit,
  removed at completion, reset to zero whenever the backend goes idle so estimation errors do not pile up).

For the hot path every prediction is precomputed per log2 size bucket (``n.bit_length()``, the statistics'
buckets) at the bucket's geometric middle: a lookup and two additions per offloaded call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from offload_tuner.runtime._policy import KernelCosts, LoadFactors, PolicyKnobs, TransportModel, makespan, predict

BUCKETS = 65
"""Same buckets as :mod:`_stats`: bucket ``b`` holds sizes with ``n.bit_length() == b``."""
RATIO_RANGE = (0.02, 50.0)
"""A cluster worker's compute time over this host's, as calibration may record it (anything else is a bad file)."""


@dataclass(frozen=True, slots=True)
class ClusterCosts:
    """What calibration measured of a Dask cluster (the profile's ``cluster`` section)."""

    address: str
    workers: int
    threads: int
    """Slots: calls the cluster runs at once (workers x threads per worker)."""
    transport: TransportModel
    ratios: Mapping[str, float]
    """Kernel key -> compute time on a cluster worker over compute time inline on this host."""
    scatter_from_bytes: int | None = None
    """Payloads from this many bytes up go to the workers by ``scatter`` first (calibration measured it cheaper
    than sending them with the call, at this size and every larger one it tried); None: always with the call."""

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": {"address": self.address, "workers": self.workers, "threads": self.threads},
            "transport": self.transport.to_json(),
            "kernels": {key: {"worker_compute_ratio": ratio} for key, ratio in self.ratios.items()},
            "scatter": {"from_bytes": self.scatter_from_bytes},
        }

    @classmethod
    def from_json(cls, data: Any) -> ClusterCosts:
        """Validated; a ``ValueError`` names the bad field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"must be an object, got {type(data).__name__}")
        identity = data.get("identity")
        if not isinstance(identity, Mapping):
            raise ValueError('missing "identity" object')
        address = identity.get("address")
        if not isinstance(address, str) or not address:
            raise ValueError(f"identity.address must be a scheduler address, got {address!r}")
        counts = {}
        for name in ("workers", "threads"):
            value = identity.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"identity.{name} must be an integer >= 1, got {value!r}")
            counts[name] = value
        transport = data.get("transport")
        if not isinstance(transport, Mapping):
            raise ValueError('missing "transport" object')
        kernels = data.get("kernels", {})
        if not isinstance(kernels, Mapping):
            raise ValueError('"kernels" must be an object')
        ratios = {}
        for key, entry in kernels.items():
            ratio = entry.get("worker_compute_ratio") if isinstance(entry, Mapping) else None
            if (
                isinstance(ratio, bool)
                or not isinstance(ratio, (int, float))
                or not (RATIO_RANGE[0] <= ratio <= RATIO_RANGE[1])
            ):
                raise ValueError(
                    f"kernel {key!r}: worker_compute_ratio must be a number in "
                    f"[{RATIO_RANGE[0]}, {RATIO_RANGE[1]}], got {ratio!r}"
                )
            ratios[str(key)] = float(ratio)
        scatter = data.get("scatter") or {}
        from_bytes = scatter.get("from_bytes") if isinstance(scatter, Mapping) else "not an object"
        if from_bytes is not None and (
            isinstance(from_bytes, bool) or not isinstance(from_bytes, int) or from_bytes < 0
        ):
            raise ValueError(f"scatter.from_bytes must be a byte count >= 0 or null, got {from_bytes!r}")
        return cls(
            address, counts["workers"], counts["threads"], TransportModel.from_json(transport), ratios, from_bytes
        )


def scatter_from(rows: Sequence[Mapping[str, float]]) -> int | None:
    """The smallest payload from which scattering first measured cheaper than sending with the call, there and at
    every larger payload measured (``rows``: ``bytes``, ``with_call_s``, ``scatter_s``); None if it never was."""
    ordered = sorted(rows, key=lambda r: r["bytes"])
    start = None
    for row in ordered:
        if row["scatter_s"] < row["with_call_s"]:
            start = row["bytes"] if start is None else start
        else:
            start = None
    return int(start) if start is not None else None


def isolated(costs: KernelCosts) -> KernelCosts:
    """A kernel's costs as timed one call at a time, without the reference load's corrections. Placement compares
    backends like for like, *now*: the queue a call would wait behind is the backlog term, not a load factor (which
    was fitted to one backend under one load and would count that queue twice)."""
    return replace(costs, load=LoadFactors())


def cluster_costs(costs: KernelCosts, ratio: float) -> KernelCosts:
    """A kernel's isolated costs as seen on a cluster: its workers' compute speed relative to this host."""
    return replace(isolated(costs), worker_compute_ratio=ratio)


def bucket_size(b: int) -> float:
    """The geometric middle of bucket ``b`` (sizes ``2**(b-1)`` to ``2**b - 1``)."""
    return 0.0 if b == 0 else 2.0 ** (b - 0.5)


@dataclass(frozen=True, slots=True)
class LaneTable:
    """Per size bucket: a call's predicted latency, worker-seconds and loop-thread time on one backend."""

    latency_s: tuple[float, ...]
    work_s: tuple[float, ...]
    loop_s: tuple[float, ...]


def lane_table(costs: KernelCosts, transport: TransportModel, knobs: PolicyKnobs) -> LaneTable:
    """A pool of processes or a cluster (arguments pickled on the caller). Pass :func:`isolated` or
    :func:`cluster_costs` costs: see :func:`isolated`."""
    latency, work, loop = [], [], []
    for b in range(BUCKETS):
        p = predict(costs, transport, knobs, bucket_size(b))
        latency.append(_finite(p.offload_latency_s))
        work.append(_finite(p.offload_worker_s))
        loop.append(_finite(p.offload_loop_s))
    return LaneTable(tuple(latency), tuple(work), tuple(loop))


def thread_table(costs: KernelCosts, hand_off_s: float, gil_hold: float) -> LaneTable:
    """A thread pool, for a kernel that releases the GIL: no pickling; the call takes the hand-off plus its compute,
    and holds up the loop thread for the share of its compute calibration measured (``gil_hold``)."""
    latency, work, loop = [], [], []
    for b in range(BUCKETS):
        compute = _finite(costs.compute.predict(bucket_size(b)))
        latency.append(hand_off_s + compute)
        work.append(compute)
        loop.append(gil_hold * compute)
    return LaneTable(tuple(latency), tuple(work), tuple(loop))


def _finite(seconds: float) -> float:
    """Extrapolated far beyond any real size a model can overflow; such a call is simply very long."""
    return seconds if math.isfinite(seconds) and seconds >= 0 else 1e12


@dataclass(frozen=True, slots=True)
class WhatIf:
    """A saturated stream of size-``n`` calls on one backend: seconds per call, and one call's latency."""

    backend: str
    slots: int
    period_s: float
    latency_s: float


def what_if(
    costs: KernelCosts,
    local: TransportModel,
    cluster: ClusterCosts,
    ratio: float,
    knobs: PolicyKnobs,
    n: float,
    workers: Sequence[int] = (8, 64),
) -> list[WhatIf]:
    """The plan for a cluster bigger than this machine, from the measured costs: the local pool, the cluster as
    measured, and the same cluster with each of ``workers`` workers (same threads per worker, same transport).

    Enough callers are assumed to keep every slot busy: the question is the capacity, not one caller's wait."""
    rows = []
    local_p = predict(isolated(costs), local, knobs, n)
    callers = max(knobs.concurrency, knobs.workers)
    rows.append(
        WhatIf(
            "process",
            knobs.workers,
            makespan(
                local_p.offload_loop_s,
                local_p.offload_worker_s,
                local_p.offload_latency_s,
                replace(knobs, concurrency=callers),
            ),
            local_p.offload_latency_s,
        )
    )
    per_worker = max(1, cluster.threads // cluster.workers)
    remote = predict(cluster_costs(costs, ratio), cluster.transport, knobs, n)
    for count in (cluster.workers, *workers):
        slots = count * per_worker
        shaped = replace(knobs, workers=slots, concurrency=max(knobs.concurrency, slots), cores=knobs.cores + slots)
        period = makespan(remote.offload_loop_s, remote.offload_worker_s, remote.offload_latency_s, shaped)
        rows.append(WhatIf(f"dask x{count}", slots, period, remote.offload_latency_s))
    return rows
