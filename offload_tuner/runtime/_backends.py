"""Backends: how an offloaded call reaches an executor. A new kind of pool is a new row in a table.

Every executor speaks the ``concurrent.futures`` protocol (``submit``); a backend only decides how the
call is packaged. The process backend pickles arguments itself, on the caller, so that

* the pickling cost the calibration measured is exactly the cost paid here (same pickler, same protocol),
* an unpicklable argument is caught before submission and the call runs inline instead of failing, and
* an unpicklable result is reported as such, not confused with an exception raised by the kernel.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from offload_tuner.runtime import _cores
from offload_tuner.runtime._warn import warn_once

if TYPE_CHECKING:  # the runtime never imports multiprocessing unless it builds a pool
    from concurrent.futures import Executor, ProcessPoolExecutor

PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


class ResultNotPicklable(Exception):
    """Raised in a worker when a kernel's result cannot be pickled back to the caller."""


class PayloadNotLoadable(Exception):
    """Raised in a worker that cannot unpickle a call (its environment lacks a module the kernel or an argument
    needs): the worker's problem, never to be mistaken for the kernel's own exception."""


def dumps_call(fn: Callable[..., Any], args: tuple[Any, ...]) -> bytes:
    return pickle.dumps((fn, args), protocol=PICKLE_PROTOCOL)


def invoke_pickled(payload: bytes) -> bytes:
    """Worker side of the process backend: unpickle, call, pickle the result."""
    try:
        fn, args = pickle.loads(payload)
    except Exception as exc:  # ModuleNotFoundError, AttributeError, UnpicklingError, ...
        raise PayloadNotLoadable(f"{type(exc).__name__}: {exc}") from None
    result = fn(*args)
    try:
        return pickle.dumps(result, protocol=PICKLE_PROTOCOL)
    except Exception as exc:  # pickling can raise TypeError, AttributeError, PicklingError, ...
        raise ResultNotPicklable(f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Backend:
    """One row of the table: a name (what profiles and decisions record) and how calls are packaged."""

    name: str
    pickles_on_caller: bool
    """True: arguments are pickled by us on the calling thread and the worker runs :func:`invoke_pickled`."""


PROCESS = Backend("process", pickles_on_caller=True)
THREAD = Backend("thread", pickles_on_caller=False)
DASK = Backend("dask", pickles_on_caller=True)
"""A Dask cluster (:mod:`_dask`): pickled on the caller like the process pool, so the cost calibration measured is
the cost paid, the payload reaches the workers as plain bytes (Dask neither re-pickles nor hashes an object
graph), and a kernel's own exception is told apart from the cluster's failures."""
EXECUTOR = Backend("executor", pickles_on_caller=False)  # any other concurrent.futures executor
INLINE = Backend("inline", pickles_on_caller=False)

# Keyed by "module.qualname" of an executor class and matched along the executor's MRO, so subclasses
# inherit their base's row and the table needs no import of the executor modules.
_TABLE: dict[str, Backend] = {
    "concurrent.futures.process.ProcessPoolExecutor": PROCESS,
    "concurrent.futures.thread.ThreadPoolExecutor": THREAD,
    "distributed.cfexecutor.ClientExecutor": DASK,  # client.get_executor()
    "offload_tuner.runtime._dask.ClusterExecutor": DASK,
}


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_backend(executor_type: type, backend: Backend) -> None:
    """Teach the runtime a new executor type (e.g. a cluster client's executor)."""
    _TABLE[_class_name(executor_type)] = backend


def backend_for(executor: Executor | None) -> Backend:
    if executor is None:
        return INLINE
    for cls in type(executor).__mro__:
        backend = _TABLE.get(_class_name(cls))
        if backend is not None:
            return backend
    return EXECUTOR


def recommended_start_method() -> str:
    """forkserver where it exists (Linux): the host process is multithreaded, so fork is unsafe."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if sys.platform != "win32" and "forkserver" in methods:
        return "forkserver"
    return "spawn"


def configured_processes() -> int:
    """The service processes sharing this host's cores (:func:`_cores.service_processes`); an invalid variable
    is reported once with its message and 1 is used: a typo must not stop a service from starting."""
    try:
        return _cores.service_processes()
    except ValueError as exc:
        warn_once(f"processes:{exc}", f"offload-tuner: {exc}; using 1 service process")
        return 1


def default_workers() -> int:
    """This process's share of the usable cores: ``usable cores // service processes``, at least 1."""
    return _cores.cores_per_process(_cores.usable_cores(), configured_processes())


THREAD_LIMIT_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
"""What OpenMP, the BLAS libraries and numexpr read when they load: their thread pools' size."""
_BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def threads_per_worker(cores: int, processes: int, workers: int) -> int:
    """Each pool worker's share of the usable cores: ``max(1, cores // (processes * workers))``. Without a limit a
    numpy kernel in each of ``processes * workers`` workers would start one BLAS/OpenMP thread per core."""
    return max(1, cores // (max(1, processes) * max(1, workers)))


def limit_worker_threads(threads: int) -> None:
    """Pool worker initializer: cap BLAS/OpenMP thread pools at ``threads``.

    Each variable of :data:`THREAD_LIMIT_VARIABLES` the user did not set is set (libraries loaded later read
    it); with threadpoolctl importable, the libraries already loaded are limited too, for the APIs whose
    variables are ours (a user's ``OMP_NUM_THREADS`` is left alone). Never raises: a failing initializer would
    break the pool."""
    ours = [name for name in THREAD_LIMIT_VARIABLES if not os.environ.get(name)]
    for name in ours:
        os.environ[name] = str(threads)
    apis = ["openmp"] if "OMP_NUM_THREADS" in ours else []
    if all(name in ours for name in _BLAS_VARIABLES):
        apis.append("blas")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    for api in apis:
        try:
            threadpool_limits(limits=threads, user_api=api)
        except Exception:  # a library threadpoolctl cannot drive keeps its variable; the pool must start anyway
            pass


def recommended_pool(
    workers: int | None = None, *, start_method: str | None = None, processes: int | None = None
) -> ProcessPoolExecutor:
    """The pool we calibrate against and recommend in production: this process's share of the usable cores
    (``usable cores // processes`` workers), forkserver, each worker's BLAS/OpenMP threads capped at its share.

    ``processes``: the service processes on this host (default :func:`configured_processes`, from
    ``OFFLOAD_TUNER_PROCESSES`` or ``WEB_CONCURRENCY``); ``calibrate --processes N`` passes its N."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    processes = configured_processes() if processes is None else processes
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    cores = _cores.usable_cores()
    workers = _cores.cores_per_process(cores, processes) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    start_method = start_method or recommended_start_method()
    threads = threads_per_worker(cores, processes, workers)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(start_method),
        initializer=limit_worker_threads,
        initargs=(threads,),
    )
    # Lets the runtime replace this pool with an identical one if a worker dies and breaks it.
    pool._offload_tuner_shape = {"workers": workers, "start_method": start_method, "processes": processes}  # type: ignore[attr-defined]  # our mark on the pool
    pool._offload_tuner_threads = threads  # type: ignore[attr-defined]  # what describe_executor records
    from offload_tuner.runtime._pool_repair import repair

    repair(pool)  # CPython 3.11's pool can hang when a cancelled call meets a killed worker
    return pool


def recommended_pools(workers: int | None = None, *, threads: int | None = None) -> dict[str, Executor]:
    """The recommended pair for :func:`set_executors`: the process pool of :func:`recommended_pool` for kernels
    that hold the GIL, and a thread pool (one thread per core by default) for those calibration measured to
    release it. Threads beyond the cores buy nothing for CPU work that really runs in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    threads = default_workers() if threads is None else threads
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return {
        "process": recommended_pool(workers),
        "thread": ThreadPoolExecutor(threads, thread_name_prefix="offload-tuner"),
    }


def describe_executor(executor: Executor | None) -> dict[str, Any]:
    """What a profile records about the executor it was calibrated against."""
    backend = backend_for(executor)
    info: dict[str, Any] = {"kind": backend.name, "type": type(executor).__qualname__ if executor else None}
    workers = getattr(executor, "_max_workers", None)
    if isinstance(workers, int):
        info["workers"] = workers
    context = getattr(executor, "_mp_context", None)
    if context is not None:
        info["start_method"] = context.get_start_method()
    threads = getattr(executor, "_offload_tuner_threads", None)
    if isinstance(threads, int):
        info["threads_per_worker"] = threads  # the BLAS/OpenMP limit its workers ran under
    return info
