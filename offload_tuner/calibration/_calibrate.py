"""Calibration (impure orchestration): measure each kernel on this host, fit, apply the policy, build a profile.

Layers: :mod:`_measure` times things, this module decides *what* to time (size ladders, the executor's
transport sweep, validation round trips), :mod:`_fit` turns samples into models, :mod:`_policy` turns
models into a proposed threshold, :mod:`_loadphase` measures the proposals under the reference load and
:mod:`_choice` picks from those measurements; :mod:`_profile` writes the result.
"""

from __future__ import annotations

import os
import pickle
import statistics
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from offload_tuner.calibration._choice import Candidate, _fmt, thread_lane_wins
from offload_tuner.calibration._gil import gil_hold, point_sizes, thread_fixed_cost, thread_section
from offload_tuner.calibration._loadphase import Rounds, measure_thread_lane, measure_under_load
from offload_tuner.calibration._measure import Timing, clock, time_call
from offload_tuner.runtime._backends import PICKLE_PROTOCOL, describe_executor, dumps_call, invoke_pickled
from offload_tuner.runtime._host import host_fingerprint
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, predict, threshold
from offload_tuner.runtime._profile import SCHEMA_VERSION
from offload_tuner.runtime._registry import KernelSpec

if TYPE_CHECKING:
    from offload_tuner.calibration._shared import SharedChoice

Progress = Callable[..., None]


def _silent(event: str, **info: Any) -> None:
    return None


@dataclass(frozen=True, slots=True)
class GilEffort:
    """How the GIL hold is measured (:mod:`_gil`)."""

    points: int
    """Sizes, from the top of the ladder down."""
    repeats: int
    window_s: float


@dataclass(frozen=True, slots=True)
class Effort:
    """How hard to measure. ``standard`` aims at <= 60 s for the bundled kernels on a 2-core box."""

    name: str
    repeats: int
    """Raw timings per size (median taken)."""
    min_time: float
    """Seconds one raw timing must last (loops are calibrated to reach it)."""
    ceiling_s: float
    """Stop growing the size ladder once inline compute or serialisation passes this."""
    growth: float
    """Ratio between successive ladder sizes."""
    kernel_budget_s: float
    """Soft cap on seconds spent measuring one kernel."""
    validation_sizes: int
    validation_calls: int
    transport_payloads: tuple[int, ...]
    transport_calls: int
    refine: bool
    """Measure two more ladder sizes around the isolated model's threshold and fit again. Off at standard: the
    isolated threshold no longer decides; it seeds the concurrent phase's candidates (snapped to the half-octave
    grid, with neighbours an octave either side, and the corrected model's proposals after) and places the
    validation sizes, and the refinement cost ~0.8 s a kernel, over half of it the second cross-validated fit."""
    load: Rounds
    """How the concurrent phase spends its time: rounds, run length, budget per kernel."""
    gil: GilEffort = field(default_factory=lambda: GilEffort(2, 1, 0.04))
    """How the GIL hold is measured (:mod:`_gil`): sizes, repeats, seconds per window. One repeat at standard:
    kernels measure ~0.01 or ~0.95, far from the 0.25 cut; the standard calibration of the bundled kernels
    took 59 s against its 60 s goal with two."""


EFFORTS: dict[str, Effort] = {
    "quick": Effort(
        "quick",
        3,
        2e-4,
        0.008,
        2.0,
        1.2,
        2,
        2,
        (0, 65536, 1 << 20),
        40,
        False,
        Rounds(2, 3, 0.04, 0.5, neighbours=False),
        GilEffort(1, 1, 0.03),
    ),
    "standard": Effort(
        "standard",
        5,
        5e-4,
        0.025,
        2.0,
        3.0,
        3,
        4,
        (0, 4096, 65536, 1 << 20, 4 << 20),
        60,
        False,
        Rounds(3, 8, 0.2, 2.5, calls_per_caller=6),
    ),
    "thorough": Effort(
        "thorough",
        15,
        2e-3,
        0.1,
        2**0.5,
        30.0,
        5,
        11,
        (0, 1024, 16384, 131072, 1 << 20, 4 << 20, 16 << 20),
        150,
        True,
        Rounds(5, 15, 0.5, 20.0, calls_per_caller=12),
        GilEffort(3, 3, 0.1),
    ),
}

DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class KernelPlan:
    """Per-kernel overrides from a calibration plan (sizes are in the kernel's own units)."""

    min_size: int = DEFAULT_MIN_SIZE
    max_size: int = DEFAULT_MAX_SIZE
    sizes: tuple[int, ...] | None = None
    """An explicit ladder; skips the adaptive growth."""
    workload_range: tuple[int, int] | None = None
    """Sizes production calls span, for the throughput objective (default: the calibrated range)."""
    time_limit_s: float | None = None
    """Hard limit on one kernel's measurement; default ``HANG_FACTOR`` times the effort's budget + 10 s."""


class KernelFailed(Exception):
    """Measuring one kernel failed (its ``sample`` or the kernel raised); the others go on."""


HANG_FACTOR = 4
"""A kernel still measuring after this many times its soft budget (+10 s) is declared hung."""


class _Watchdog:
    """Interrupts a kernel that hangs inline (SIGALRM, main thread, POSIX): pure-Python loops are
    stopped between bytecodes; a C call that never returns cannot be, and is documented as such."""

    def __init__(self, seconds: float, key: str) -> None:
        import signal
        import threading

        self.seconds, self.key = seconds, key
        self.armed = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()

    def _fire(self, signum: int, frame: Any) -> None:
        raise KernelFailed(f"kernel {self.key} exceeded its time limit of {self.seconds:.0f} s (hung?)")

    def __enter__(self) -> _Watchdog:
        if self.armed:
            import signal

            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            import signal

            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


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


# ---------------------------------------------------------------------------------------------- kernels


@dataclass
class KernelSamples:
    """Raw measurements for one kernel, per ladder size (kept in the profile for notebooks and refits)."""

    size: list[int] = field(default_factory=list)
    compute: list[Timing] = field(default_factory=list)
    caller_serial: list[Timing] = field(default_factory=list)
    worker_serial: list[Timing] = field(default_factory=list)
    bytes_in: list[int] = field(default_factory=list)
    bytes_out: list[int] = field(default_factory=list)

    def flat(self, which: str) -> tuple[list[float], list[float]]:
        """(sizes, values) with every raw value, sizes repeated, for robust fitting."""
        sizes: list[float] = []
        values: list[float] = []
        for n, timing in zip(self.size, getattr(self, which)):
            sizes.extend([float(n)] * len(timing.values))
            values.extend(timing.values)
        return sizes, values

    def to_json(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "compute_s": [t.median for t in self.compute],
            "compute_mad_s": [t.mad for t in self.compute],
            "compute_outliers": [len(t.outliers) for t in self.compute],
            "compute_values_s": [list(t.values) for t in self.compute],
            "caller_serial_s": [t.median for t in self.caller_serial],
            "caller_serial_values_s": [list(t.values) for t in self.caller_serial],
            "worker_serial_s": [t.median for t in self.worker_serial],
            "worker_serial_values_s": [list(t.values) for t in self.worker_serial],
            "bytes_in": list(self.bytes_in),
            "bytes_out": list(self.bytes_out),
        }


ArgsCache = dict[int, tuple]
"""One kernel's ``sample(n)`` results while it is measured: the ladder's largest sizes are built again for the
validation and the GIL probe, and a kernel's own pure-Python ``sample`` can take half a second there (the row
kernels: about half their ladder's time is building arguments). Kernels are pure, so reusing arguments is
what every timing loop already does."""


def _build_args(spec: KernelSpec, n: int, cache: ArgsCache | None = None) -> tuple:
    if cache is not None and n in cache:
        return cache[n]
    try:
        args = spec.sample(n)  # type: ignore[misc]
    except Exception as exc:
        raise KernelFailed(f"sample({n}) raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(args, tuple):
        raise KernelFailed(f"sample({n}) returned {type(args).__name__}, expected a tuple of arguments")
    if cache is not None:
        cache[n] = args
    return args


def _run(spec: KernelSpec, args: tuple, n: int) -> Any:
    try:
        return spec.fn(*args)
    except Exception as exc:
        raise KernelFailed(f"kernel raised {type(exc).__name__} at size {n}: {exc}") from exc


def _measure_size(spec: KernelSpec, n: int, args: tuple, effort: Effort, samples: KernelSamples) -> Timing:
    fn = spec.fn
    result = _run(spec, args, n)
    payload = dumps_call(fn, args)
    result_blob = pickle.dumps(result, protocol=PICKLE_PROTOCOL)
    compute = time_call(lambda: fn(*args), repeats=effort.repeats, min_time=effort.min_time)

    def caller_side() -> None:  # what the caller pays with the GIL held when it offloads
        dumps_call(fn, args)
        pickle.loads(result_blob)

    def worker_side() -> None:  # what the worker pays on top of the compute
        pickle.loads(payload)
        pickle.dumps(result, protocol=PICKLE_PROTOCOL)

    samples.size.append(n)
    samples.compute.append(compute)
    samples.caller_serial.append(time_call(caller_side, repeats=effort.repeats, min_time=effort.min_time))
    samples.worker_serial.append(time_call(worker_side, repeats=effort.repeats, min_time=effort.min_time))
    samples.bytes_in.append(len(payload))
    samples.bytes_out.append(len(result_blob))
    return compute


def _ladder(
    spec: KernelSpec,
    plan: KernelPlan,
    effort: Effort,
    samples: KernelSamples,
    progress: Progress,
    cache: ArgsCache | None = None,
) -> None:
    """Grow sizes geometrically until compute or serialisation passes the ceiling, the max size or the budget."""
    started = clock()
    if plan.sizes:
        for n in plan.sizes:
            progress("size", kernel=spec.key, size=n)
            _measure_size(spec, n, _build_args(spec, n, cache), effort, samples)
        return
    n = max(1, plan.min_size)
    while n <= plan.max_size:
        progress("size", kernel=spec.key, size=n)
        args = _build_args(spec, n, cache)
        compute = _measure_size(spec, n, args, effort, samples)
        heaviest = max(compute.median, samples.caller_serial[-1].median, samples.worker_serial[-1].median)
        spent = clock() - started
        if heaviest >= effort.ceiling_s or spent >= effort.kernel_budget_s:
            break
        # Predict the next step's cost from the growth so far; stop early if it would blow the budget.
        if len(samples.size) >= 2 and heaviest * effort.growth**2 * effort.repeats * 3 > effort.kernel_budget_s - spent:
            break
        n = max(n + 1, round(n * effort.growth))


def _fit_costs(samples: KernelSamples) -> KernelCosts:
    """Fit every curve; the worker/inline compute ratio is set later, from validation."""
    from offload_tuner.calibration._fit import fit_cost_model

    sizes_b = [float(n) for n in samples.size]
    nbytes = [float(i + o) for i, o in zip(samples.bytes_in, samples.bytes_out)]
    return KernelCosts(
        fit_cost_model(*samples.flat("compute")),
        fit_cost_model(*samples.flat("caller_serial")),
        fit_cost_model(*samples.flat("worker_serial")),
        fit_cost_model(sizes_b, nbytes),
    )


def _validate(
    executor: Executor,
    spec: KernelSpec,
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    sizes: Sequence[int],
    effort: Effort,
    progress: Progress,
    cache: ArgsCache | None = None,
) -> dict[str, Any]:
    """Real offloaded round trips at a few sizes against the model's predicted latency."""
    rows: dict[str, list[float]] = {"size": [], "measured_s": [], "worker_compute_s": []}
    for n in sizes:
        progress("validate", kernel=spec.key, size=n)
        args = _build_args(spec, n, cache)
        expected = _run(spec, args, n)
        _seconds, result = _offload_round_trip(executor, spec.fn, args)  # warm: imports in the worker
        if not same_result(result, expected):
            raise KernelFailed(f"offloaded result differs from inline at size {n}")
        trips = [_offload_round_trip(executor, spec.fn, args)[0] for _ in range(effort.validation_calls)]
        inline = costs.compute.predict(n) or 1e-9
        loops = max(1, min(1000, int(effort.min_time / inline)))
        in_worker = executor.submit(_timed_in_worker, spec.fn, args, loops).result()
        rows["size"].append(n)
        rows["measured_s"].append(statistics.median(trips))
        rows["worker_compute_s"].append(in_worker)
    return dict(rows)  # predictions are added by finalize_kernel, under the final transport model


def same_result(a: Any, b: Any) -> bool:
    """Equality that also works for numpy arrays (whose == is elementwise)."""
    try:
        equal = a == b
        if isinstance(equal, bool):
            return equal
        return bool(equal.all())  # numpy arrays
    except Exception:
        return pickle.dumps(a, protocol=PICKLE_PROTOCOL) == pickle.dumps(b, protocol=PICKLE_PROTOCOL)


def _validation_sizes(ladder: Sequence[int], t: int | None, count: int) -> list[int]:
    """Around the threshold (where accuracy matters) and at the top of the range."""
    chosen: list[int] = []
    if t is not None and t > 0:
        chosen += [max(1, int(t / 1.5)), t, int(t * 1.5)]
    chosen.append(ladder[-1])
    lo, hi = ladder[0], ladder[-1]
    unique = sorted({min(max(n, lo), hi) for n in chosen})
    return unique[-count:] if len(unique) > count else unique


@dataclass
class KernelResult:
    """One kernel's measurements and fits, before the final transport model turns them into a threshold."""

    spec: KernelSpec
    entry: dict[str, Any]
    samples: KernelSamples | None = None
    costs: KernelCosts | None = None
    gil_points: list[tuple[int, float]] | None = None
    """(size, GIL hold) measured in a thread; None if it could not be measured."""


def measure_kernel(
    spec: KernelSpec,
    executor: Executor,
    transport: TransportModel,
    knobs: PolicyKnobs,
    effort: Effort,
    plan: KernelPlan | None = None,
    progress: Progress = _silent,
) -> KernelResult:
    """Measure, fit and validate one kernel (``transport`` is the estimate so far, used to aim refinement)."""
    started = clock()
    plan = plan or KernelPlan()
    entry: dict[str, Any] = {"threshold": None, "status": "failed", "code_fingerprint": spec.code_fingerprint()}
    result = KernelResult(spec, entry)
    try:
        if spec.sample is None:
            raise KernelFailed("kernel has no sample(n) function, so it cannot be calibrated")
        samples = KernelSamples()
        cache: ArgsCache = {}  # dropped with this call: only the kernel being measured holds its arguments
        limit = plan.time_limit_s or effort.kernel_budget_s * HANG_FACTOR + 10
        with _Watchdog(limit, spec.key):
            _ladder(spec, plan, effort, samples, progress, cache)
        if len(set(samples.size)) < 2:
            raise KernelFailed(f"only {len(samples.size)} size(s) could be measured within the budget")
        costs = _fit_costs(samples)
        workload = plan.workload_range or costs.compute.size_range
        t = threshold(costs, transport, knobs, workload)
        if effort.refine and t is not None and plan.sizes is None:
            refined = sorted({max(1, int(t / 1.3)), int(t * 1.3)} - set(samples.size))
            for n in refined:
                if samples.size[0] <= n <= samples.size[-1]:
                    progress("size", kernel=spec.key, size=n)
                    _measure_size(spec, n, _build_args(spec, n, cache), effort, samples)
            _sort_samples(samples)
            costs = _fit_costs(samples)
            t = threshold(costs, transport, knobs, workload)
        validation = _validate(
            executor,
            spec,
            costs,
            transport,
            knobs,
            _validation_sizes(samples.size, t, effort.validation_sizes),
            effort,
            progress,
            cache,
        )
        ratios = [w / costs.compute.predict(n) for n, w in zip(validation["size"], validation["worker_compute_s"])]
        ratio = statistics.median(ratios) if ratios else 1.0
        ratio = min(max(ratio, 0.5), 2.0)  # a worker on the same CPU cannot really be 2x off; clamp noise
        result.costs = KernelCosts(costs.compute, costs.caller_serial, costs.worker_serial, costs.nbytes, ratio)
        result.samples = samples
        trusted = costs.compute.trusted and costs.caller_serial.trusted
        entry.update(
            status="ok" if trusted else "untrusted",
            calibrated_range=list(costs.compute.size_range),
            workload_range=list(plan.workload_range or costs.compute.size_range),
            fit_error={
                "compute": costs.compute.cv_error,
                "caller_serial": costs.caller_serial.cv_error,
                "worker_serial": costs.worker_serial.cv_error,
            },
            costs=result.costs.to_json(),
            validation=validation,
            samples=samples.to_json(),
        )
        if not trusted:
            entry["error"] = "; ".join(costs.compute.notes + costs.caller_serial.notes) or "fit not trusted"
        if trusted:  # the runtime ignores untrusted entries: no time spent on their thread lane
            result.gil_points = _measure_gil(spec, samples.size, effort, entry, progress, cache)
    except KernelFailed as exc:
        entry["error"] = str(exc)
        entry["traceback"] = traceback.format_exception(exc.__cause__ or exc)[-6:]
    entry["duration_s"] = round(clock() - started, 3)
    return result


def _measure_gil(
    spec: KernelSpec,
    ladder: Sequence[int],
    effort: Effort,
    entry: dict[str, Any],
    progress: Progress,
    cache: ArgsCache | None = None,
) -> list[tuple[int, float]] | None:
    """The kernel's GIL hold at a few sizes of its ladder (the thread lane's evidence). A failure here costs the
    kernel its thread lane only; it is recorded in the entry."""
    points = []
    try:
        for n in point_sizes(ladder)[: effort.gil.points]:
            progress("gil", kernel=spec.key, size=n)
            points.append(
                (
                    n,
                    gil_hold(
                        spec.fn, _build_args(spec, n, cache), window_s=effort.gil.window_s, repeats=effort.gil.repeats
                    ),
                )
            )
    except Exception as exc:  # the kernel or its sample failed in a thread: no thread lane for it
        entry["thread_error"] = f"{type(exc).__name__}: {exc}"
        return None
    return points or None


def finalize_kernel(
    result: KernelResult,
    executor: Executor,
    transport: TransportModel,
    knobs: PolicyKnobs,
    effort: Effort,
    progress: Progress = _silent,
    thread_fixed_s: float | None = None,
) -> dict[str, Any]:
    """Model error under the final transport model, then the concurrent phase: threshold and interval."""
    entry, costs, samples = result.entry, result.costs, result.samples
    if costs is None or samples is None:
        return entry
    workload = (float(entry["workload_range"][0]), float(entry["workload_range"][1]))
    validation = entry["validation"]
    validation["predicted_s"] = [predict(costs, transport, knobs, n).offload_latency_s for n in validation["size"]]
    errors = [abs(p - m) / m for p, m in zip(validation["predicted_s"], validation["measured_s"]) if m > 0]
    validation["median_abs_rel_error"] = statistics.median(errors) if errors else None
    entry["fit_error"]["offload_latency"] = validation["median_abs_rel_error"]
    try:
        phase = measure_under_load(
            result.spec,
            executor,
            costs,
            transport,
            knobs,
            workload,
            rounds=effort.load,
            progress=progress,
        )
    except Exception as exc:  # the kernel or the pool failed under load: record it, calibrate the others
        entry.update(status="failed", threshold=None, error=f"concurrent phase failed: {type(exc).__name__}: {exc}")
        entry["traceback"] = traceback.format_exception(exc)[-6:]
        return entry
    result.costs = phase.costs
    entry["costs"] = phase.costs.to_json()
    entry["threshold"] = phase.threshold
    entry["interval"] = list(phase.interval)
    entry["load"] = phase.entry
    entry["fit_error"]["makespan_under_load"] = phase.entry["model_error"]
    t = phase.threshold
    entry["at_threshold"] = predict(phase.costs, transport, knobs, t).to_json() if t is not None else None
    if result.gil_points and thread_fixed_s is not None:
        entry["thread"] = _thread_lane(result, phase, thread_fixed_s, workload, knobs, effort, progress)
    return entry


def _thread_rounds(load: Rounds) -> Rounds:
    """The thread lane's phase: two rounds at least and 60% of the process phase's budget (its candidates
    share the process phase's stream, already sized, and it only runs for kernels that release the GIL)."""
    return replace(load, min_rounds=min(load.min_rounds, 2), budget_s=load.budget_s * 0.6)


def _thread_lane(
    result: KernelResult,
    phase: Any,
    fixed_s: float,
    workload: tuple[float, float],
    knobs: PolicyKnobs,
    effort: Effort,
    progress: Progress,
) -> dict[str, Any]:
    """The thread section: the model's threshold from the GIL hold, then, for a kernel that releases the GIL,
    the thread lane's own concurrent phase on the process phase's stream, which decides the threshold and
    whether the thread lane beats the process lane at all."""
    from concurrent.futures import ThreadPoolExecutor

    assert result.gil_points is not None
    section = thread_section(result.gil_points, phase.costs, fixed_s, workload)
    if section["threshold"] is None:
        return section
    if not phase.calls:  # nothing to run the thread lane's phase on: an unmeasured proposal is not kept
        section.update(threshold=None, reason="the thread lane could not be measured under load")
        return section
    section["model_threshold"] = section["threshold"]
    started = clock()
    try:
        with ThreadPoolExecutor(knobs.workers, thread_name_prefix="offload-tuner-lane") as threads:
            choice, candidates = measure_thread_lane(
                result.spec,
                threads,
                section["threshold"],
                phase.calls,
                knobs,
                workload,
                rounds=_thread_rounds(effort.load),
                progress=progress,
                floor=section["floor"],
            )
    except Exception as exc:  # the kernel failed in a thread under load: no thread lane, the rest stands
        section.update(threshold=None, reason=f"thread lane's concurrent phase failed: {type(exc).__name__}: {exc}")
        return section
    process = [
        Candidate(c["threshold"], c["offloaded"], tuple(c["makespan_s"]), tuple(c["lag_p99_s"]), tuple(c["cpu_s"]))
        for c in phase.entry["candidates"]
    ]
    wins, how = thread_lane_wins(process, phase.entry["chosen"], candidates, choice.threshold, knobs.loop_budget_s)
    section["threshold"] = choice.threshold if wins else None
    section["interval"] = list(choice.interval)
    section["reason"] = (
        f"{'thread lane' if wins else 'process lane'} measured faster under load: {how}; thread lane: {choice.reason}"
    )
    section["load"] = {
        "candidates": [c.to_json() for c in candidates],
        "noise": choice.noise,
        "tie_band": choice.band,
        "best": choice.best,
        "tied": list(choice.tied),
        "duration_s": round(clock() - started, 3),
    }
    return section


def _sort_samples(samples: KernelSamples) -> None:
    order = sorted(range(len(samples.size)), key=samples.size.__getitem__)
    for name in ("size", "compute", "caller_serial", "worker_serial", "bytes_in", "bytes_out"):
        values = getattr(samples, name)
        setattr(samples, name, [values[i] for i in order])


# ---------------------------------------------------------------------------------------------- profile


def calibrate(
    specs: Sequence[KernelSpec],
    executor: Executor,
    *,
    effort: Effort,
    knobs: PolicyKnobs,
    plans: Mapping[str, KernelPlan] | None = None,
    progress: Progress = _silent,
    shared: bool = False,
) -> dict[str, Any]:
    """Calibrate ``specs`` against ``executor``; return the profile as plain JSON-ready data. With ``shared``
    the kernels share one event loop in production: after each is calibrated alone, their thresholds are tuned
    on one stream of all their calls (:mod:`_shared`).

    The executor's fixed costs drift on a shared VM (idle vCPUs wake slowly), so they are probed again
    between kernels and averaged; thresholds are computed at the end, under that average.
    """
    started = clock()
    executor_info = describe_executor(executor)
    progress("start", kernels=len(specs), effort=effort.name)
    warm_pool(executor, knobs.workers)
    thread_fixed = thread_fixed_cost(effort.transport_calls * 5)
    sweep, sweep_rows = measure_transport(executor, effort, progress)
    probes = [probe_fixed_costs(executor, effort.transport_calls)]
    results: list[KernelResult] = []
    for index, spec in enumerate(specs):
        progress("kernel", kernel=spec.key, index=index, total=len(specs), elapsed=clock() - started)
        estimate = _combine_transport(sweep, probes)
        result = measure_kernel(spec, executor, estimate, knobs, effort, (plans or {}).get(spec.key), progress)
        results.append(result)
        probes.append(probe_fixed_costs(executor, effort.transport_calls))
        progress("kernel_measured", kernel=spec.key, index=index, total=len(specs), elapsed=clock() - started)
    transport = _combine_transport(sweep, probes)
    kernels: dict[str, Any] = {}
    for index, result in enumerate(results):
        kernels[result.spec.key] = finalize_kernel(result, executor, transport, knobs, effort, progress, thread_fixed)
        progress(
            "kernel_done",
            kernel=result.spec.key,
            entry=kernels[result.spec.key],
            index=index,
            total=len(specs),
            elapsed=clock() - started,
        )
    shared_section = _shared_phase(results, kernels, executor, transport, knobs, effort, progress) if shared else None
    return {
        "schema": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_fingerprint(),
        "executor": executor_info,
        "policy": knobs.to_json(),
        "effort": effort.name,
        "transport": {
            "model": transport.to_json(),
            "sweep": sweep_rows,
            "fixed_probes": [list(p) for p in probes],
        },
        "thread": {"fixed_s": thread_fixed},
        "duration_s": round(clock() - started, 2),
        "kernels": kernels,
        **({} if shared_section is None else {"shared": shared_section}),
    }


def _shared_phase(
    results: Sequence[KernelResult],
    kernels: dict[str, Any],
    executor: Executor,
    transport: TransportModel,
    knobs: PolicyKnobs,
    effort: Effort,
    progress: Progress,
) -> dict[str, Any]:
    """Tune the calibrated kernels' thresholds on their shared stream and write the choices into their entries
    (the alone choice stays in each ``shared`` section). Returns the profile's ``shared`` section; a failure
    leaves every alone threshold as it was and says why there."""
    from concurrent.futures import ThreadPoolExecutor

    from offload_tuner.calibration._shared import measure_shared, member_from_entry

    started = clock()
    members = []
    for result in results:
        costs = result.costs
        member = (
            None if costs is None else member_from_entry(result.spec, kernels[result.spec.key], costs.compute.predict)
        )
        if member is not None:
            members.append(member)
    keys = [m.spec.key for m in members]
    if len(members) < 2:
        error = (
            f"a shared stream needs at least two calibrated kernels, {len(members)} calibrated; every "
            "threshold is the kernel's alone"
        )
        progress("shared_failed", error=error)
        return {"kernels": keys, "error": error}
    progress("shared", kernels=keys)
    try:
        with ThreadPoolExecutor(knobs.workers, thread_name_prefix="offload-tuner-shared") as threads:
            choices, stream = measure_shared(
                members, {"process": executor, "thread": threads}, knobs, rounds=effort.load, progress=progress
            )
        updates = [(sc, _shared_update(kernels[sc.key], sc, transport, knobs)) for sc in choices]
    except Exception as exc:  # a kernel or a pool failed on the shared stream: the alone thresholds stand
        error = f"the shared stream failed ({type(exc).__name__}: {exc}); every threshold is the kernel's alone"
        progress("shared_failed", error=error)
        return {"kernels": keys, "error": error}
    for sc, update in updates:  # all or nothing: every update was built before any entry changes
        entry = kernels[sc.key]
        entry["shared"] = sc.to_json(keys, len(stream))
        if sc.lane == "thread":
            entry["shared"]["alone_reason"] = entry["thread"].get("reason")
            entry["thread"].update(update)
        else:
            entry["shared"]["alone_reason"] = entry["load"].get("reason")
            entry.update(update)
        progress("shared_done", kernel=sc.key, lane=sc.lane, alone=sc.alone, threshold=sc.choice.threshold)
    return {"kernels": keys, "calls": len(stream), "duration_s": round(clock() - started, 3)}


def _shared_update(
    entry: Mapping[str, Any], sc: SharedChoice, transport: TransportModel, knobs: PolicyKnobs
) -> dict[str, Any]:
    """The fields of a kernel's entry (or of its thread section) the shared choice replaces."""
    t, interval = sc.choice.threshold, list(sc.choice.interval)
    if sc.lane == "thread":
        return {
            "threshold": t,
            "interval": interval,
            "reason": f"tuned on the shared stream ({_from(sc.alone)} alone): {sc.choice.reason}",
        }
    costs = KernelCosts.from_json(entry["costs"])
    return {
        "threshold": t,
        "interval": interval,
        "at_threshold": None if t is None else predict(costs, transport, knobs, t).to_json(),
    }


def _from(t: int | None) -> str:
    """A thread lane's threshold as words: "never", "always", "from 512" (:func:`_choice._fmt`, with "from")."""
    return _fmt(t) if t in (None, 0) else f"from {t}"


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
