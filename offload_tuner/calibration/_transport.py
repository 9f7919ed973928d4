"""The executor's transport (impure): what a round trip, a byte of payload and a call's packaging cost, measured
with no-op probes; the helpers that time a kernel inside a worker live here too, beside the probes they mirror."""

from __future__ import annotations

import os
import pickle
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Any

from offload_tuner.calibration._measure import clock
from offload_tuner.calibration._settings import Effort, Progress, _silent
from offload_tuner.runtime._backends import PICKLE_PROTOCOL, dumps_call, invoke_pickled
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
    """One real offloaded call through the production packaging; returns (seconds, result)."""
    start = clock()
    blob = executor.submit(invoke_pickled, dumps_call(fn, args)).result()
    result = pickle.loads(blob)
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
    """Fixed round trip and per-byte cost of the executor, plus caller- and worker-side CPU per call."""
    rows: dict[str, list[float]] = {k: [] for k in ("bytes", "round_trip_s", "caller_cpu_s", "worker_cpu_s")}
    for payload_size in sorted(effort.transport_payloads):
        progress("transport", payload=payload_size)
        args = (bytes(payload_size),)
        nbytes = len(dumps_call(_probe, args)) + len(pickle.dumps((0, 0.0), protocol=PICKLE_PROTOCOL))
        calls = effort.transport_calls if payload_size < (1 << 20) else max(10, effort.transport_calls // 3)
        per_chunk = max(2, calls // TRANSPORT_CHUNKS)
        _offload_round_trip(executor, _probe, args)  # warm this payload size
        latencies, worker_marks, chunk_cpu = [], [], []
        for _ in range(TRANSPORT_CHUNKS):
            chunk_latencies, cpu, marks = _probe_batch(executor, args, per_chunk)
            latencies += chunk_latencies
            worker_marks += marks
            chunk_cpu.append(cpu)
        caller_cpu = statistics.median(chunk_cpu)
        worker_cpu = _per_call_worker_cpu(worker_marks)
        rows["bytes"].append(nbytes)
        rows["round_trip_s"].append(statistics.median(latencies))
        rows["caller_cpu_s"].append(caller_cpu)
        rows["worker_cpu_s"].append(worker_cpu if worker_cpu is not None else caller_cpu)
    rt = _anchored_line(rows["bytes"], rows["round_trip_s"])
    cc = _anchored_line(rows["bytes"], rows["caller_cpu_s"])
    wc = _anchored_line(rows["bytes"], rows["worker_cpu_s"])
    return TransportModel(*rt, *cc, *wc), rows


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


def _probe_batch(executor: Executor, args: tuple, calls: int) -> tuple[list[float], float, list[tuple[int, float]]]:
    """``calls`` sequential no-op round trips: their latencies, caller CPU per call, and worker CPU marks."""
    latencies, marks = [], []
    cpu_start = time.process_time()
    for _ in range(calls):
        seconds, mark = _offload_round_trip(executor, _probe, args)
        latencies.append(seconds)
        marks.append(mark)
    return latencies, (time.process_time() - cpu_start) / calls, marks


def probe_fixed_costs(executor: Executor, calls: int) -> tuple[float, float, float]:
    """(round trip, caller CPU, worker CPU) per no-op call: a short batch, repeated through the run."""
    latencies, caller, marks = _probe_batch(executor, (b"",), calls)
    worker = _per_call_worker_cpu(marks)
    return statistics.median(latencies), caller, worker if worker is not None else caller


def _combine_transport(sweep: TransportModel, probes: Sequence[tuple[float, float, float]]) -> TransportModel:
    """Per-byte slopes from the payload sweep; fixed costs averaged over every probe (the mean, because a
    bimodal machine state should weigh in proportion to how often it occurs, which a median does not)."""
    rt, cc, wc = (statistics.fmean(column) for column in zip(*probes))
    return TransportModel(
        rt, sweep.round_trip_per_byte_s, cc, sweep.caller_cpu_per_byte_s, wc, sweep.worker_cpu_per_byte_s
    )
