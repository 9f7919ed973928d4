"""offload-tuner: per-kernel, per-host decisions on whether a CPU-bound call runs inline or in a worker pool.

Production API (stdlib only, no numpy/scikit-learn)::

    from offload_tuner import kernel, run_kernel, set_executor, recommended_pool

    @kernel(size=lambda records: len(records), sample=make_records)
    def cluster(records): ...

    set_executor(recommended_pool())                     # or set_executors(recommended_pools())
    labels = await run_kernel(cluster, records)          # the profile decides
    labels = await run_kernel(cluster, records, offload_if=True)   # the caller decides

Calibration (``offload-tuner calibrate``) writes the per-host profile the runtime reads. In production
every call of a registered kernel is counted per size bucket and decision, and one in ``sample_every()``
is timed: ``stats()`` returns them, ``record_stats(path)`` (or ``OFFLOAD_TUNER_STATS=path``) writes them to
a file shared by the service's processes, which ``offload-tuner retune`` and ``drift`` read; ``adapt(True)``
(or ``OFFLOAD_TUNER_ADAPT=1``) retunes in-process, off the hot path.

A Dask cluster is one more backend (the ``[dask]`` extra): ``set_executors({"process": pool, "dask":
cluster_executor("tcp://scheduler:8786")})``; offloaded calls then go where they are expected to complete soonest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from offload_tuner.runtime._backends import (
    Backend,
    ResultNotPicklable,
    recommended_pool,
    recommended_pools,
    register_backend,
)
from offload_tuner.runtime._profile import Profile, ProfileError, default_profile_path
from offload_tuner.runtime._registry import KernelSizeError, kernel
from offload_tuner.runtime._runtime import (
    Decision,
    OffloadTunerWarning,
    ProfileOverriddenWarning,
    current_profile,
    decide,
    get_executor,
    get_executors,
    load_profile,
    run_kernel,
    run_kernel_sync,
    sample_every,
    set_executor,
    set_executors,
    unload_profile,
)
from offload_tuner.runtime._stats import reset_stats
from offload_tuner.runtime._stats_document import stats_document as stats
from offload_tuner.runtime.feedback import install as _install_feedback

if TYPE_CHECKING:  # imported on use at run time (see __getattr__ and the functions below)
    import os

    from prometheus_client.registry import CollectorRegistry

    from offload_tuner.runtime._dask import ClusterExecutor, ClusterUnavailable
    from offload_tuner.runtime.feedback._prometheus import StatsCollector
    from offload_tuner.runtime.feedback._statsfile import StatsError, StatsRecorder

__all__ = [
    "Backend",
    "ClusterExecutor",
    "ClusterUnavailable",
    "Decision",
    "KernelSizeError",
    "OffloadTunerWarning",
    "Profile",
    "ProfileError",
    "ProfileOverriddenWarning",
    "ResultNotPicklable",
    "StatsError",
    "adapt",
    "cluster_executor",
    "current_profile",
    "decide",
    "default_profile_path",
    "get_executor",
    "get_executors",
    "kernel",
    "load_profile",
    "prometheus_collector",
    "recommended_pool",
    "recommended_pools",
    "record_stats",
    "register_backend",
    "reset_stats",
    "run_kernel",
    "run_kernel_sync",
    "sample_every",
    "set_executor",
    "set_executors",
    "stats",
    "unload_profile",
]
# The one version: pyproject.toml reads it (statically) for the wheel, `offload-tuner --version` prints it.
__version__ = "0.1.0"

_install_feedback()  # the drift check and the start-up from environment variables listen to the call path


def record_stats(path: str | os.PathLike[str] | None, every_s: float = 60.0) -> StatsRecorder | None:
    """Write this process's statistics to ``path`` every ``every_s`` seconds and at exit, merged with the
    service's other processes on this host (``None`` stops). Imported on use: json and a thread are not
    every service's business."""
    from offload_tuner.runtime.feedback._statsfile import record_stats as _record

    return _record(path, every_s)


def adapt(enabled: bool | None = None, *, every_s: float | None = None, min_calls: int | None = None) -> bool:
    """Online adaptation on or off (``OFFLOAD_TUNER_ADAPT=1`` from the first kernel call); returns whether it
    was on. A background thread re-derives each kernel's threshold every ``every_s`` seconds (default 30) once
    ``min_calls`` new calls of it were seen (default 256), from the observed mix and timings, at most 2x per
    step; near a threshold, one call in 64 or fewer runs the other way so both sides stay measured.
    ``decide()`` says when a threshold was adapted and from what."""
    from offload_tuner.runtime.feedback._adapt import adapt as _adapt

    return _adapt(enabled, every_s=every_s, min_calls=min_calls)


def cluster_executor(address: str, *, connect_timeout_s: float = 5.0, retry_s: float = 30.0) -> ClusterExecutor:
    """A Dask cluster as the ``"dask"`` executor: ``set_executors({"process": pool, "dask": cluster_executor(addr)})``.

    It connects in the background and keeps retrying every ``retry_s``, so a service starts and serves while the
    scheduler is unreachable (its calls run locally, one warning). Needs the ``[dask]`` extra; imported on use, so
    a service without a cluster never imports Dask."""
    from offload_tuner.runtime._dask import ClusterExecutor

    return ClusterExecutor(address, connect_timeout_s=connect_timeout_s, retry_s=retry_s)


def prometheus_collector(registry: CollectorRegistry | None = None) -> StatsCollector:
    """Export ``stats()`` to Prometheus: registers a collector with ``registry`` (default
    ``prometheus_client.REGISTRY``) and returns it (``registry.unregister(it)`` stops; a second one in the same
    registry is refused by prometheus_client as duplicated timeseries). It reads the statistics
    and the installed profile's drift verdicts when scraped, so calls pay nothing for it: calls by kernel,
    decision and backend, sampled durations, drift. Needs the ``[prometheus]`` extra; imported on use, so a
    service that does not export metrics never imports ``prometheus_client``. Metric names: see Production."""
    import importlib.util

    if importlib.util.find_spec("prometheus_client") is None:
        raise ImportError("prometheus_collector() needs prometheus_client: pip install 'offload-tuner[prometheus]'")
    from offload_tuner.runtime.feedback._prometheus import register

    return register(registry)


def __getattr__(name: str) -> type:
    if name == "StatsError":  # lazily, for the same reason
        from offload_tuner.runtime.feedback._statsfile import StatsError

        return StatsError
    if name == "ClusterExecutor":
        from offload_tuner.runtime._dask import ClusterExecutor

        return ClusterExecutor
    if name == "ClusterUnavailable":
        from offload_tuner.runtime._dask import ClusterUnavailable

        return ClusterUnavailable
    raise AttributeError(f"module 'offload_tuner' has no attribute {name!r}")
