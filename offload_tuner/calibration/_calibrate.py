"""Calibration (impure orchestration): measure each kernel on this host, fit, apply the policy, build a profile.

Layers: :mod:`_measure` times things; :mod:`_transport` measures the executor and :mod:`_kernel` each kernel alone
(what to time: size ladders, the transport sweep, validation round trips); :mod:`_fit` turns samples into models,
:mod:`_policy` turns models into a proposed threshold, :mod:`_loadphase` measures the proposals under the
reference load and :mod:`_choice` picks from those measurements; this module runs them in order and
:mod:`_profile` writes the result.
"""

from __future__ import annotations

import statistics
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from offload_tuner.calibration._candidates import Candidate
from offload_tuner.calibration._choice import _fmt, thread_lane_wins
from offload_tuner.calibration._gil import thread_fixed_cost, thread_section
from offload_tuner.calibration._kernel import HANG_FACTOR, KernelResult, measure_kernel, same_result
from offload_tuner.calibration._loadphase import LoadPhase, Rounds, measure_thread_lane, measure_under_load
from offload_tuner.calibration._measure import clock
from offload_tuner.calibration._settings import EFFORTS, Effort, KernelPlan, Progress, _silent
from offload_tuner.calibration._siblings import Siblings
from offload_tuner.calibration._transport import (
    _combine_transport,
    calibrated_min_bytes,
    measure_transport,
    probe_fixed_costs,
    warm_pool,
)
from offload_tuner.runtime._backends import describe_executor
from offload_tuner.runtime._extrapolate import EXTRAPOLATION_MARGIN, extrapolated_offload, shared_stream_gain
from offload_tuner.runtime._host import host_fingerprint
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, guard_size, predict
from offload_tuner.runtime._profile import SCHEMA_VERSION, measured_top
from offload_tuner.runtime._registry import KernelSpec

if TYPE_CHECKING:
    from offload_tuner.calibration._shared import SharedChoice

__all__ = [  # the entry points; the CLI, tests and benchmarks import these names from here
    "EFFORTS",
    "Effort",
    "KernelPlan",
    "KernelResult",
    "calibrate",
    "finalize_kernel",
    "measure_kernel",
    "measure_transport",
    "same_result",
    "warm_pool",
]


def finalize_kernel(
    result: KernelResult,
    executor: Executor,
    transport: TransportModel,
    knobs: PolicyKnobs,
    effort: Effort,
    progress: Progress = _silent,
    thread_fixed_s: float | None = None,
    siblings: Siblings | None = None,
    limit_s: float = 60.0,
) -> dict[str, Any]:
    """Model error under the final transport model, then the concurrent phase: threshold and interval. With
    ``siblings`` the phase runs in the multi-process shape (:mod:`_siblings`), each wait bounded by ``limit_s``."""
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
            siblings=siblings,
            limit_s=limit_s,
        )
    except Exception as exc:  # the kernel, the pool or a sibling failed under load: record it, calibrate the others
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
    entry["guard"] = _guard(phase.costs, transport, knobs, entry["calibrated_range"])
    entry.update(_extrapolation(phase.costs, transport, knobs, entry, t, phase.entry.get("tied", ())))
    if result.gil_points and thread_fixed_s is not None:
        entry["thread"] = _thread_lane(result, phase, thread_fixed_s, workload, knobs, effort, progress, siblings)
    return entry


def _guard(
    costs: KernelCosts, transport: TransportModel, knobs: PolicyKnobs, measured: Sequence[float]
) -> dict[str, Any] | None:
    """The entry's ``guard``: from which size the runtime offloads whatever the threshold (:func:`guard_size`)."""
    found = guard_size(costs, transport, knobs, (float(measured[0]), float(measured[1])))
    return None if found is None else {"size": found[0], "extrapolated": found[1]}


def _extrapolation(
    costs: KernelCosts,
    transport: TransportModel,
    knobs: PolicyKnobs,
    entry: Mapping[str, Any],
    t: int | None,
    tied: Sequence[int | None] = (),
) -> dict[str, Any]:
    """The entry's ``extrapolated_offload``: past the calibrated top, where the measured threshold ``t`` offloads
    nothing, the size from which the model under load predicts offloading pays (:func:`extrapolated_offload`); and
    ``extrapolation_withheld``, why there is none although the model found one (else None).

    Withheld where the measurement contradicted the model at the top: the model predicts offloading pays there by
    the margin, yet no threshold offloading within the range measured as good as running inline (``t`` and every
    one ``tied`` with it offload nothing up to the top). The model proposes, the measurement decides; past the top
    there is no measurement, and a model already wrong at its edge is not trusted beyond it. A tie with an
    offloading threshold is no contradiction: the measurement could not tell them apart."""
    measured = (float(entry["calibrated_range"][0]), measured_top(entry) or float(entry["calibrated_range"][1]))
    guard = entry["guard"]["size"] if entry.get("guard") else None
    found = extrapolated_offload(costs, transport, knobs, measured, t, guard)
    if found is None:
        return {"extrapolated_offload": None, "extrapolation_withheld": None}
    top = measured[1]
    at_top = shared_stream_gain(predict(costs, transport, knobs, max(1, int(top))), knobs)
    if at_top >= EXTRAPOLATION_MARGIN and all(c is None or c > top for c in (t, *tied)):
        why = (
            f"at the calibrated top {top:g} the model under load predicts offloading a stream of calls pays "
            f"{at_top:.2f}x, but no threshold offloading within the range measured as fast as running inline: past the "
            "top, the model is not trusted where the measurement contradicted it"
        )
        return {"extrapolated_offload": None, "extrapolation_withheld": why}
    return {"extrapolated_offload": {"size": found[0], "gain": round(found[1], 3)}, "extrapolation_withheld": None}


def _thread_rounds(load: Rounds) -> Rounds:
    """The thread lane's phase: two rounds at least and 60% of the process phase's budget (its candidates
    share the process phase's stream, already sized, and it only runs for kernels that release the GIL)."""
    return replace(load, min_rounds=min(load.min_rounds, 2), budget_s=load.budget_s * 0.6)


def _thread_lane(
    result: KernelResult,
    phase: LoadPhase,
    fixed_s: float,
    workload: tuple[float, float],
    knobs: PolicyKnobs,
    effort: Effort,
    progress: Progress,
    siblings: Siblings | None = None,
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
                siblings=siblings,
            )
    except Exception as exc:  # the kernel failed in a thread under load: no thread lane, the rest stands
        section.update(threshold=None, reason=f"thread lane's concurrent phase failed: {type(exc).__name__}: {exc}")
        return section
    process = [Candidate.from_json(c) for c in phase.entry["candidates"]]
    band = max(choice.band, float(phase.entry.get("tie_band", 0.0)))
    wins, how = thread_lane_wins(
        process, phase.entry["chosen"], candidates, choice.threshold, knobs.loop_budget_s, band, knobs.objective
    )
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
    processes: int = 1,
) -> dict[str, Any]:
    """Calibrate ``specs`` against ``executor``; return the profile as plain JSON-ready data. With ``shared``
    the kernels share one event loop in production: after each is calibrated alone, their thresholds are tuned
    on one stream of all their calls (:mod:`_shared`). With ``processes`` N > 1 the service runs N processes,
    each with a pool like ``executor`` (``knobs`` should say its share of the cores): every concurrent phase
    runs with N-1 sibling processes beside it (:mod:`_siblings`), and the profile's executor records the shape.

    The executor's fixed costs drift on a shared VM (idle vCPUs wake slowly), so they are probed again
    between kernels and averaged; thresholds are computed at the end, under that average.
    """
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be an integer >= 1, got {processes!r}")
    started = clock()
    executor_info = describe_executor(executor)
    executor_info.update(processes=processes, workers_per_process=executor_info.get("workers", knobs.workers))
    progress("start", kernels=len(specs), effort=effort.name)
    warm_pool(executor, knobs.workers)
    thread_fixed = thread_fixed_cost(effort.transport_calls * 5)
    sweep, sweep_rows = measure_transport(executor, effort, progress)
    shared_memory = sweep_rows.pop("shared_memory")
    with calibrated_min_bytes(shared_memory["min_bytes"]):  # every kernel measured with the packaging it will get
        results, probes = _measure_each(specs, executor, sweep, knobs, effort, plans or {}, progress, started)
        transport = _combine_transport(sweep, probes)
        finals = _Finals(executor, transport, knobs, effort, progress, thread_fixed, plans or {}, started)
        kernels = _finalize_each(results, finals, processes)
        shared_section = None
        if shared:
            shared_section = _shared_phase(results, kernels, executor, transport, knobs, effort, progress, processes)
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
            "shared_memory": shared_memory,
        },
        "thread": {"fixed_s": thread_fixed},
        "duration_s": round(clock() - started, 2),
        "kernels": kernels,
        **({} if shared_section is None else {"shared": shared_section}),
    }


class _Finals(NamedTuple):
    """What every kernel's concurrent phase shares."""

    executor: Executor
    transport: TransportModel
    knobs: PolicyKnobs
    effort: Effort
    progress: Progress
    thread_fixed: float
    plans: Mapping[str, KernelPlan]
    started: float


def _finalize_each(results: Sequence[KernelResult], f: _Finals, processes: int) -> dict[str, Any]:
    """Every kernel's concurrent phase, in turn. With ``processes`` > 1, beside ``processes - 1`` siblings:
    started on the first phase (every kernel was measured alone without them), stopped whatever happens, and
    each of their waits bounded by the kernel's time limit."""
    kernels: dict[str, Any] = {}
    siblings = Siblings(processes - 1, workers=f.knobs.workers, callers=f.knobs.concurrency) if processes > 1 else None
    try:
        for index, result in enumerate(results):
            key = result.spec.key
            plan = f.plans.get(key)
            limit = (plan.time_limit_s if plan else None) or f.effort.kernel_budget_s * HANG_FACTOR + 10
            kernels[key] = finalize_kernel(
                result, f.executor, f.transport, f.knobs, f.effort, f.progress, f.thread_fixed, siblings, limit
            )
            f.progress(
                "kernel_done",
                kernel=key,
                entry=kernels[key],
                index=index,
                total=len(results),
                elapsed=clock() - f.started,
            )
    finally:
        if siblings is not None:
            siblings.close()
    return kernels


def _measure_each(
    specs: Sequence[KernelSpec],
    executor: Executor,
    sweep: TransportModel,
    knobs: PolicyKnobs,
    effort: Effort,
    plans: Mapping[str, KernelPlan],
    progress: Progress,
    started: float,
) -> tuple[list[KernelResult], list[tuple[float, float, float]]]:
    """Every kernel measured alone, in turn, under the transport estimate so far; the executor's fixed costs are
    probed before the first kernel and after each. Returns the results and the probes."""
    probes = [probe_fixed_costs(executor, effort.transport_calls)]
    results: list[KernelResult] = []
    for index, spec in enumerate(specs):
        progress("kernel", kernel=spec.key, index=index, total=len(specs), elapsed=clock() - started)
        estimate = _combine_transport(sweep, probes)
        results.append(measure_kernel(spec, executor, estimate, knobs, effort, plans.get(spec.key), progress))
        probes.append(probe_fixed_costs(executor, effort.transport_calls))
        progress("kernel_measured", kernel=spec.key, index=index, total=len(specs), elapsed=clock() - started)
    return results, probes


def _shared_phase(
    results: Sequence[KernelResult],
    kernels: dict[str, Any],
    executor: Executor,
    transport: TransportModel,
    knobs: PolicyKnobs,
    effort: Effort,
    progress: Progress,
    processes: int = 1,
) -> dict[str, Any]:
    """Tune the calibrated kernels' thresholds on their shared stream and write the choices into their entries
    (the alone choice stays in each ``shared`` section). With ``processes`` > 1 every run has ``processes - 1``
    siblings going round the same stream beside it (stopped whatever happens). Returns the profile's ``shared``
    section; a failure leaves every alone threshold as it was and says why there."""
    from concurrent.futures import ThreadPoolExecutor

    from offload_tuner.calibration._shared import measure_shared, unrated, weighting

    started = clock()
    members = _shared_members(results, kernels)
    keys = [m.spec.key for m in members]
    if len(members) < 2:
        error = (
            f"a shared stream needs at least two calibrated kernels, {len(members)} calibrated; every "
            "threshold is the kernel's alone"
        )
        progress("shared_failed", error=error)
        return {"kernels": keys, "error": error}
    progress("shared", kernels=keys, weighted_by=weighting(members), unrated=unrated(members))
    siblings = Siblings(processes - 1, workers=knobs.workers, callers=knobs.concurrency) if processes > 1 else None
    try:
        with ThreadPoolExecutor(knobs.workers, thread_name_prefix="offload-tuner-shared") as threads:
            choices, stream = measure_shared(
                members,
                {"process": executor, "thread": threads},
                knobs,
                rounds=effort.load,
                progress=progress,
                siblings=siblings,
                limit_s=effort.kernel_budget_s * HANG_FACTOR + 10,
            )
        updates = [(sc, _shared_update(kernels[sc.key], sc, transport, knobs)) for sc in choices]
    except Exception as exc:  # a kernel or a pool failed on the shared stream: the alone thresholds stand
        error = f"the shared stream failed ({type(exc).__name__}: {exc}); every threshold is the kernel's alone"
        progress("shared_failed", error=error)
        return {"kernels": keys, "error": error}
    finally:
        if siblings is not None:
            siblings.close()
    by_kernel = {key: sum(1 for (k, _), _n in stream if k == key) for key in keys}
    missing = {"unrated": unrated(members)} if unrated(members) else {}  # the plan's rates ignored: these lack one
    stream_of = {"weighted_by": weighting(members), "calls_by_kernel": by_kernel, **missing}
    _apply_shared(kernels, updates, keys, len(stream), progress, stream_of)
    return {
        "kernels": keys,
        "calls": len(stream),
        **stream_of,
        "processes": processes,
        "duration_s": round(clock() - started, 3),
    }


def _shared_members(results: Sequence[KernelResult], kernels: Mapping[str, Any]) -> list[Any]:
    """The calibrated kernels the shared stream is made of (:func:`_shared.member_from_entry`)."""
    from offload_tuner.calibration._shared import member_from_entry

    members = []
    for result in results:
        costs = result.costs
        member = (
            None if costs is None else member_from_entry(result.spec, kernels[result.spec.key], costs.compute.predict)
        )
        if member is not None:
            members.append(member)
    return members


def _apply_shared(
    kernels: dict[str, Any],
    updates: Sequence[tuple[Any, dict[str, Any]]],
    keys: list[str],
    calls: int,
    progress: Progress,
    stream_of: Mapping[str, Any],
) -> None:
    """Write every shared choice into its kernel's entry (all or nothing: every update was built before), with how
    the stream weighed its kernels and this kernel's calls in it."""
    for sc, update in updates:
        entry = kernels[sc.key]
        own = stream_of["calls_by_kernel"][sc.key]
        entry["shared"] = {**sc.to_json(keys, calls), "weighted_by": stream_of["weighted_by"], "own_calls": own}
        if sc.lane == "thread":
            entry["shared"]["alone_reason"] = entry["thread"].get("reason")
            entry["thread"].update(update)
        else:
            entry["shared"]["alone_reason"] = entry["load"].get("reason")
            entry.update(update)
        progress("shared_done", kernel=sc.key, lane=sc.lane, alone=sc.alone, threshold=sc.choice.threshold)


def _shared_update(
    entry: Mapping[str, Any], sc: SharedChoice, transport: TransportModel, knobs: PolicyKnobs
) -> dict[str, Any]:
    """The fields of a kernel's entry (or of its thread section) the shared choice replaces; a new process-lane
    threshold brings its own extrapolated offload size (a "never" the stream chose gets one, an offloading one
    none)."""
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
        **_extrapolation(costs, transport, knobs, entry, t, sc.choice.tied),
    }


def _from(t: int | None) -> str:
    """A thread lane's threshold as words: "never", "always", "from 512" (:func:`_choice._fmt`, with "from")."""
    return _fmt(t) if t in (None, 0) else f"from {t}"
