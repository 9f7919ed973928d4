"""The executor's transport (impure): what a round trip, a byte of payload and a call's packaging cost, measured
with no-op probes; the helpers that time a kernel inside a worker live here too, beside the probes they mirror."""

from __future__ import annotations

import os
import pickle
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from offload_tuner.calibration._measure import clock
from offload_tuner.calibration._settings import Effort, Progress, _silent
from offload_tuner.runtime import _shm
from offload_tuner.runtime._backends import PICKLE_PROTOCOL, dumps_call, invoke_pickled
from offload_tuner.runtime._packaging import call_sync
from offload_tuner.runtime._policy import TransportModel

# --------------------------------------------------------------------------------------- worker probes


def _probe(payload: bytes) -> tuple[int, float]:
    """No-op kernel for the transport sweep: reports which worker ran and its CPU clock."""
    return os.getpid(), time.process_time()


def _timed_in_worker(fn: Callable[..., Any], args: tuple, loops: int) -> float:
    """Per-call compute seconds measured inside a worker (its CPU may differ from the caller's)."""
    start = clock()
    for _ in range(loops):
        fn(*args)
    return (clock() - start) / loops


def _offload_round_trip(executor: Executor, fn: Callable[..., Any], args: tuple) -> tuple[float, Any]:
    """One real offloaded call through the production packaging (:mod:`_packaging`); returns (seconds, result)."""
    start = clock()
    result = call_sync(executor, fn, args)
    return clock() - start, result


def warm_pool(executor: Executor, workers: int) -> None:
    """Start every worker (forkserver start-up is tens of ms) before anything is timed."""
    futures = [executor.submit(invoke_pickled, dumps_call(_probe, (b"",))) for _ in range(workers * 2)]
    for future in futures:
        future.result()


# ------------------------------------------------------------------------------------------ transport


TRANSPORT_CHUNKS = 5
"""Caller CPU is read per chunk of calls and the median chunk kept, so one stray GC or page fault cannot skew it."""


def measure_transport(executor: Executor, effort: Effort, progress: Progress = _silent) -> tuple[TransportModel, dict]:
    """Fixed round trip and per-byte cost of the executor, plus caller- and worker-side CPU per call, for bytes
    pickled in band; with the shared-memory transport on, the per-byte costs of bytes sent out of band too, and
    the buffer size from which that is cheaper (``rows["shared_memory"]``)."""
    with _transport_settings(enabled=False):
        rows: dict[str, Any] = dict(_sweep(executor, effort, progress, thread_only=False))
    rt = _anchored_line(rows["bytes"], rows["round_trip_s"])
    cc = _anchored_line(rows["bytes"], rows["caller_cpu_s"])
    wc = _anchored_line(rows["bytes"], rows["worker_cpu_s"])
    if not _shm.in_use():
        rows["shared_memory"] = {"min_bytes": None, "source": "off"}
        return TransportModel(*rt, *cc, *wc), rows
    with _transport_settings(enabled=True, min_bytes=1):
        oob_rows = _sweep(executor, effort, progress, thread_only=True)
    fixed = {"round_trip_s": rt[0], "caller_cpu_s": cc[0], "worker_cpu_s": wc[0]}
    lines = [_segment_line(fixed[name], oob_rows["bytes"], oob_rows[name]) for name in fixed]
    rows["shared_memory"] = {**oob_rows, **_min_bytes(rows, oob_rows)}
    (rt_extra, rt_slope), (cc_extra, cc_slope), (wc_extra, wc_slope) = lines
    return TransportModel(*rt, *cc, *wc, rt_slope, cc_slope, wc_slope, rt_extra, cc_extra, wc_extra), rows


def _sweep(executor: Executor, effort: Effort, progress: Progress, thread_only: bool) -> dict[str, list[float]]:
    """One payload sweep through the production packaging. Caller CPU is the process's (the pool's feeder and
    result threads pickle in band holding the GIL, so their CPU stalls the loop too), or, with ``thread_only``
    (bytes out of band: the feeder writes them with the GIL released), the calling thread's alone."""
    rows: dict[str, list[float]] = {k: [] for k in ("bytes", "round_trip_s", "caller_cpu_s", "worker_cpu_s")}
    for payload_size in sorted(effort.transport_payloads):
        if thread_only and payload_size == 0:
            continue
        progress("transport", payload=payload_size)
        args = (bytes(payload_size),)
        nbytes = len(dumps_call(_probe, args)) + len(pickle.dumps((0, 0.0), protocol=PICKLE_PROTOCOL))
        calls = effort.transport_calls if payload_size < (1 << 20) else max(10, effort.transport_calls // 3)
        per_chunk = max(2, calls // TRANSPORT_CHUNKS)
        _offload_round_trip(executor, _probe, args)  # warm this payload size
        latencies, worker_marks, chunk_cpu = [], [], []
        for _ in range(TRANSPORT_CHUNKS):
            chunk_latencies, cpu, marks = _probe_batch(executor, args, per_chunk, thread_only)
            latencies += chunk_latencies
            worker_marks += marks
            chunk_cpu.append(cpu)
        caller_cpu = statistics.median(chunk_cpu)
        worker_cpu = _per_call_worker_cpu(worker_marks)
        rows["bytes"].append(nbytes)
        rows["round_trip_s"].append(statistics.median(latencies))
        rows["caller_cpu_s"].append(caller_cpu)
        rows["worker_cpu_s"].append(worker_cpu if worker_cpu is not None else caller_cpu)
    return rows


def _segment_line(in_band_fixed: float, nbytes: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(extra fixed, per byte) of calls whose bytes go out of band: the line anchored on the smallest such payload
    (:func:`_anchored_line`), less what any call pays (the in-band fixed cost). The extra is what using a segment
    costs once (create, map, unlink); never below zero."""
    if not nbytes:
        return 0.0, 0.0
    at_smallest, per_byte = _anchored_line(nbytes, values)
    return max(at_smallest - per_byte * nbytes[0] - in_band_fixed, 0.0), per_byte


def _min_bytes(in_band: Mapping[str, Sequence[float]], out_of_band: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """The smallest swept payload from which shared memory is no dearer than in band at it and every larger one,
    counting what the caller's loop pays and the round trip; None when it never is (then nothing goes out of
    band). An explicit ``OFFLOAD_TUNER_SHM=<bytes>`` wins and is recorded as such."""
    if _shm.settings.pinned:
        return {"min_bytes": _shm.settings.min_bytes, "source": "environment"}
    cost_in = {b: c + r for b, c, r in zip(in_band["bytes"], in_band["caller_cpu_s"], in_band["round_trip_s"])}
    chosen = None
    for b, c, r in sorted(
        zip(out_of_band["bytes"], out_of_band["caller_cpu_s"], out_of_band["round_trip_s"]), reverse=True
    ):
        if b not in cost_in or c + r > cost_in[b]:
            break
        chosen = int(b)
    return {"min_bytes": chosen, "source": "calibrated"}


@contextmanager
def calibrated_min_bytes(min_bytes: int | None) -> Iterator[None]:
    """The transport as the profile will set it (:func:`_shm.apply_calibrated`), for the rest of a calibration."""
    with _transport_settings():
        _shm.apply_calibrated(min_bytes)
        yield


@contextmanager
def _transport_settings(**changes: Any) -> Iterator[None]:
    """The shared-memory settings changed for one sweep, restored after."""
    saved = (_shm.settings.enabled, _shm.settings.min_bytes)
    for name, value in changes.items():
        setattr(_shm.settings, name, value)
    try:
        yield
    finally:
        _shm.settings.enabled, _shm.settings.min_bytes = saved


def _anchored_line(nbytes: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(fixed, per byte): the fixed cost is what the smallest payload costs; the per-byte cost is the median
    slope from there to each larger payload.

    A least-squares line is dominated by the megabyte payloads, where allocator effects bend the
    curve, and can put the intercept anywhere (even below zero); the small-payload cost is what most
    calls pay, so it is anchored on a measurement.
    """
    fixed = max(values[0], 0.0)
    slopes = [(v - fixed) / (b - nbytes[0]) for b, v in zip(nbytes[1:], values[1:]) if b > nbytes[0]]
    return fixed, max(statistics.median(slopes), 0.0) if slopes else 0.0


def _per_call_worker_cpu(marks: Iterable[tuple[int, float]]) -> float | None:
    """Median CPU a worker spends between two consecutive tasks it ran: one call's worth of overhead."""
    last: dict[int, float] = {}
    deltas = []
    for pid, cpu in marks:
        if pid in last:
            deltas.append(cpu - last[pid])
        last[pid] = cpu
    return statistics.median(deltas) if deltas else None


def _probe_batch(
    executor: Executor, args: tuple, calls: int, thread_only: bool = False
) -> tuple[list[float], float, list[tuple[int, float]]]:
    """``calls`` sequential no-op round trips: their latencies, caller CPU per call (the process's, or the calling
    thread's with ``thread_only``), and worker CPU marks."""
    cpu = time.thread_time if thread_only else time.process_time
    latencies, marks = [], []
    cpu_start = cpu()
    for _ in range(calls):
        seconds, mark = _offload_round_trip(executor, _probe, args)
        latencies.append(seconds)
        marks.append(mark)
    return latencies, (cpu() - cpu_start) / calls, marks


def probe_fixed_costs(executor: Executor, calls: int) -> tuple[float, float, float]:
    """(round trip, caller CPU, worker CPU) per no-op call: a short batch, repeated through the run."""
    latencies, caller, marks = _probe_batch(executor, (b"",), calls)
    worker = _per_call_worker_cpu(marks)
    return statistics.median(latencies), caller, worker if worker is not None else caller


def _combine_transport(sweep: TransportModel, probes: Sequence[tuple[float, float, float]]) -> TransportModel:
    """Per-byte slopes from the payload sweep; fixed costs averaged over every probe (the mean, because a
    bimodal machine state should weigh in proportion to how often it occurs, which a median does not)."""
    rt, cc, wc = (statistics.fmean(column) for column in zip(*probes))
    return replace(sweep, round_trip_s=rt, caller_cpu_s=cc, worker_cpu_s=wc)
