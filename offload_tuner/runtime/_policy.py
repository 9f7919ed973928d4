"""The policy (pure): fitted cost models + knobs in, per-call costs and a threshold out.

The objective, written down
---------------------------
A co-hosted asyncio service has two serial resources: the event-loop thread (one) and the pool's
workers (``workers``), all sharing ``cores`` CPUs. For a call of size ``n``:

* inline, the loop thread is busy for ``C(n)`` (the kernel's compute time);
* offloaded, the loop thread is still busy for ``Sc(n) + oc(B)`` — pickling the arguments and
  unpickling the result happen on the caller holding the GIL, plus the executor's caller-side CPU per
  call — a worker is busy for ``W(n) = r*C(n) + Sw(n) + ow(B)`` (its compute, its own unpickling and
  pickling, its per-call overhead), and the caller waits ``L(n) = T(B) + Sc(n) + Sw(n) + r*C(n)``,
  where ``B(n)`` is the bytes moved and ``T(B)`` the executor's round trip for that many bytes.

**Throughput of the co-hosted process (default).** Picture the reference workload: ``concurrency``
callers awaiting calls whose sizes are log-uniform over the kernel's calibrated range (the plan can
narrow it). Offloading every call from size ``T`` up, the workload completes no sooner than
``max(loop, worker / workers, (loop + worker) / cores, sum(latency) / concurrency)``: whichever of the
loop thread, the pool, the CPUs or the callers' own waiting saturates first. ``T`` minimises that,
preferring the smallest ``T`` among near-ties (see ``TIE_TOLERANCE``). Small calls stay inline once
large ones keep the workers and cores busy: offloading them would add pickling and executor CPU to
free a loop that is not the bottleneck. The same arithmetic says "never" where serialisation costs as
much as the work (``Sc(n) >= C(n)``).

**Per-size view.** :func:`stream_threshold` answers the narrower question "is a saturated stream of
size-``n`` calls faster offloaded?"; ``explain`` shows it.

**Loop-blocking budget (default 100 ms).** Services offload to keep their event loop responsive, and
asyncio itself calls a callback slow at 100 ms (``loop.slow_callback_duration``). So a call whose
predicted inline time exceeds ``loop_budget_s`` is also offloaded whenever offloading blocks the loop for
less time than running it inline: throughput subject to that limit. ``loop_budget_s=None`` turns it off.

**Under load.** Calibration times calls one at a time on an idle machine; under the reference workload
offloaded calls cost more (the caller unpickles results while the workers hold the cores, the pool's
threads compete for the GIL). :class:`LoadFactors`, fitted from a concurrent phase of calibration
(:mod:`_choice`), scale the inline, loop-side and worker-side terms so that predicted makespans match the
ones measured under that load.

The threshold is the smallest size from which calls are offloaded: ``0`` when offloading pays even
for the smallest calls, ``None`` when it never does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from offload_tuner.runtime._cores import usable_cores
from offload_tuner.runtime._costmodel import CostModel
from offload_tuner.runtime._transport_model import (
    TransportModel as TransportModel,
)  # re-exported: where users of the policy find it

DEFAULT_CONCURRENCY = 4
"""Calls typically in flight at once (callers awaiting kernels), e.g. four co-hosted workers."""
GRID_POINTS_PER_DOUBLING = 8
"""Resolution of the threshold search before the final integer bisection."""
DEFAULT_LOOP_BUDGET_S = 0.1
"""asyncio's own ``slow_callback_duration``: a call blocking the loop longer than this is offloaded
whenever offloading blocks it less."""
OBJECTIVES = ("throughput", "latency")
"""What calibration's measurement under load decides by (``PolicyKnobs.objective``): the makespan of the reference
workload (the default, this module's model), or the p99 latency of its calls as their callers see it
(``calibrate --objective latency``, :mod:`offload_tuner.calibration._latency`). The model's own threshold
(:func:`threshold`) is the throughput objective's either way: retune keeps a latency profile's thresholds."""


@dataclass(frozen=True, slots=True)
class PolicyKnobs:
    """What the user tunes; stored in the profile so thresholds can be recomputed without measuring."""

    concurrency: int = DEFAULT_CONCURRENCY
    workers: int = 1
    cores: int = field(default_factory=usable_cores)  # the cores this process may use (quota, affinity)
    loop_budget_s: float | None = DEFAULT_LOOP_BUDGET_S
    objective: str = "throughput"
    """What the measurement under load decides by: one of ``OBJECTIVES``."""

    def __post_init__(self) -> None:
        for name in ("concurrency", "workers", "cores"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"policy knob {name} must be an integer >= 1, got {value!r}")
        budget = self.loop_budget_s
        if budget is not None and not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
            raise ValueError(f"policy knob loop_budget_s must be a positive number of seconds or None, got {budget!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"policy knob objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicyKnobs:
        """Knobs as a profile stored them; a stored ``loop_budget_s: null`` means the budget was off."""
        keys = ("concurrency", "workers", "cores", "loop_budget_s", "objective")
        return cls(**{k: data[k] for k in keys if k in data})


@dataclass(frozen=True, slots=True)
class LoadFactors:
    """Multipliers that turn costs timed one call at a time into costs under the reference load.

    ``inline`` scales compute on the loop thread; ``offload_loop`` the caller-side time of an offloaded
    call (pickling, unpickling the result, the executor's caller CPU); ``offload_worker`` the worker's
    time and the offloaded latency. ``1.0`` everywhere is the isolated model. Fitted by
    :func:`offload_tuner.calibration._loadfactors.fit_load_factors` from makespans measured under load.
    """

    inline: float = 1.0
    offload_loop: float = 1.0
    offload_worker: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"load factor {name} must be a positive finite number, got {value!r}")

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> LoadFactors:
        if not isinstance(data, Mapping):
            raise ValueError(f"load_factors must be an object, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"load_factors has unknown field(s): {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class KernelCosts:
    """One kernel's fitted curves against input size."""

    compute: CostModel
    caller_serial: CostModel
    worker_serial: CostModel
    nbytes: CostModel
    worker_compute_ratio: float = 1.0
    """Compute time inside a worker over compute time inline, measured at a few sizes."""
    load: LoadFactors = LoadFactors()
    """Corrections measured under the reference load (identity: the isolated model)."""
    oob_bytes: CostModel | None = None
    """Bytes of a call's contiguous buffers (arguments and result): from ``oob_from`` up they go out of band,
    through shared memory, and ``nbytes`` counts the rest; below it they travel in band with the rest. None: every
    byte is in ``nbytes`` (profiles from before the shared-memory transport, kernels without buffers)."""
    oob_from: float | None = None
    """The size from which the buffers go out of band (None: never)."""

    def to_json(self) -> dict[str, Any]:
        data = {
            "compute": self.compute.to_json(),
            "caller_serial": self.caller_serial.to_json(),
            "worker_serial": self.worker_serial.to_json(),
            "nbytes": self.nbytes.to_json(),
            "worker_compute_ratio": self.worker_compute_ratio,
            "load_factors": self.load.to_json(),
        }
        if self.oob_bytes is not None:
            data["oob_bytes"] = self.oob_bytes.to_json()
            data["oob_from"] = self.oob_from
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KernelCosts:
        ratio = data.get("worker_compute_ratio", 1.0)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
            raise ValueError(f"worker_compute_ratio must be a positive number, got {ratio!r}")
        return cls(
            CostModel.from_json(data["compute"]),
            CostModel.from_json(data["caller_serial"]),
            CostModel.from_json(data["worker_serial"]),
            CostModel.from_json(data["nbytes"]),
            float(ratio),
            LoadFactors.from_json(data.get("load_factors", {})),
            CostModel.from_json(data["oob_bytes"]) if data.get("oob_bytes") is not None else None,
            _size_or_none(data.get("oob_from"), "oob_from"),
        )


def _size_or_none(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a size >= 0 or null, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted seconds for one call of size ``n`` (what ``explain`` prints)."""

    size: float
    inline_s: float
    """Loop-thread time when run inline (= its latency)."""
    offload_loop_s: float
    """Loop-thread time when offloaded (pickling on the caller + executor overhead)."""
    offload_worker_s: float
    offload_latency_s: float
    inline_period_s: float
    """Seconds per call in a saturated stream, inline."""
    offload_period_s: float
    """Seconds per call in a saturated stream, offloaded."""

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def predict(costs: KernelCosts, transport: TransportModel, knobs: PolicyKnobs, n: float) -> Prediction:
    compute = costs.compute.predict(n)
    caller_serial = costs.caller_serial.predict(n)
    worker_serial = costs.worker_serial.predict(n)
    nbytes = costs.nbytes.predict(n)
    oob = 0.0
    if costs.oob_bytes is not None:  # the buffers: out of band from oob_from, in band below it
        if costs.oob_from is not None and n >= costs.oob_from:
            oob = costs.oob_bytes.predict(n)
        else:
            nbytes += costs.oob_bytes.predict(n)
    worker_compute = compute * costs.worker_compute_ratio
    f = costs.load
    inline = compute * f.inline
    loop = (caller_serial + transport.caller_cpu(nbytes, oob)) * f.offload_loop
    worker = (worker_compute + worker_serial + transport.worker_cpu(nbytes, oob)) * f.offload_worker
    latency = (transport.round_trip(nbytes, oob) + caller_serial + worker_serial + worker_compute) * f.offload_worker
    return Prediction(float(n), inline, loop, worker, latency, inline, makespan(loop, worker, latency, knobs))


def makespan(loop: float, worker: float, latency: float, knobs: PolicyKnobs) -> float:
    """Completion time of work that needs ``loop`` seconds of the loop thread, ``worker`` seconds of the
    pool and ``latency`` seconds of the callers' sequential waiting: whichever resource saturates first
    (the loop thread, the workers, the cores they share, or the callers themselves)."""
    return max(loop, worker / knobs.workers, (loop + worker) / knobs.cores, latency / knobs.concurrency)


def offload_pays(prediction: Prediction, knobs: PolicyKnobs) -> bool:
    """The decision at one size, by the objective in this module's docstring."""
    return prediction.offload_period_s < prediction.inline_period_s or over_budget(prediction, knobs)


def over_budget(prediction: Prediction, knobs: PolicyKnobs) -> bool:
    """Inline, the call would block the loop past the budget, and offloading blocks it less."""
    budget = knobs.loop_budget_s
    return budget is not None and prediction.inline_s > budget and prediction.offload_loop_s < prediction.inline_s


def stream_threshold(
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    size_range: tuple[float, float] | None = None,
) -> int | None:
    """Per-size view: smallest size from which a saturated stream of same-size calls is faster offloaded.

    Ignores the mix of sizes: it assumes the pool would otherwise idle. Kept for ``explain`` and as a
    bound; :func:`threshold` (the workload objective) is what profiles use.
    """
    return _switch_point(lambda n: offload_pays(predict(costs, transport, knobs, n), knobs), costs, size_range)


def budget_threshold(
    costs: KernelCosts, transport: TransportModel, knobs: PolicyKnobs, size_range: tuple[float, float] | None = None
) -> int | None:
    """Smallest size from which every call would block the loop past the budget inline while offloading
    blocks it less (``None``: no budget, or no such size up to ``1.1 * max`` of the range)."""
    if knobs.loop_budget_s is None:
        return None
    return _switch_point(lambda n: over_budget(predict(costs, transport, knobs, n), knobs), costs, size_range)


GUARD_SEARCH_TOP = 2**40
"""How far :func:`guard_size` looks: past any real input, well inside the floats the cost models return."""


def guard_size(
    costs: KernelCosts, transport: TransportModel, knobs: PolicyKnobs, measured_range: tuple[float, float]
) -> tuple[int, bool] | None:
    """:func:`budget_threshold` up to ``GUARD_SEARCH_TOP`` on the fits' extrapolation, and whether it lies past the
    measured top: the runtime offloads from there whatever the threshold. None with the budget off, or where at the
    top offloading blocks the loop no less: a kernel whose offloaded loop time grows faster gets no guard."""
    over = (lambda n: over_budget(predict(costs, transport, knobs, n), knobs)) if knobs.loop_budget_s else None
    size = _switch_point(over, costs, measured_range, GUARD_SEARCH_TOP) if over is not None else None
    return None if size is None else (max(1, size), max(1, size) > measured_range[1])


def _switch_point(
    holds: Callable[[int], bool],
    costs: KernelCosts,
    size_range: tuple[float, float] | None,
    search_top: int | None = None,
) -> int | None:
    """Smallest size from which ``holds`` stays true, searched over ``[0, 1.1 * max]`` of the range (the trusted
    window) or ``[0, search_top]``: a log grid to find the last switch from false to true, then bisection."""
    _lo, hi = size_range if size_range is not None else costs.compute.size_range
    top = max(1, math.ceil(hi * 1.1)) if search_top is None else search_top
    grid = _log_grid(1, top)
    verdicts = [holds(n) for n in grid]
    if not verdicts[-1]:
        return None
    # Walk down from the top while it holds; the first size where it does not bounds the switch.
    i = len(grid) - 1
    while i > 0 and verdicts[i - 1]:
        i -= 1
    if i == 0:
        return 0 if holds(0) else 1
    low, high = grid[i - 1], grid[i]  # holds(low) is False, holds(high) is True
    while high - low > 1:
        mid = (low + high) // 2
        if holds(mid):
            high = mid
        else:
            low = mid
    return high


GIL_RELEASING_MAX = 0.25
"""A kernel that holds up a busy event loop's thread for more than this share of its run time, as calibration
measured it running in a thread (:mod:`offload_tuner.calibration._gil`), is never sent to threads: there it
would still block the loop. Pure-Python kernels hold it nearly all the time, numpy's C loops hardly at all."""
THREAD_MARGIN = 2.0
"""The thread lane pays from the size where the kernel's compute that no longer holds the loop,
``(1 - gil_hold) * C(n)``, is at least this many times the hand-off (the hand-off itself is paid on top, so
the loop nets at least one hand-off's worth; a call that saves 10 us for 10 us of hand-off gains nothing)."""


def thread_threshold(
    costs: KernelCosts, gil_hold: float, fixed_s: float, size_range: tuple[float, float] | None = None
) -> int | None:
    """Smallest size from which a kernel that releases the GIL runs in the thread pool: inline it blocks the
    loop ``C(n)``; in a thread, the hand-off ``fixed_s`` plus the share of ``C(n)`` it still holds the GIL.
    None for a kernel holding the GIL (``gil_hold > GIL_RELEASING_MAX``) or when it never pays in the range."""
    if not 0 <= gil_hold <= 1 or not 0 <= fixed_s < math.inf:
        raise ValueError(
            f"thread_threshold() needs gil_hold in [0, 1] and a finite fixed_s >= 0, got {gil_hold!r}, {fixed_s!r}"
        )
    if gil_hold > GIL_RELEASING_MAX:
        return None

    def saved(n: float) -> float:
        return costs.compute.predict(n) * costs.load.inline * (1 - gil_hold)

    return _switch_point(lambda n: saved(n) > THREAD_MARGIN * fixed_s, costs, size_range)


WORKLOAD_POINTS = 96
"""Sizes the reference workload is discretised into (log-spaced): fine enough that the threshold moves
by < 6% per step over a 100x range, small enough that the search is O(points^2) ~ 10^4 operations."""
TIE_TOLERANCE = 0.05
"""Thresholds whose predicted makespan is within this fraction of the best are ties, and the smallest
wins. The models' own errors (fit 2-15%, the pool's fixed cost drifting run to run) make smaller
differences meaningless, and the predicted optimum sits where the loop thread is planned 100% busy,
right before the cliff of running everything inline; the smallest tied threshold blocks the loop less
and keeps headroom."""


def workload_makespan(
    predictions: Sequence[Prediction],
    knobs: PolicyKnobs,
    offload_from: int,
    weights: Sequence[float] | None = None,
) -> float:
    """Predicted completion time of the reference workload when calls ``predictions[offload_from:]``
    are offloaded and the rest run inline (in size order; one call per prediction, or ``weights`` calls).

    The loop thread, the pool's workers, the cores and the callers' own sequential waiting each bound
    it: ``max(loop, worker / workers, cpu / cores, sum(latency) / concurrency)``.
    """
    inline, loop, worker, latency = partition_sums(predictions, offload_from, weights)
    return makespan(inline + loop, worker, inline + latency, knobs)


def partition_sums(
    predictions: Sequence[Prediction], offload_from: int, weights: Sequence[float] | None = None
) -> tuple[float, float, float, float]:
    """(inline seconds, offloaded loop-thread, worker and latency seconds) when ``predictions[offload_from:]``
    are offloaded: kept apart so load factors can scale each side (see :mod:`_choice`). ``weights``: calls
    per prediction (default one each)."""
    if weights is None:
        inline = sum(p.inline_s for p in predictions[:offload_from])
        rest = predictions[offload_from:]
        return (
            inline,
            sum(p.offload_loop_s for p in rest),
            sum(p.offload_worker_s for p in rest),
            sum(p.offload_latency_s for p in rest),
        )
    inline = sum(p.inline_s * w for p, w in zip(predictions[:offload_from], weights[:offload_from]))
    tail = list(zip(predictions[offload_from:], weights[offload_from:]))
    return (
        inline,
        sum(p.offload_loop_s * w for p, w in tail),
        sum(p.offload_worker_s * w for p, w in tail),
        sum(p.offload_latency_s * w for p, w in tail),
    )


def threshold(
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    workload_range: tuple[float, float] | None = None,
) -> int | None:
    """The threshold that minimises the co-hosted service's completion time on a reference workload.

    The reference workload is ``concurrency`` callers issuing calls whose sizes are log-uniform over
    ``workload_range`` (default: the kernel's calibrated range). Offloading every call from size ``T``
    up, ``T`` is chosen to minimise :func:`workload_makespan`; among near-ties the smallest ``T`` wins.
    Small calls run inline because, once large calls keep the workers and cores busy, the loop thread
    is the cheapest place to run them: offloading them adds pickling and executor CPU and frees a loop
    that is not the bottleneck. With a ``loop_budget_s``, every size whose inline time exceeds it and
    whose offloaded loop time is shorter is offloaded too.

    Returns ``None`` (never) when running every call inline is best, ``0`` when offloading pays even for
    the smallest sizes.
    """
    lo, hi = workload_range if workload_range is not None else costs.compute.size_range
    lo, hi = max(1.0, lo), max(1.0, hi)
    return mix_threshold(costs, transport, knobs, _log_points(lo, hi, WORKLOAD_POINTS))


def mix_threshold(
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    sizes: Sequence[float],
    weights: Sequence[float] | None = None,
) -> int | None:
    """:func:`threshold` for an explicit mix: ``sizes`` ascending, ``weights`` calls of each (default one).
    The smallest split within ``TIE_TOLERANCE`` of the best makespan, then the loop budget's cap over the
    mix's range. ``offload-tuner retune`` passes the mix production recorded."""
    chosen = mix_optimum(costs, transport, knobs, sizes, weights)
    return budget_capped(chosen, budget_threshold(costs, transport, knobs, (sizes[0], sizes[-1])))


def budget_capped(chosen: int | None, budget_from: int | None) -> int | None:
    """``chosen`` lowered to the budget size ``budget_from`` (:func:`budget_threshold`) where it would run calls
    predicted past the loop budget inline (``None``, never, runs them all inline); unchanged without one."""
    if budget_from is not None and (chosen is None or budget_from < chosen):
        return budget_from
    return chosen


def mix_optimum(
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    sizes: Sequence[float],
    weights: Sequence[float] | None = None,
) -> int | None:
    """:func:`mix_threshold` before the loop budget's cap: the makespan's choice alone (so a caller can say
    whether the budget decided)."""
    if not sizes:
        raise ValueError("mix_threshold() needs at least one size")
    predictions = [predict(costs, transport, knobs, n) for n in sizes]
    spans = [workload_makespan(predictions, knobs, k, weights) for k in range(len(sizes) + 1)]
    best = min(spans)
    k = next(i for i, span in enumerate(spans) if span <= best * (1 + TIE_TOLERANCE))
    chosen: int | None
    if k == len(sizes):
        chosen = None
    elif k == 0:
        chosen = 0 if offload_pays(predict(costs, transport, knobs, 1), knobs) else math.ceil(sizes[0])
    else:
        chosen = math.ceil(sizes[k])
    return chosen


def _log_points(lo: float, hi: float, count: int) -> list[float]:
    if hi <= lo:
        return [lo]
    ratio = (hi / lo) ** (1 / (count - 1))
    return [lo * ratio**k for k in range(count)]


def recompute_thresholds(profile: Mapping[str, Any], knobs: PolicyKnobs) -> dict[str, int | None]:
    """What-if: thresholds from a profile's stored models under other knobs, without measuring again.

    ``profile`` is the profile's JSON data; kernels without fitted costs (failed) are left out.
    """
    transport = TransportModel.from_json(profile["transport"]["model"])
    out: dict[str, int | None] = {}
    for key, entry in profile["kernels"].items():
        if "costs" in entry:
            costs = KernelCosts.from_json(entry["costs"])
            workload = entry.get("workload_range") or costs.compute.size_range
            out[key] = threshold(costs, transport, knobs, (float(workload[0]), float(workload[1])))
    return out


def _log_grid(start: int, stop: int) -> list[int]:
    """Distinct integers from ``start`` to ``stop`` spaced evenly in log, ending exactly at ``stop``."""
    points = {start, stop}
    if stop > start:
        steps = max(1, math.ceil(math.log2(stop / start) * GRID_POINTS_PER_DOUBLING))
        ratio = (stop / start) ** (1 / steps)
        points.update(round(start * ratio**k) for k in range(steps + 1))
    return sorted(p for p in points if start <= p <= stop)
