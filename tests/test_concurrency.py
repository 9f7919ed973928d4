"""Thousands of concurrent calls from tasks and threads while the profile is swapped under them."""

from __future__ import annotations

import asyncio
import threading

import offload_tuner
from offload_tuner import decide, load_profile, run_kernel, run_kernel_sync, set_executor
from offload_tuner.runtime._registry import kernel_key
from tests import support
from tests.support import write_profile_json

TOTAL = kernel_key(support.total)
WHERE = kernel_key(support.where)


def test_calls_and_decisions_stay_consistent_while_profiles_swap(pool, tmp_path):
    # Profile A offloads `total` from 40 and `where` never; B the opposite. A decision made from one
    # consistent profile can only ever pair these values.
    a = write_profile_json(tmp_path / "a.json", {TOTAL: 40, WHERE: None})
    b = write_profile_json(tmp_path / "b.json", {TOTAL: None, WHERE: 40})
    set_executor(pool)
    load_profile(a)
    stop = threading.Event()
    errors: list[BaseException] = []
    swaps = 0

    lock = threading.Lock()

    def swap() -> None:
        nonlocal swaps
        with lock:
            swaps += 1
            parity = swaps % 2
        load_profile(b if parity else a)

    def swapper() -> None:
        while not stop.is_set():
            swap()

    def sync_caller(seed: int) -> None:
        try:
            for i in range(300):
                if i % 50 == 0:
                    swap()  # from the calling threads too, so swaps land between their calls
                xs = list(range((seed + i) % 80))
                assert run_kernel_sync(support.total, xs) == sum(xs)
                d = decide(support.total, xs)
                assert d.threshold in (40, None)
                assert d.offload == (d.threshold is not None and len(xs) >= 40)
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    async def async_callers() -> list[int]:
        async def one(i: int) -> int:
            if i % 100 == 0:
                swap()  # and from inside the event loop, while other calls are in flight
            xs = list(range(i % 80))
            return await run_kernel(support.total, xs)

        return await asyncio.gather(*(one(i) for i in range(2000)))

    swap_thread = threading.Thread(target=swapper)
    threads = [threading.Thread(target=sync_caller, args=(k,)) for k in range(4)]
    swap_thread.start()
    for t in threads:
        t.start()
    try:
        results = asyncio.run(async_callers())
    finally:
        for t in threads:
            t.join(timeout=120)
        stop.set()
        swap_thread.join(timeout=30)
    assert not errors, errors[:3]
    assert results == [sum(range(i % 80)) for i in range(2000)]
    assert swaps >= 40  # the profile really was swapped under the calls (24 from callers, 20 from tasks)
    assert offload_tuner.get_executor() is pool
