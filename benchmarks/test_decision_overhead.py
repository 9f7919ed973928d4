"""Decision overhead: the new profile-driven run_kernel against the old three-line boolean gate.

Both run side by side in one pytest-benchmark session on an inline tiny kernel (the profile says
"inline" for this size, so no executor is ever used). The new path includes the production statistics
(every call counted, one in 64 timed by default); ``test_profile_decision_timing_every_call`` is the
worst case, every call timed. Each round awaits ``CALLS`` calls; divide by
``CALLS`` for per-call figures. ``python -m benchmarks.summarize`` turns the JSON into the README table.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

import offload_tuner
from benchmarks.bench_kernels import tiny
from offload_tuner.runtime._host import host_identity
from offload_tuner.runtime._profile import SCHEMA_VERSION
from offload_tuner.runtime._registry import code_fingerprint, kernel_key

CALLS = 1000
XS = [1, 2, 3]

_OLD_EXECUTOR = None


async def old_run_kernel(fn, *args, offload_if):
    """The gate this library replaces, verbatim in spirit: a boolean picked by hand at the call site."""
    if offload_if and _OLD_EXECUTOR is not None:
        return await asyncio.get_running_loop().run_in_executor(_OLD_EXECUTOR, fn, *args)
    return fn(*args)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A profile that keeps ``tiny`` inline at this size and an (idle, never started) process pool."""
    path = tmp_path_factory.mktemp("profile") / "profile.json"
    key = kernel_key(tiny)
    path.write_text(
        json.dumps(
            {
                "schema": SCHEMA_VERSION,
                "host": host_identity(),
                "executor": {"kind": "process"},
                "kernels": {key: {"threshold": 256, "status": "ok", "code_fingerprint": code_fingerprint(tiny)}},
            }
        )
    )
    pool = ProcessPoolExecutor(max_workers=1)
    offload_tuner.set_executor(pool)
    offload_tuner.load_profile(path)
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
    offload_tuner.set_executor(None)
    offload_tuner.unload_profile()
    pool.shutdown()


def _rounds(loop, make_call):
    async def many():
        for _ in range(CALLS):
            await make_call()

    return lambda: loop.run_until_complete(many())


@pytest.mark.benchmark(group="decision-overhead")
def test_old_boolean_gate(benchmark, installed):
    xs = XS
    run = _rounds(installed, lambda: old_run_kernel(tiny, xs, offload_if=len(xs) >= 256))
    benchmark.extra_info["calls_per_round"] = CALLS
    benchmark(run)


@pytest.mark.benchmark(group="decision-overhead")
def test_profile_decision(benchmark, installed):
    xs = XS
    assert offload_tuner.decide(tiny, xs).offload is False  # the benchmark must measure the inline path
    run = _rounds(installed, lambda: offload_tuner.run_kernel(tiny, xs))
    benchmark.extra_info["calls_per_round"] = CALLS
    benchmark(run)


PAIRED_ROUNDS = 200


@pytest.mark.benchmark(group="decision-overhead-paired")
def test_added_cost_paired(benchmark, installed):
    """The figure the goal is judged on. The tests above run one after the other and a shared VM's speed
    drifts within minutes; here the old gate and ``run_kernel`` alternate, block by block (``CALLS`` calls
    each, which goes first alternating too), in every round, so drift hits both alike. The median of the
    per-round differences per call is in ``extra_info`` (``python -m benchmarks.summarize`` prints it)."""
    _paired(benchmark, installed)


@pytest.mark.benchmark(group="decision-overhead-paired")
def test_added_cost_paired_with_both_lanes(benchmark, installed, tmp_path):
    """The same with a thread pool installed beside the process pool and ``tiny`` in the thread lane
    (``set_executors``): the lane is chosen once per kernel, so a call pays nothing more."""

    def thread_lane(data: dict) -> None:
        data["kernels"][kernel_key(tiny)]["thread"] = {"gil_hold": 0.0, "threshold": 256}

    with _thread_pool_and_profile(tmp_path, thread_lane):
        assert "releases the GIL" in offload_tuner.decide(tiny, XS).reason
        _paired(benchmark, installed)


@contextmanager
def _thread_pool_and_profile(tmp_path: Path, edit: Callable[[dict], None]) -> Iterator[None]:
    """A one-thread pool installed beside the fixture's process pool, and the fixture's profile as ``edit`` changes
    it; both put back afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    installed_profile = offload_tuner.current_profile().source
    data = json.loads(Path(installed_profile).read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    before = offload_tuner.get_executors()
    threads = ThreadPoolExecutor(1)
    offload_tuner.set_executors({**before, "thread": threads})
    offload_tuner.load_profile(path)
    try:
        yield
    finally:
        offload_tuner.set_executors(before)
        offload_tuner.load_profile(installed_profile)
        threads.shutdown()


def _paired(benchmark, installed) -> None:  # type: ignore[no-untyped-def]
    xs = XS
    assert offload_tuner.decide(tiny, xs).offload is False
    run_kernel = offload_tuner.run_kernel
    _pair_blocks(
        benchmark,
        installed,
        lambda: old_run_kernel(tiny, xs, offload_if=len(xs) >= 256),
        lambda: run_kernel(tiny, xs),
    )


def _pair_blocks(benchmark, installed, make_baseline, make_call) -> None:  # type: ignore[no-untyped-def]
    """``CALLS`` awaited calls of each kind per round, alternating which goes first; the per-call difference
    (``make_call`` minus ``make_baseline``) of every round goes to ``extra_info``."""
    differences: list[float] = []

    async def block(make) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        for _ in range(CALLS):
            await make()
        return time.perf_counter() - start

    async def pair() -> None:
        if len(differences) % 2 == 0:
            base = await block(make_baseline)
            new = await block(make_call)
        else:
            new = await block(make_call)
            base = await block(make_baseline)
        differences.append((new - base) / CALLS)

    benchmark.extra_info["calls_per_round"] = 2 * CALLS
    benchmark.pedantic(
        lambda: installed.run_until_complete(pair()), rounds=PAIRED_ROUNDS, iterations=1, warmup_rounds=4
    )
    _record_pairs(benchmark, differences)


@pytest.mark.benchmark(group="decision-overhead-reinstall")
def test_reinstalling_the_installed_executor_paired(benchmark, installed):
    """A service that installs its pool per request: ``set_executor(pool)`` with that very pool installed, then
    the call, against the call alone. Re-installing what is installed changes nothing (the resolved entries,
    lanes and placers stay), so it costs the argument checks and one comparison."""
    xs = XS
    pool = offload_tuner.get_executor()
    set_executor, run_kernel = offload_tuner.set_executor, offload_tuner.run_kernel
    assert pool is not None and offload_tuner.decide(tiny, xs).offload is False

    def reinstall_then_call():  # type: ignore[no-untyped-def]
        set_executor(pool)
        return run_kernel(tiny, xs)

    _pair_blocks(benchmark, installed, lambda: run_kernel(tiny, xs), reinstall_then_call)
    assert offload_tuner.get_executor() is pool


def _record_pairs(benchmark, differences: list[float]) -> None:  # type: ignore[no-untyped-def]
    """The median and quartiles of the per-round differences into ``extra_info`` (``benchmarks.summarize``)."""
    measured = differences[-PAIRED_ROUNDS:]  # pedantic's warm-up rounds ran the pair too
    quartiles = statistics.quantiles(measured, n=4) if len(measured) > 1 else measured * 3
    benchmark.extra_info["paired_added_s"] = statistics.median(measured)
    benchmark.extra_info["paired_added_quartiles_s"] = [quartiles[0], quartiles[2]]
    benchmark.extra_info["paired_rounds"] = len(measured)


@pytest.mark.benchmark(group="decision-overhead")
def test_profile_decision_timing_every_call(benchmark, installed):
    xs = XS
    previous = offload_tuner.sample_every(1)
    try:
        run = _rounds(installed, lambda: offload_tuner.run_kernel(tiny, xs))
        benchmark.extra_info["calls_per_round"] = CALLS
        benchmark(run)
    finally:
        offload_tuner.sample_every(previous)


@pytest.mark.benchmark(group="decision-overhead")
def test_profile_decision_adapting(benchmark, installed):
    """Online adaptation on: its steps run on their own thread (none falls in this run), and the hot path
    gains nothing but the exploration test on timed calls."""
    xs = XS
    offload_tuner.adapt(True, every_s=3600)
    try:
        run = _rounds(installed, lambda: offload_tuner.run_kernel(tiny, xs))
        benchmark.extra_info["calls_per_round"] = CALLS
        benchmark(run)
    finally:
        offload_tuner.adapt(False)


@pytest.mark.benchmark(group="decision-overhead")
def test_caller_override(benchmark, installed):
    """offload_if=False given by the caller: the old API through the new function."""
    xs = XS
    run = _rounds(installed, lambda: offload_tuner.run_kernel(tiny, xs, offload_if=len(xs) >= 256))
    benchmark.extra_info["calls_per_round"] = CALLS
    benchmark(run)


@pytest.mark.benchmark(group="decision-overhead-sync")
def test_sync_plain_call(benchmark, installed):
    xs = XS
    benchmark.extra_info["calls_per_round"] = CALLS
    benchmark(lambda: [tiny(xs) for _ in range(CALLS)])


@pytest.mark.benchmark(group="decision-overhead-sync")
def test_sync_profile_decision(benchmark, installed):
    xs = XS
    run_sync = offload_tuner.run_kernel_sync
    benchmark.extra_info["calls_per_round"] = CALLS
    benchmark(lambda: [run_sync(tiny, xs) for _ in range(CALLS)])


@pytest.mark.benchmark(group="decision-overhead-placement")
@pytest.mark.parametrize("pools", ["idle", "threads busy"])
def test_placement_added_cost_paired(benchmark, installed, tmp_path, pools):
    """Placement's own cost: the decision for an offloaded call (``_decision.offload_target``, nothing submitted) with both
    pools installed and ``tiny`` offloaded from size 0 in the thread lane, placed per call between the thread and
    the process pool, against the very same decision with placement off (its static thread lane). The two
    snapshots are built once and swapped block by block, alternating which goes first, as in the pairs above.
    Inline calls never reach placement (the figures above). ``idle``: nothing in flight, the precomputed choice;
    ``threads busy``: both threads taken (the counters set as two calls in flight would), a pass over the
    candidates (the call still goes to threads: the host's cores are busy)."""
    from offload_tuner.runtime import _decision, _placer, _state
    from tests.support import synthetic_costs, synthetic_transport

    def placeable(data: dict) -> None:
        data["kernels"][kernel_key(tiny)].update(
            threshold=0, costs=synthetic_costs(1e-6), thread={"gil_hold": 0.0, "threshold": 0}
        )
        data.update(
            transport={"model": synthetic_transport(2e-4)},
            thread={"fixed_s": 6e-5},
            policy={"concurrency": 4, "workers": 1, "cores": 2, "loop_budget_s": 0.1},
        )

    target, args = _decision.offload_target, (XS,)
    with _thread_pool_and_profile(tmp_path, placeable):
        placed = _state._snapshot
        assert type(target(tiny, args, None)).__name__ == "Booking"
        _placer.set_placement(False)
        static = _state._snapshot
        assert type(target(tiny, args, None)).__name__ == "Lane"
        try:
            if pools == "threads busy":
                placed.gil_free.inflight, placed.gil_free.work = 2, 1.0
            _pair_snapshots(benchmark, target, args, static, placed)
        finally:
            placed.gil_free.inflight, placed.gil_free.work = 0, 0.0
            _placer.set_placement(True)


def _pair_snapshots(benchmark, target, args, static, placed) -> None:  # type: ignore[no-untyped-def]
    from offload_tuner.runtime import _state

    differences: list[float] = []

    def block(snapshot) -> float:  # type: ignore[no-untyped-def]
        _state._snapshot = snapshot
        start = time.perf_counter()
        for _ in range(CALLS):
            target(tiny, args, None)
        return time.perf_counter() - start

    def pair() -> None:
        if len(differences) % 2 == 0:
            off, on = block(static), block(placed)
        else:
            on, off = block(placed), block(static)
        differences.append((on - off) / CALLS)

    benchmark.extra_info["calls_per_round"] = 2 * CALLS
    benchmark.pedantic(pair, rounds=PAIRED_ROUNDS, iterations=1, warmup_rounds=4)
    _record_pairs(benchmark, differences)
