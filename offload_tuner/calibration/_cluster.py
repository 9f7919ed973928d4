"""Measuring a Dask cluster (impure): its transport, and how fast its workers run each kernel against this host.

The cluster is measured with the production packaging (arguments pickled on the caller, :func:`invoke_pickled` on
the worker), through the same payload sweep and no-op probes as the local pool, so its round trip and per-byte cost
are the terms the placement rule adds. A kernel's compute speed on the cluster is measured, not assumed: the
cluster's workers may be faster or slower than this host (and a LocalCluster shares its cores). The result is the
profile's ``cluster`` section, keyed by the cluster's identity (scheduler address, workers, threads).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from offload_tuner.calibration._kernel import _build_args
from offload_tuner.calibration._measure import clock
from offload_tuner.calibration._settings import Effort, Progress, _silent
from offload_tuner.calibration._transport import (
    _combine_transport,
    _probe,
    _timed_in_worker,
    measure_transport,
    probe_fixed_costs,
    warm_pool,
)
from offload_tuner.runtime._backends import dumps_call, invoke_pickled
from offload_tuner.runtime._dask import cluster_identity
from offload_tuner.runtime._placement import RATIO_RANGE, ClusterCosts, scatter_from
from offload_tuner.runtime._policy import KernelCosts
from offload_tuner.runtime._registry import KernelSpec

SPEED_TARGET_S = 0.02
"""A kernel's speed is compared at the size whose predicted compute is closest to this (inside its calibrated
range): long enough to dwarf timer and call overheads on both sides, short enough to stay cheap."""
SCATTER_PAYLOADS = (1 << 20, 8 << 20, 32 << 20)
SCATTER_REPEATS = 3
SPEED_REPEATS = 7
SPEED_TAKE_S = 0.06
"""Each timing loops the kernel for about this long. Three takes of one 20 ms call read the same cluster 0.70x and
1.05x of a local worker on this VM; seven takes of ~60 ms agree within a few percent."""


class ClusterUnreachable(RuntimeError):
    """The scheduler could not be reached; the message names the address."""


def connect(address: str, timeout_s: float = 10.0) -> Any:
    """A ``distributed.Client`` for ``address``, or :class:`ClusterUnreachable` saying why."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ClusterUnreachable(
            "calibrating a Dask cluster needs the [dask] extra: pip install 'offload-tuner[dask]'"
        ) from exc
    try:
        return Client(address, timeout=timeout_s, set_as_default=False)
    except Exception as exc:  # OSError (refused, timed out), ValueError (bad address), ...
        raise ClusterUnreachable(f"cannot reach the Dask scheduler at {address}: {type(exc).__name__}: {exc}") from None


def speed_size(costs: KernelCosts) -> int:
    """The calibrated size whose predicted compute is closest to :data:`SPEED_TARGET_S`."""
    lo, hi = costs.compute.size_range
    candidates = sorted(
        {int(lo), int(hi)} | {round(lo * (hi / lo) ** (k / 16)) for k in range(17)} if lo > 0 else {int(hi)}
    )
    return min(candidates, key=lambda n: abs(costs.compute.predict(n) - SPEED_TARGET_S))


def speed_ratio(cluster_s: Sequence[float], local_s: Sequence[float]) -> float:
    """Cluster compute over local compute, from paired repeats (median of ratios), clamped to what a profile may
    hold."""
    ratios = [c / h for c, h in zip(cluster_s, local_s) if c > 0 and h > 0]
    if not ratios:
        raise ValueError("no usable timing pair")
    return min(max(statistics.median(ratios), RATIO_RANGE[0]), RATIO_RANGE[1])


def _loops_for(seconds: float) -> int:
    return max(1, min(1000, round(SPEED_TAKE_S / max(seconds, 1e-6))))


def measure_speed(executor: Any, local: Any, spec: KernelSpec, n: int, local_ratio: float = 1.0) -> dict:
    """Compute per call of ``spec`` at size ``n``, timed inside a cluster worker and inside a worker of the local
    pool, interleaved: like for like (a timing in this process would share the GIL with the Dask client's own
    thread). ``local_ratio`` (the local pool's worker compute over inline, from the profile) turns the paired ratio
    into the cluster's compute over inline compute, which is what the cost model scales."""
    args = _build_args(spec, n)
    started = clock()
    spec.fn(*args)
    loops = _loops_for(clock() - started)
    executor.submit(_timed_in_worker, spec.fn, args, 1).result()  # warm: the workers import the kernel's module
    local.submit(_timed_in_worker, spec.fn, args, 1).result()
    cluster_s, local_s = [], []
    for _ in range(SPEED_REPEATS):
        cluster_s.append(executor.submit(_timed_in_worker, spec.fn, args, loops).result())
        local_s.append(local.submit(_timed_in_worker, spec.fn, args, loops).result())
    paired = speed_ratio(cluster_s, local_s)
    ratio = min(max(paired * local_ratio, RATIO_RANGE[0]), RATIO_RANGE[1])
    return {
        "size": n,
        "loops": loops,
        "cluster_s": cluster_s,
        "local_worker_s": local_s,
        "vs_local_worker": paired,
        "worker_compute_ratio": ratio,
    }


def calibrate_cluster(
    executor: Any,
    local: Any,
    specs: Sequence[KernelSpec],
    kernels: Mapping[str, Mapping[str, Any]],
    effort: Effort,
    progress: Progress = _silent,
) -> dict[str, Any]:
    """The profile's ``cluster`` section for the cluster behind ``executor`` (a ``"dask"`` executor), for the
    kernels whose local calibration succeeded (``kernels``: the profile's kernel entries); ``local`` is the local
    process pool they were calibrated against (the yardstick for the cluster workers' speed)."""
    identity = cluster_identity(executor)
    progress("cluster", address=identity["address"], workers=identity["workers"])
    warm_pool(executor, identity["threads"])
    _check_packaging(executor)
    sweep, rows = measure_transport(executor, effort, progress)
    probes = [probe_fixed_costs(executor, effort.transport_calls) for _ in range(2)]
    transport = _combine_transport(sweep, probes)
    measured: dict[str, Any] = {}
    errors: dict[str, str] = {}
    ratios: dict[str, float] = {}
    for spec in specs:
        entry = kernels.get(spec.key)
        if entry is None or entry.get("status") != "ok" or "costs" not in entry or spec.sample is None:
            continue
        costs = KernelCosts.from_json(entry["costs"])
        n = speed_size(costs)
        progress("cluster_kernel", kernel=spec.key, size=n)
        try:
            row = measure_speed(executor, local, spec, n, costs.worker_compute_ratio)
        except Exception as exc:  # the kernel cannot run there (not importable on the workers...): say so
            errors[spec.key] = f"{type(exc).__name__}: {exc}"
            continue
        measured[spec.key] = row
        ratios[spec.key] = row["worker_compute_ratio"]
    progress("cluster_scatter", address=identity["address"])
    scatter_rows = measure_scatter(executor)
    section = ClusterCosts(
        identity["address"], identity["workers"], identity["threads"], transport, ratios, scatter_from(scatter_rows)
    ).to_json()
    section["scatter"]["rows"] = scatter_rows
    section["transport"] = transport.to_json()
    section["sweep"] = rows
    section["fixed_probes"] = [list(p) for p in probes]
    for key, row in measured.items():
        section["kernels"][key].update(row)
    if errors:
        section["errors"] = errors  # these kernels stay on the local pool
    return section


def measure_scatter(executor: Any, payloads: Sequence[int] = SCATTER_PAYLOADS) -> list[dict[str, float]]:
    """Round trip of a no-op call whose payload goes with the call, against one whose payload is scattered to a
    worker first (``direct=True``: straight to it, not through the scheduler), interleaved, per payload size."""
    from offload_tuner.runtime._dask import cluster_client, scatter_payload

    client = cluster_client(executor)
    rows = []
    for size in payloads:
        payload = dumps_call(_probe, (bytes(size),))
        with_call, scattered = [], []
        for _ in range(SCATTER_REPEATS):
            started = clock()
            executor.submit(invoke_pickled, payload).result()
            with_call.append(clock() - started)
            started = clock()
            executor.submit(invoke_pickled, scatter_payload(client, payload)).result()
            scattered.append(clock() - started)
        rows.append(
            {
                "bytes": len(payload),
                "with_call_s": statistics.median(with_call),
                "scatter_s": statistics.median(scattered),
            }
        )
    return rows


def _check_packaging(executor: Any) -> None:
    """One real call through the production packaging: the workers must import this package to run it."""
    import pickle

    blob = executor.submit(invoke_pickled, dumps_call(len, ((1, 2, 3),))).result(timeout=60)
    if pickle.loads(blob) != 3:
        raise ClusterUnreachable("the cluster's workers returned a wrong result for a probe call")
