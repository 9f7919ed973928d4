"""Calibration end to end on kernels of controlled cost (measurement: generous tolerances, no wall-time asserts)."""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time

import pytest

from offload_tuner import run_kernel_sync, set_executor
from offload_tuner.calibration._calibrate import EFFORTS, KernelPlan, calibrate, measure_transport, warm_pool
from offload_tuner.runtime._policy import KernelCosts, LoadFactors, PolicyKnobs, TransportModel, stream_threshold
from offload_tuner.runtime._profile import validate_profile
from offload_tuner.runtime._registry import spec_for
from tests import controlled

KNOBS = PolicyKnobs(concurrency=4, workers=2, cores=2)
PLAN = KernelPlan(min_size=4, max_size=16384)


@pytest.fixture(scope="module")
def profile(pool):
    specs = [spec_for(f) for f in (controlled.spin, controlled.echo, controlled.bad_sample, controlled.raises_when_big)]
    plans = {s.key: PLAN for s in specs}
    return calibrate(specs, pool, effort=EFFORTS["quick"], knobs=KNOBS, plans=plans)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def worker_cpu_per_call() -> float:
    """Worker CPU per no-op offload, from the OS's accounting of reaped child processes (not the harness's
    probe): two spawn pools that differ only in the number of calls, so start-up costs cancel out."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def run(calls: int) -> float:
        before = _children_cpu()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
            for _ in range(calls):
                ex.submit(controlled.noop).result()
        return _children_cpu() - before

    return max(0.0, (run(800) - run(100)) / 700)


def independent_crossover(pool) -> float:
    """The crossover from constants measured without the harness: per-element compute inline and in a
    worker, and CPU per offload.

    With 4 callers, 2 workers and 2 cores the binding constraint is CPU: offloading pays once
    ``(F + c_worker * n) / 2 < c_inline * n``, F being the CPU an offloaded call adds on the caller and in
    the worker (pickling 64-byte elements is noise next to that; the latency/concurrency term binds only
    when a round trip exceeds ``2F + c_worker * n``, far from it here). A worker is not always as fast as the
    caller on a shared VM (up to 1.5x slower measured), and the crossover is sensitive to it:
    ``n = F / (2 c_inline - c_worker)``.
    """
    n = 2000
    args = controlled._payload(n)
    start = time.perf_counter()
    for _ in range(20):
        controlled.spin(*args)
    per_element = (time.perf_counter() - start) / 20 / n
    for _ in range(4):  # wake both workers
        pool.submit(controlled.timed_spin, *args).result()
    in_worker = statistics.median(pool.submit(controlled.timed_spin, *args).result() for _ in range(20)) / n
    set_executor(pool)
    try:
        for _ in range(20):
            run_kernel_sync(controlled.noop, offload_if=True)
        cpu = time.process_time()
        for _ in range(300):
            run_kernel_sync(controlled.noop, offload_if=True)
        caller_cpu = (time.process_time() - cpu) / 300
    finally:
        set_executor(None)
    return (caller_cpu + worker_cpu_per_call()) / max(2 * per_element - in_worker, 0.25 * per_element)


def test_threshold_lands_within_3x_of_the_independent_crossover(pool):
    # This VM's two vCPUs run this kernel at ~1.0 or ~2.0 us per element depending on which one a process
    # lands on and when (14 back-to-back probes: the worker/inline compute ratio ranged 0.5-1.6), and the
    # crossover moves with both. So the independent constants are measured on both sides of the
    # calibration, the fit must land within 3x of the range they span, and a calibration may be repeated
    # up to twice when the machine changed state under it: a harness that is wrong (a cost term missing,
    # a unit slip) misses in every attempt; every attempt's figures are in the failure message.
    spec = spec_for(controlled.spin)
    # Production calls of 1k-8k elements (1-8 ms of pure compute each, tiny arguments): offloading them
    # must pay under load. Over the whole calibrated range most calls take microseconds, a round lasts
    # ~15 ms and inline and offloaded tie within the noise, so "never" would be an honest answer there.
    plan = dataclasses.replace(PLAN, workload_range=(1024, 8192))
    attempts = []
    for _ in range(3):
        before = independent_crossover(pool)
        profile = calibrate([spec], pool, effort=EFFORTS["quick"], knobs=KNOBS, plans={spec.key: plan})
        after = independent_crossover(pool)
        entry = profile["kernels"][spec.key]
        assert entry["status"] == "ok", entry.get("error")
        # The per-size crossover of the harness's isolated fits (the concurrent phase then measures
        # candidates around the model's proposal and picks one; that part is unit-tested on synthetic data).
        costs = dataclasses.replace(KernelCosts.from_json(entry["costs"]), load=LoadFactors())
        transport = TransportModel.from_json(profile["transport"]["model"])
        fitted = stream_threshold(costs, transport, KNOBS)  # None (never) is a miss like any other
        attempts.append(
            {
                "fitted": fitted,
                "independent": (round(before), round(after)),
                "worker_compute_ratio": costs.worker_compute_ratio,
                "threshold": entry["threshold"],
                "load": entry["load"]["reason"],
            }
        )
        # Offloading 1-8 ms calls to two idle workers pays; with a core taken by something else on this
        # shared VM, the concurrent phase honestly measures "never" as fast (seen: 2 of 4 runs next to a CPU
        # burner), so that too is a state the machine may be in, and the attempt is repeated.
        if (
            fitted is not None
            and min(before, after) / 3 <= fitted <= max(before, after) * 3
            and entry["threshold"] is not None
        ):
            break
    else:
        pytest.fail(
            f"the fitted crossover missed the independent one, or the phase never offloaded, in every "
            f"attempt: {attempts}"
        )
    lo, hi = entry["interval"]
    assert lo is not None and lo <= entry["threshold"] and (hi is None or entry["threshold"] <= hi)


def test_pure_transport_kernel_never_offloads(profile):
    entry = profile["kernels"]["tests.controlled:echo"]
    assert entry["threshold"] is None
    # The payload grows with the size, in band or through shared memory: the harness saw it.
    samples = entry["samples"]
    carried = [i + o for i, o in zip(samples["bytes_in"], samples["oob_bytes"])]
    assert carried[-1] > carried[0] * 100


def test_failures_are_recorded_and_do_not_stop_the_others(profile):
    bad = profile["kernels"]["tests.controlled:bad_sample"]
    assert bad["status"] == "failed" and "cannot build inputs" in bad["error"]
    big = profile["kernels"]["tests.controlled:raises_when_big"]
    assert big["status"] == "failed" and "ArithmeticError" in big["error"] and "too big" in big["error"]
    assert profile["kernels"]["tests.controlled:spin"]["status"] == "ok"


def test_profile_is_valid_json_data_with_samples_models_and_fingerprints(profile):
    import json

    parsed = validate_profile(json.loads(json.dumps(profile, allow_nan=False)))
    spin = parsed.kernels["tests.controlled:spin"].data
    assert spin["code_fingerprint"].startswith("sha256:")
    assert len(spin["samples"]["size"]) >= 6
    assert all(len(v) >= 3 for v in spin["samples"]["compute_values_s"])
    assert set(spin["costs"]) >= {"compute", "caller_serial", "worker_serial", "nbytes"}
    assert spin["validation"]["median_abs_rel_error"] is not None
    host = profile["host"]
    assert {"hostname", "cpu_model", "logical_cores", "python_version", "platform", "libraries"} <= set(host)
    assert profile["executor"]["kind"] == "process" and profile["executor"]["workers"] == 2


def test_transport_sweep_sees_fixed_and_per_byte_costs(pool):
    warm_pool(pool, 2)
    model, rows = measure_transport(pool, EFFORTS["quick"])
    assert 1e-6 < model.round_trip_s < 0.05  # generous: tens of us to a few ms on any machine
    assert model.round_trip_per_byte_s > 0  # a MiB costs more than nothing
    assert rows["round_trip_s"][-1] > rows["round_trip_s"][0]
    assert model.caller_cpu_s > 0 and model.worker_cpu_s > 0


def test_each_size_s_arguments_are_built_once_per_kernel(pool):
    """The ladder's largest sizes are measured again by the validation and the GIL probe: a slow ``sample(n)``
    (the row kernels' pure-Python builders) is paid once per size, not once per phase."""
    from collections import Counter

    from offload_tuner.calibration._calibrate import measure_kernel
    from tests.test_policy import transport

    built: Counter = Counter()
    spec = spec_for(controlled.spin)

    def counting(n: int) -> tuple:
        built[n] += 1
        return spec.sample(n)

    counted = dataclasses.replace(spec, sample=counting)
    knobs = PolicyKnobs(concurrency=4, workers=2, cores=2)
    result = measure_kernel(
        counted,
        pool,
        transport(150e-6, 20e-6, 20e-6),
        knobs,
        EFFORTS["quick"],
        KernelPlan(min_size=4, max_size=16384, workload_range=(16, 4096)),
    )
    assert result.entry["status"] == "ok", result.entry.get("error")
    top = max(result.samples.size)
    assert top in result.entry["validation"]["size"]  # measured again after the ladder ...
    assert result.gil_points and top in [n for n, _ in result.gil_points]
    assert built[top] == 1 and max(built.values()) == 1  # ... from the arguments built for it
