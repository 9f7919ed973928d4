"""One kernel measured alone (impure): a size ladder timed inline and through the production packaging, fitted,
checked by real offloaded round trips, and its GIL hold probed. :mod:`_calibrate` runs the kernels in turn;
the concurrent phase (:mod:`_loadphase`) then decides their thresholds."""

from __future__ import annotations

import pickle
import statistics
import traceback
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

from offload_tuner.calibration._gil import gil_hold, point_sizes
from offload_tuner.calibration._measure import Timing, clock, time_call
from offload_tuner.calibration._packaging_costs import packaging_sides
from offload_tuner.calibration._settings import Effort, KernelPlan, Progress, _silent, stated_mix
from offload_tuner.calibration._transport import _offload_round_trip, _timed_in_worker
from offload_tuner.runtime import _shm
from offload_tuner.runtime._backends import PICKLE_PROTOCOL
from offload_tuner.runtime._costmodel import CostModel
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, threshold
from offload_tuner.runtime._registry import KernelSpec


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
    oob_bytes: list[int] = field(default_factory=list)
    """Bytes each call sends out of band through shared memory (both directions); not in ``bytes_in/out``."""
    buffer_bytes: list[int] = field(default_factory=list)
    """Bytes of the call's contiguous buffers, whatever their size (what goes out of band once large enough)."""
    rest_bytes: list[int] = field(default_factory=list)
    """Bytes pickled in band when every buffer goes out of band."""

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
            "oob_bytes": list(self.oob_bytes),
            "buffer_bytes": list(self.buffer_bytes),
            "rest_bytes": list(self.rest_bytes),
        }


ArgsCache = dict[int, tuple]
"""One kernel's ``sample(n)`` results while it is measured: the ladder's largest sizes are built again for the
validation and the GIL probe, and a kernel's own pure-Python ``sample`` can take half a second there (the row
kernels: about half their ladder's time is building arguments). Kernels are pure, so reusing arguments is
what every timing loop already does."""


def _build_args(spec: KernelSpec, n: int, cache: ArgsCache | None = None) -> tuple:
    if cache is not None and n in cache:
        return cache[n]
    if spec.sample is None:
        raise KernelFailed("kernel has no sample(n) function, so it cannot be calibrated")
    try:
        args = spec.sample(n)
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
    compute = time_call(lambda: fn(*args), repeats=effort.repeats, min_time=effort.min_time)
    sides = packaging_sides(fn, args, result)  # the production packaging: what each side pays with the GIL held
    try:
        caller = time_call(sides.caller, repeats=effort.repeats, min_time=effort.min_time)
        worker = time_call(sides.worker, repeats=effort.repeats, min_time=effort.min_time)
    finally:
        sides.close()
    samples.size.append(n)
    samples.compute.append(compute)
    samples.caller_serial.append(caller)
    samples.worker_serial.append(worker)
    samples.bytes_in.append(sides.bytes_in)
    samples.bytes_out.append(sides.bytes_out)
    samples.oob_bytes.append(sides.oob_bytes)
    samples.buffer_bytes.append(sides.buffer_bytes)
    samples.rest_bytes.append(sides.rest_bytes)
    return compute


def _ladder(
    spec: KernelSpec,
    plan: KernelPlan,
    effort: Effort,
    samples: KernelSamples,
    progress: Progress,
    cache: ArgsCache | None = None,
) -> str:
    """Grow sizes geometrically until compute or serialisation passes the ceiling, the max size or the budget.
    Returns what stopped it, for the entry to say why a stated mix's top was not reached."""
    started = clock()
    if plan.sizes:
        for n in plan.sizes:
            progress("size", kernel=spec.key, size=n)
            _measure_size(spec, n, _build_args(spec, n, cache), effort, samples)
        return "the plan's explicit sizes"
    n = max(1, plan.min_size)
    while n <= plan.max_size:
        progress("size", kernel=spec.key, size=n)
        args = _build_args(spec, n, cache)
        compute = _measure_size(spec, n, args, effort, samples)
        heaviest = max(compute.median, samples.caller_serial[-1].median, samples.worker_serial[-1].median)
        spent = clock() - started
        if heaviest >= effort.ceiling_s:
            return f"a call's compute or serialisation passing the {effort.ceiling_s * 1000:g} ms ceiling at size {n}"
        # Predict the next step's cost from the growth so far; stop early if it would blow the budget.
        if spent >= effort.kernel_budget_s or (
            len(samples.size) >= 2 and heaviest * effort.growth**2 * effort.repeats * 3 > effort.kernel_budget_s - spent
        ):
            return f"the effort's {effort.kernel_budget_s:g} s budget per kernel"
        n = max(n + 1, round(n * effort.growth))
    return f"the plan's max_size {plan.max_size}"


def _fit_costs(samples: KernelSamples) -> KernelCosts:
    """Fit every curve; the worker/inline compute ratio is set later, from validation."""
    from offload_tuner.calibration._fit import fit_cost_model

    sizes_b = [float(n) for n in samples.size]
    nbytes = [float(i + o) for i, o in zip(samples.bytes_in, samples.bytes_out)]
    buffers = [float(b) for b in samples.buffer_bytes]
    fits = (
        fit_cost_model(*samples.flat("compute")),
        fit_cost_model(*samples.flat("caller_serial")),
        fit_cost_model(*samples.flat("worker_serial")),
    )
    if not any(samples.oob_bytes) and not (any(buffers) and _shm.in_use()):
        return KernelCosts(*fits, fit_cost_model(sizes_b, nbytes))
    # Buffers that go out of band from some size: in-band bytes and buffer bytes are each a smooth curve; which
    # buffers cross through shared memory is a step, at out_of_band_from.
    buffer_model = fit_cost_model(sizes_b, [max(b, 1.0) for b in buffers])
    rest = fit_cost_model(sizes_b, [float(r) for r in samples.rest_bytes])
    return KernelCosts(*fits, rest, oob_bytes=buffer_model, oob_from=_oob_from(samples, buffer_model))


def _oob_from(samples: KernelSamples, buffers: CostModel) -> float | None:
    """The smallest size from which a call's buffers went out of band at every larger measured size; past the
    measured sizes, where the buffer model reaches the transport's size (None: never, up to 2**40)."""
    start: float | None = None
    for n, oob in sorted(zip(samples.size, samples.oob_bytes), reverse=True):
        if not oob:
            break
        start = float(n)
    if start is not None:
        return start
    size = float(max(samples.size, default=1))
    while size <= 2.0**40:
        if buffers.predict(size) >= _shm.settings.min_bytes:
            return size
        size *= 2
    return None


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
    entry: dict[str, Any] = {"threshold": None, "status": "failed", "code_fingerprint": spec.code_fingerprint()}
    result = KernelResult(spec, entry)
    plan, entry["workload_source"] = stated_mix(plan, spec.workload)
    try:
        _measure_alone(result, executor, transport, knobs, effort, plan, progress)
    except KernelFailed as exc:
        entry["error"] = str(exc)
        entry["traceback"] = traceback.format_exception(exc.__cause__ or exc)[-6:]
    entry["duration_s"] = round(clock() - started, 3)
    return result


def _measure_alone(
    result: KernelResult,
    executor: Executor,
    transport: TransportModel,
    knobs: PolicyKnobs,
    effort: Effort,
    plan: KernelPlan,
    progress: Progress,
) -> None:
    """The ladder under the watchdog, the fits, the validation round trips and (for a trusted fit) the GIL hold,
    recorded in ``result``. Raises :class:`KernelFailed` where the kernel cannot be measured."""
    spec = result.spec
    if spec.sample is None:
        raise KernelFailed("kernel has no sample(n) function, so it cannot be calibrated")
    samples = KernelSamples()
    cache: ArgsCache = {}  # dropped with this call: only the kernel being measured holds its arguments
    limit = plan.time_limit_s or effort.kernel_budget_s * HANG_FACTOR + 10
    with _Watchdog(limit, spec.key):
        stopped = _ladder(spec, plan, effort, samples, progress, cache)
    _note_short_ladder(result.entry, plan, samples, stopped)
    if len(set(samples.size)) < 2:
        raise KernelFailed(f"only {len(samples.size)} size(s) could be measured within the budget")
    costs, t = _fit_and_refine(spec, samples, transport, knobs, effort, plan, progress, cache)
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
    ratio = _worker_ratio(costs, validation)
    result.costs = replace(costs, worker_compute_ratio=ratio)
    result.samples = samples
    if _record_fits(result.entry, plan, costs, result.costs, validation, samples):
        # the runtime ignores untrusted entries: no time spent on their thread lane
        result.gil_points = _measure_gil(spec, samples.size, effort, result.entry, progress, cache)


def _note_short_ladder(entry: dict[str, Any], plan: KernelPlan, samples: KernelSamples, stopped: str) -> None:
    """A stated mix reaching past the measured top: the entry says how far and what stopped the ladder (the
    choice beyond it rests on the fits' extrapolation). The ladder is not extended yet: that costs time."""
    top = max(samples.size, default=0)
    if plan.workload_range is not None and samples.size and top < plan.workload_range[1]:
        entry["ladder_short"] = {"measured_top": top, "mix_top": plan.workload_range[1], "why": stopped}


def _fit_and_refine(
    spec: KernelSpec,
    samples: KernelSamples,
    transport: TransportModel,
    knobs: PolicyKnobs,
    effort: Effort,
    plan: KernelPlan,
    progress: Progress,
    cache: ArgsCache,
) -> tuple[KernelCosts, int | None]:
    """The ladder's fits and the isolated model's threshold. With ``effort.refine`` (and no explicit ladder), two
    more sizes around that threshold are measured and everything is fitted again."""
    costs = _fit_costs(samples)
    workload = plan.workload_range or costs.compute.size_range
    t = threshold(costs, transport, knobs, workload)
    if not (effort.refine and t is not None and plan.sizes is None):
        return costs, t
    refined = sorted({max(1, int(t / 1.3)), int(t * 1.3)} - set(samples.size))
    for n in refined:
        if samples.size[0] <= n <= samples.size[-1]:
            progress("size", kernel=spec.key, size=n)
            _measure_size(spec, n, _build_args(spec, n, cache), effort, samples)
    _sort_samples(samples)
    costs = _fit_costs(samples)
    return costs, threshold(costs, transport, knobs, workload)


def _worker_ratio(costs: KernelCosts, validation: dict[str, Any]) -> float:
    """Compute in a worker over compute inline, from the validation's in-worker timings."""
    ratios = [w / costs.compute.predict(n) for n, w in zip(validation["size"], validation["worker_compute_s"])]
    ratio = statistics.median(ratios) if ratios else 1.0
    return min(max(ratio, 0.5), 2.0)  # a worker on the same CPU cannot really be 2x off; clamp noise


def _record_fits(
    entry: dict[str, Any],
    plan: KernelPlan,
    fitted: KernelCosts,
    costs: KernelCosts,
    validation: dict[str, Any],
    samples: KernelSamples,
) -> bool:
    """Write the fits (``costs``: ``fitted`` with the worker ratio), the validation and the samples into the
    kernel's entry. Returns whether the fits are trusted; an untrusted entry says why."""
    trusted = fitted.compute.trusted and fitted.caller_serial.trusted
    entry.update(
        status="ok" if trusted else "untrusted",
        calibrated_range=list(fitted.compute.size_range),
        workload_range=list(plan.workload_range or fitted.compute.size_range),
        **({} if plan.compare_with is None else {"compare_with": plan.compare_with}),
        **({} if plan.rate is None else {"rate": plan.rate}),
        fit_error={
            "compute": fitted.compute.cv_error,
            "caller_serial": fitted.caller_serial.cv_error,
            "worker_serial": fitted.worker_serial.cv_error,
        },
        costs=costs.to_json(),
        validation=validation,
        samples=samples.to_json(),
    )
    if not trusted:
        entry["error"] = "; ".join(fitted.compute.notes + fitted.caller_serial.notes) or "fit not trusted"
    return trusted


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


def _sort_samples(samples: KernelSamples) -> None:
    order = sorted(range(len(samples.size)), key=samples.size.__getitem__)
    for name in (
        "size",
        "compute",
        "caller_serial",
        "worker_serial",
        "bytes_in",
        "bytes_out",
        "oob_bytes",
        "buffer_bytes",
        "rest_bytes",
    ):
        values = getattr(samples, name)
        setattr(samples, name, [values[i] for i in order])
