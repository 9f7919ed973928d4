"""Payload transport: the in-band pickle against shared memory (issue 28), per call, both directions.

    python -m benchmarks.payload [--out-dir DIR] [--sizes 1K,64K,1M,8M,64M,256M] [--smoke]

Every call goes through the real runtime, ``offload_tuner.run_kernel(fn, x, offload_if=True)``, with one
``recommended_pool()`` installed by ``set_executor``; the transport is switched between calls with
``offload_tuner.runtime._shm.settings.enabled`` (``False``: the old transport, the call pickled in band on the
caller, ``dumps_call`` + ``invoke_pickled`` + ``pickle.loads``; ``True``: packets whose large buffers go through
segments under ``/dev/shm``). Old and new take turns call by call (ABBA), on the same pool and the same arrays.

Directions, each a uint8 numpy array of the size:

* ``argument``: the caller sends the array; the kernel reads one byte per 4 KB page (so the worker pays for the
  pages it is handed, however they arrive) and returns an int;
* ``result``: the caller sends the size; the kernel returns an array of that many bytes built once per worker
  and cached (warm: its build is not in the call, for either transport);
* ``both``: the identity, the array there and back.

Per call: the **caller-blocked** time (a ticker coroutine on the loop, ``await asyncio.sleep(0)`` in a loop,
sums its gaps longer than 50 us within the call; the idle rate of such gaps is subtracted; also without the
time the loop's thread was preempted by the OS), the **round trip**
(wall time of the awaited call, on a quiet loop: a separate call without the ticker) and the caller thread's CPU
(``time.thread_time`` over the quiet call); for the array results, what reading one byte per page of the result
and dropping it then cost on the caller (page faults on first touch, the unmapping). Then a paired comparison of
tiny calls (a list of 10 ints, returning an int), in interleaved blocks.

Writes ``results/payload/payload.{json,md}`` (``payload-smoke.*`` with ``--smoke``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "payload"
KB, MB = 1 << 10, 1 << 20
SIZES = (KB, 64 * KB, MB, 8 * MB, 64 * MB, 256 * MB)
SMOKE_SIZES = (KB, 2 * MB)
DIRECTIONS = ("argument", "result", "both")
TRANSPORTS = ("old", "new")
PAGE = 4096
GAP_S = 50e-6
"""A ticker gap longer than this counts as blocked (an idle ``sleep(0)`` turn of the loop takes ~10-20 us)."""
LARGE = 8 * MB
"""Issue 28's acceptance applies from this size up."""
BLOCKED_GOAL, ROUND_TRIP_GOAL = 5.0, 2.0


# ------------------------------------------------------------------------------------------ worker kernels


def consume(arr: np.ndarray) -> int:
    """Read one byte per page (the worker pays for the pages it was handed) and return their sum."""
    return int(arr.reshape(-1).view(np.uint8)[::PAGE].sum())


_made: dict[int, np.ndarray] = {}


def filled(nbytes: int) -> np.ndarray:
    """An array of ``nbytes`` with every page written (resident), marked at both ends."""
    arr = np.full(nbytes, 0x5A, dtype=np.uint8)
    arr[0], arr[-1] = 1, 2
    return arr


def produce(nbytes: int) -> np.ndarray:
    """An array of ``nbytes``, built once per worker and cached: the call returns it, at no build cost."""
    arr = _made.get(nbytes)
    if arr is None:
        arr = _made[nbytes] = filled(nbytes)
    return arr


def identity(arr: np.ndarray) -> np.ndarray:
    return arr


def tiny(values: list[int]) -> int:
    return sum(values)


def warm_worker(sizes: list[int], pause: float) -> int:
    """Build a worker's result arrays; the pause keeps it busy so that the next warm-up goes to the other one."""
    time.sleep(pause)
    for nbytes in sizes:
        produce(nbytes)
    return os.getpid()


# ------------------------------------------------------------------------------------------------ the ticker


class Ticker:
    """A coroutine that turns the loop over as fast as it can and keeps the gaps between its turns longer than
    :data:`GAP_S`: the time the loop could not run anything else.

    Each gap also says how much of it the loop's thread spent off its CPU *preempted*: descheduled by the OS
    (involuntary context switches) without once waiting (no voluntary switch, so not for the GIL). On a small
    host the spinning ticker itself takes a core, so the threads and workers a call wakes make the OS preempt
    it for a time slice (~4-5 ms here): the loop lost its core, not its turn to the transport."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, float, float]] = []
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _spin(self) -> None:
        clock, cpu_clock, usage = time.perf_counter, time.thread_time, resource.getrusage
        last, cpu, ru = clock(), cpu_clock(), usage(resource.RUSAGE_THREAD)
        while not self._stop:
            await asyncio.sleep(0)
            now, now_cpu, now_ru = clock(), cpu_clock(), usage(resource.RUSAGE_THREAD)
            if now - last > GAP_S:
                preempted = now_ru.ru_nivcsw > ru.ru_nivcsw and now_ru.ru_nvcsw == ru.ru_nvcsw
                off_cpu = max(0.0, (now - last) - (now_cpu - cpu))
                self.gaps.append((last, now, off_cpu if preempted else 0.0))
            last, cpu, ru = now, now_cpu, now_ru

    async def start(self) -> None:
        self.gaps, self._stop = [], False
        self._task = asyncio.get_running_loop().create_task(self._spin())
        for _ in range(3):
            await asyncio.sleep(0)

    async def stop(self) -> None:
        for _ in range(2):  # the ticker's next turn closes the gap that holds the end of the call
            await asyncio.sleep(0)
        self._stop = True
        if self._task is not None:
            await self._task

    def blocked(self, start: float, end: float) -> tuple[float, float]:
        """The gaps' time within [start, end], and the preempted part of it."""
        total = preempted = 0.0
        for a, b, off in self.gaps:
            overlap = max(0.0, min(b, end) - max(a, start))
            total += overlap
            preempted += off * overlap / (b - a)
        return total, preempted


async def idle_rate(seconds: float) -> dict[str, float]:
    """Blocked seconds per second the ticker counts with no call in flight (scheduling noise, timers), and the
    preempted part of them."""
    ticker = Ticker()
    await ticker.start()
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    end = time.perf_counter()
    await ticker.stop()
    total, preempted = ticker.blocked(start, end)
    return {"blocked": total / (end - start), "preempted": preempted / (end - start)}


# ----------------------------------------------------------------------------------------------- one call


def set_transport(name: str) -> None:
    from offload_tuner.runtime import _shm

    _shm.settings.enabled = name == "new"


def check(direction: str, nbytes: int, value: Any, expected: int) -> None:
    if direction == "argument":
        ok = value == expected
    else:
        ok = isinstance(value, np.ndarray) and value.nbytes == nbytes and value[0] == 1 and value[-1] == 2
    if not ok:
        raise AssertionError(f"{direction} {nbytes} B: wrong result {type(value).__name__}")


async def quiet_call(
    make: Callable[[], Awaitable[Any]], direction: str, nbytes: int, expected: int
) -> dict[str, float]:
    """Round trip and caller-thread CPU of one call on an otherwise idle loop; then the result's first touch
    and release on the caller."""
    cpu0, t0 = time.thread_time(), time.perf_counter()
    value = await make()
    t1, cpu1 = time.perf_counter(), time.thread_time()
    check(direction, nbytes, value, expected)
    row = {"round_trip": t1 - t0, "cpu": cpu1 - cpu0}
    if isinstance(value, np.ndarray):
        t2 = time.perf_counter()
        consume(value)
        t3 = time.perf_counter()
        del value
        t4 = time.perf_counter()
        row |= {"touch": t3 - t2, "release": t4 - t3}
    return row


async def ticked_call(
    make: Callable[[], Awaitable[Any]], direction: str, nbytes: int, expected: int, idle: dict[str, float]
) -> dict[str, float]:
    """Caller-blocked time of one call: the ticker's gaps within it, less the idle rate over its length; and
    the same without the time the loop's thread was preempted."""
    ticker = Ticker()
    await ticker.start()
    t0 = time.perf_counter()
    value = await make()
    t1 = time.perf_counter()
    await ticker.stop()
    check(direction, nbytes, value, expected)
    del value
    total, preempted = ticker.blocked(t0, t1)
    length = t1 - t0
    return {
        "blocked": total - idle["blocked"] * length,
        "unpreempted": (total - preempted) - (idle["blocked"] - idle["preempted"]) * length,
        "preempted": preempted,
        "ticked_round_trip": length,
    }


def caller(direction: str, nbytes: int, arrays: dict[int, np.ndarray]) -> Callable[[], Awaitable[Any]]:
    import offload_tuner
    from benchmarks import payload as here  # by module name, so workers import it whatever ran this one

    if direction == "argument":
        arr = arrays[nbytes]
        return lambda: offload_tuner.run_kernel(here.consume, arr, offload_if=True)
    if direction == "result":
        return lambda: offload_tuner.run_kernel(here.produce, nbytes, offload_if=True)
    arr = arrays[nbytes]
    return lambda: offload_tuner.run_kernel(here.identity, arr, offload_if=True)


# -------------------------------------------------------------------------------------------- the sweeps


def repeats(nbytes: int, smoke: bool) -> int:
    if smoke:
        return 2
    if nbytes <= MB:
        return 25
    if nbytes <= 8 * MB:
        return 25
    return 9 if nbytes <= 64 * MB else 5


async def sweep(sizes: list[int], smoke: bool, rng: random.Random, log: Callable[[str], None]) -> dict[str, Any]:
    """Every size, direction and transport; old and new take turns call by call, quiet and ticked."""
    samples: dict[str, list[dict[str, float]]] = {}
    idle_rates: list[dict[str, float]] = []
    idle_s = 0.05 if smoke else 0.3
    for nbytes in sizes:
        arrays = {nbytes: filled(nbytes)}
        gc.collect()
        idle = await idle_rate(idle_s)
        idle_rates.append(idle)
        started = time.perf_counter()
        expected = consume(arrays[nbytes])
        calls = {d: caller(d, nbytes, arrays) for d in DIRECTIONS}
        for direction in DIRECTIONS:  # warm-up: one call each, not recorded
            for transport in TRANSPORTS:
                set_transport(transport)
                await quiet_call(calls[direction], direction, nbytes, expected)
        for rep in range(repeats(nbytes, smoke)):
            directions = list(DIRECTIONS)
            rng.shuffle(directions)
            for direction in directions:
                order = [(t, m) for m in ("quiet", "ticked") for t in TRANSPORTS]
                for transport, mode in order if rep % 2 == 0 else order[::-1]:
                    set_transport(transport)
                    make = calls[direction]
                    if mode == "quiet":
                        row = await quiet_call(make, direction, nbytes, expected)
                    else:
                        row = await ticked_call(make, direction, nbytes, expected, idle)
                    row["rep"] = rep
                    samples.setdefault(f"{direction}/{nbytes}/{transport}/{mode}", []).append(row)
        del arrays, calls
        log(
            f"  {human(nbytes)}: {time.perf_counter() - started:.1f} s (idle ticker gaps {idle['blocked'] * 1e3:.2f} ms/s)"
        )
    return {"samples": samples, "idle_rates": idle_rates}


async def tiny_blocks(blocks: int, per: int, idle: dict[str, float]) -> dict[str, Any]:
    """Tiny calls in blocks; each block runs old and new in ABBA (or BAAB) sub-blocks of ``per`` calls, quiet
    then ticked: a block's medians compare old and new a few hundred ms apart, and the two sub-blocks of the
    same transport tell how far a block's median moves on its own (the noise)."""
    import offload_tuner
    from benchmarks import payload as here

    values = list(range(10))

    def make() -> Awaitable[Any]:
        return offload_tuner.run_kernel(here.tiny, values, offload_if=True)

    expected = sum(values)
    for transport in TRANSPORTS:
        set_transport(transport)
        for _ in range(per):
            await quiet_call(make, "argument", 0, expected)
    out: list[dict[str, Any]] = []
    for block in range(blocks):
        order = ["old", "new", "new", "old"] if block % 2 == 0 else ["new", "old", "old", "new"]
        record: dict[str, Any] = {}
        for mode in ("quiet", "ticked"):
            for half, transport in enumerate(order):
                set_transport(transport)
                rows = []
                for _ in range(per):
                    if mode == "quiet":
                        rows.append(await quiet_call(make, "argument", 0, expected))
                    else:
                        rows.append(await ticked_call(make, "argument", 0, expected, idle))
                key = f"{transport}/{mode}/{'first' if half < 2 else 'second'}"
                record[key] = rows
        out.append(record)
    return {"blocks": out, "per": per}


# ---------------------------------------------------------------------------------------------- summaries


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]


def cell(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p90": p90(values), "n": len(values)}


def summarize(sizes: list[int], samples: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    rows = []
    for direction in DIRECTIONS:
        for nbytes in sizes:
            entry: dict[str, Any] = {"direction": direction, "bytes": nbytes}
            for transport in TRANSPORTS:
                quiet = samples[f"{direction}/{nbytes}/{transport}/quiet"]
                ticked = samples[f"{direction}/{nbytes}/{transport}/ticked"]
                stats = {
                    "blocked_s": cell([r["blocked"] for r in ticked]),
                    "unpreempted_s": cell([r["unpreempted"] for r in ticked]),
                    "round_trip_s": cell([r["round_trip"] for r in quiet]),
                    "ticked_round_trip_s": cell([r["ticked_round_trip"] for r in ticked]),
                    "caller_cpu_s": cell([r["cpu"] for r in quiet]),
                }
                if "touch" in quiet[0]:
                    stats["touch_s"] = cell([r["touch"] for r in quiet])
                    stats["release_s"] = cell([r["release"] for r in quiet])
                entry[transport] = stats
            old, new = entry["old"], entry["new"]
            # The ticker resolves 50 us: a blocked time below it reads as 50 us, so its ratio is a lower bound.
            floor = max(new["blocked_s"]["median"], GAP_S)
            unpreempted_floor = max(new["unpreempted_s"]["median"], GAP_S)
            entry["ratios"] = {
                "blocked": old["blocked_s"]["median"] / floor,
                "blocked_at_floor": new["blocked_s"]["median"] < GAP_S,
                "unpreempted": old["unpreempted_s"]["median"] / unpreempted_floor,
                "unpreempted_at_floor": new["unpreempted_s"]["median"] < GAP_S,
                "round_trip": old["round_trip_s"]["median"] / new["round_trip_s"]["median"],
                "caller_cpu": old["caller_cpu_s"]["median"] / new["caller_cpu_s"]["median"],
            }
            rows.append(entry)
    return rows


def verdicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    large = [r for r in rows if r["bytes"] >= LARGE]
    if not large:
        return {"measured": False}

    def worst(metric: str) -> dict[str, Any]:
        row = min(large, key=lambda r: r["ratios"][metric])
        return {"direction": row["direction"], "bytes": row["bytes"], "ratio": row["ratios"][metric]}

    return {
        "measured": True,
        "blocked_at_least_5x_lower": all(r["ratios"]["blocked"] >= BLOCKED_GOAL for r in large),
        "unpreempted_at_least_5x_lower": all(r["ratios"]["unpreempted"] >= BLOCKED_GOAL for r in large),
        "round_trip_at_least_2x_lower": all(r["ratios"]["round_trip"] >= ROUND_TRIP_GOAL for r in large),
        "worst_blocked": worst("blocked"),
        "worst_unpreempted": worst("unpreempted"),
        "worst_round_trip": worst("round_trip"),
        "failing": [
            {"direction": r["direction"], "bytes": r["bytes"]} | {m: r["ratios"][m] for m in ("blocked", "unpreempted", "round_trip")}
            for r in large
            if r["ratios"]["blocked"] < BLOCKED_GOAL or r["ratios"]["unpreempted"] < BLOCKED_GOAL or r["ratios"]["round_trip"] < ROUND_TRIP_GOAL
        ],
    }  # fmt: skip


def tiny_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Per metric: each block's median per transport, new - old per block (us), and the A/A noise: the same
    transport's two sub-blocks of a block, second - first."""
    metrics = {
        "round_trip": ("quiet", "round_trip"),
        "caller_cpu": ("quiet", "cpu"),
        "blocked": ("ticked", "blocked"),
        "unpreempted": ("ticked", "unpreempted"),
    }
    out: dict[str, Any] = {}
    for name, (mode, field) in metrics.items():
        diffs: list[float] = []
        noise: list[float] = []
        medians: dict[str, list[float]] = {"old": [], "new": []}
        for block in result["blocks"]:
            per = {}
            for transport in TRANSPORTS:
                first = [r[field] for r in block[f"{transport}/{mode}/first"]]
                second = [r[field] for r in block[f"{transport}/{mode}/second"]]
                per[transport] = statistics.median(first + second)
                medians[transport].append(per[transport])
                noise.append(statistics.median(second) - statistics.median(first))
            diffs.append(per["new"] - per["old"])
        us = [d * 1e6 for d in diffs]
        out[name] = {
            "old_median_us": statistics.median(medians["old"]) * 1e6,
            "new_median_us": statistics.median(medians["new"]) * 1e6,
            "diff_us": statistics.median(us),
            "diff_range_us": [min(us), max(us)],
            "diff_iqr_us": iqr(us),
            "noise_us": statistics.median([abs(n) * 1e6 for n in noise]),
            "blocks": len(diffs),
        }
    return out


def iqr(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [values[0], values[0]]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [q[0], q[2]]


# ------------------------------------------------------------------------------------------------- report


def human(nbytes: int) -> str:
    for unit, size in (("MB", MB), ("KB", KB)):
        if nbytes >= size and nbytes % size == 0:
            return f"{nbytes // size} {unit}"
    return f"{nbytes} B"


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    factor = {"K": KB, "M": MB, "G": 1 << 30}.get(text[-1:], 1)
    return int(text[:-1] if factor > 1 else text) * factor


def ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def host() -> dict[str, Any]:
    from offload_tuner.runtime._host import host_fingerprint

    facts = host_fingerprint()
    facts["numpy"] = np.__version__
    shm = shutil.disk_usage("/dev/shm") if os.path.isdir("/dev/shm") else None
    facts["dev_shm_bytes"] = shm.total if shm else None
    facts["mem_available_bytes"] = mem_available()
    return facts


def mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def code_state() -> dict[str, Any]:
    """The commit of the runtime measured (the imported ``offload_tuner``) and whether it differed from it."""
    import offload_tuner

    root = Path(offload_tuner.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "runtime_changes": git("status", "--short", "offload_tuner"),
        "imported_from": str(root),
    }


def fits(sizes: list[int], log: Callable[[str], None]) -> list[int]:
    """The sizes /dev/shm and memory have room for: an identity call holds the argument and the result
    segments, and in band up to ~6 copies of the array at once."""
    shm_free = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else 0
    memory = mem_available() or 1 << 62
    kept = [n for n in sizes if 3 * n <= shm_free and 8 * n <= memory]
    for n in sorted(set(sizes) - set(kept)):
        log(f"skipping {human(n)}: /dev/shm has {shm_free >> 20} MB free, memory {memory >> 20} MB available")
    return kept


def table(rows: list[dict[str, Any]], direction: str) -> list[str]:
    lines = [
        f"### {direction}",
        "",
        "| size | blocked old / new ms (p90) | preemption excluded old / new ms | round trip old / new ms (p90) "
        "| caller CPU old / new ms | blocked old/new | round trip old/new |" + (" first touch old / new ms | release old / new ms |" if direction != "argument" else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|" if direction != "argument" else ""),
    ]  # fmt: skip
    for r in rows:
        if r["direction"] != direction:
            continue
        o, n, q = r["old"], r["new"], r["ratios"]
        line = (
            f"| {human(r['bytes'])} "
            f"| {ms(o['blocked_s']['median'])} ({ms(o['blocked_s']['p90'])}) / "
            f"{ms(n['blocked_s']['median'])} ({ms(n['blocked_s']['p90'])}) "
            f"| {ms(o['unpreempted_s']['median'])} / {ms(n['unpreempted_s']['median'])} "
            f"| {ms(o['round_trip_s']['median'])} ({ms(o['round_trip_s']['p90'])}) / "
            f"{ms(n['round_trip_s']['median'])} ({ms(n['round_trip_s']['p90'])}) "
            f"| {ms(o['caller_cpu_s']['median'])} / {ms(n['caller_cpu_s']['median'])} "
            f"| {'≥' if q['blocked_at_floor'] else ''}{q['blocked']:.1f}x | {q['round_trip']:.2f}x |"
        )
        if "touch_s" in o:
            line += (
                f" {ms(o['touch_s']['median'])} / {ms(n['touch_s']['median'])} "
                f"| {ms(o['release_s']['median'])} / {ms(n['release_s']['median'])} |"
            )
        lines.append(line)
    return lines + [""]


METRICS = (("blocked", "caller-blocked"), ("unpreempted", "blocked, preemption excluded"), ("round_trip", "round trip"))


def ratio_table(rows: list[dict[str, Any]], sizes: list[int]) -> list[str]:
    head = "| old / new | " + " | ".join(human(n) for n in sizes) + " |"
    lines = [head, "|---|" + "---|" * len(sizes)]
    for direction in DIRECTIONS:
        for metric, label in METRICS:
            cells = []
            for n in sizes:
                r = next(x for x in rows if x["direction"] == direction and x["bytes"] == n)
                floor = "≥" if r["ratios"].get(f"{metric}_at_floor") else ""
                value = r["ratios"][metric]
                bold = n >= LARGE and value < (ROUND_TRIP_GOAL if metric == "round_trip" else BLOCKED_GOAL)
                text = f"{value:.2f}x" if metric == "round_trip" else f"{floor}{value:.1f}x"
                cells.append(f"**{text}**" if bold else text)
            lines.append(f"| {direction}: {label} | " + " | ".join(cells) + " |")
    return lines + [""]


TINY_METRICS = (
    ("caller_cpu", "caller CPU"),
    ("round_trip", "round trip"),
    ("blocked", "caller-blocked"),
    ("unpreempted", "caller-blocked, preemption excluded"),
)


def markdown(report: dict[str, Any]) -> str:
    h, v, t = report["host"], report["verdicts"], report["tiny"]
    sizes = report["sizes"]
    lines = [
        "# Payload benchmark: in-band pickle (old) against shared memory (new)",
        "",
        f"`{report['command']}`, {report['date']}, {report['duration_s']:.0f} s. Host `{h['hostname']}` "
        f"({h['cpu_model']}, {h['usable_cores']} usable of {h['logical_cores']} cores), Python {h['python_version']}, "
        f"numpy {h['numpy']}, {h['platform']}; /dev/shm {h['dev_shm_bytes'] >> 20} MB. Code at `{report['code']['commit']}`"
        + (" with uncommitted runtime changes (see the JSON)" if report["code"]["runtime_changes"] else "")
        + f"; pool: `recommended_pool()`, {report['pool']['workers']} workers ({report['pool']['start_method']}); "
        f"out of band from {human(report['min_bytes'])} per buffer.",
        "",
        "## Verdicts (issue 28: from 8 MB up, caller-blocked time at least 5x lower, round trip at least 2x lower)",
        "",
    ]  # fmt: skip
    if v["measured"]:
        wb, wu, wr = v["worst_blocked"], v["worst_unpreempted"], v["worst_round_trip"]
        lines += [
            f"- caller-blocked at least 5x lower at every size >= 8 MB, every direction: "
            f"**{'met' if v['blocked_at_least_5x_lower'] else 'not met'}** (lowest: {wb['ratio']:.1f}x, "
            f"{wb['direction']} {human(wb['bytes'])})",
            f"- the same with the time the loop's thread was preempted by the OS excluded (see Method): "
            f"**{'met' if v['unpreempted_at_least_5x_lower'] else 'not met'}** (lowest: {wu['ratio']:.1f}x, "
            f"{wu['direction']} {human(wu['bytes'])})",
            f"- round trip at least 2x lower at every size >= 8 MB, every direction: "
            f"**{'met' if v['round_trip_at_least_2x_lower'] else 'not met'}** (lowest: {wr['ratio']:.2f}x, "
            f"{wr['direction']} {human(wr['bytes'])})",
            "",
        ]
    else:
        lines += ["No size of 8 MB or more was measured (smoke run): no verdict.", ""]
    lines += [
        "## Ratios, old / new (medians; bold: below the goal at >= 8 MB)",
        "",
        *ratio_table(report["rows"], sizes),
    ]
    lines += ["## Per direction (medians, p90 in brackets)", ""]
    for direction in DIRECTIONS:
        lines += table(report["rows"], direction)
    n = {s: repeats(s, report["smoke"]) for s in sizes}
    lines += [
        "Calls per cell and transport: " + ", ".join(f"{human(s)} {n[s]}" for s in sizes) + " quiet, as many ticked.",
        "",
        "## Calls without large buffers",
        "",
        f"`tiny([0..9])` (a list of 10 ints in, an int out), {t['round_trip']['blocks']} blocks of ABBA sub-blocks "
        f"of {report['tiny_per']} calls per transport and mode. Difference = new - old of each block's medians; "
        "noise = the median |difference| between the two sub-blocks of the same transport in a block (an A/A "
        "comparison).",
        "",
        "| per call | old, median of blocks | new | new - old: median [IQR] (range) | noise (A/A) |",
        "|---|---|---|---|---|",
    ]
    for name, label in TINY_METRICS:
        s = t[name]
        lines.append(
            f"| {label} | {s['old_median_us']:.1f} us | {s['new_median_us']:.1f} us | **{s['diff_us']:+.1f} us** "
            f"[{s['diff_iqr_us'][0]:+.1f}, {s['diff_iqr_us'][1]:+.1f}] ({s['diff_range_us'][0]:+.1f}, "
            f"{s['diff_range_us'][1]:+.1f}) | {s['noise_us']:.1f} us |"
        )
    lines += ["", *reading(report), *METHOD]
    if report["warnings"]:
        lines += ["", "Warnings during the run: " + "; ".join(f"`{w}`" for w in report["warnings"])]
    return "\n".join(lines) + "\n"


def reading(report: dict[str, Any]) -> list[str]:
    """What the numbers say, computed from them: where the old transport's blocked time goes, what the new one
    leaves to the caller after the call, and whether tiny calls got slower."""
    rows, top = report["rows"], max(report["sizes"])
    at = {r["direction"]: r for r in rows if r["bytes"] == top}
    lines = ["## Reading", ""]
    parts = []
    for direction in DIRECTIONS:
        o = at[direction]["old"]
        parts.append(
            f"{direction} {ms(o['blocked_s']['median'])} ms blocked, of which {ms(o['caller_cpu_s']['median'])} ms "
            "the loop thread's own CPU"
        )
    lines.append(
        f"- Old transport at {human(top)}: " + "; ".join(parts) + ". The rest is the pool's feeder and manager "
        "threads holding the GIL (the feeder pickles the pickled bytes again, the manager reads the result from "
        "the pipe and unpickles it once more), the loop waiting to get it back, and preemption."
    )
    if "result" in at and "touch_s" in at["result"]["new"]:
        n, o = at["result"]["new"], at["result"]["old"]
        deferred_new = n["touch_s"]["median"] + n["release_s"]["median"]
        deferred_old = o["touch_s"]["median"] + o["release_s"]["median"]
        lines.append(
            f"- What a shared-memory result leaves to the caller after the call, at {human(top)}: reading each page "
            f"once ({ms(n['touch_s']['median'])} ms: minor page faults of the mapping) and dropping it "
            f"({ms(n['release_s']['median'])} ms: the unmapping frees the segment's pages), {ms(deferred_new)} ms "
            f"against {ms(deferred_old)} ms for an in-band result; with its blocked time, "
            f"{ms(n['blocked_s']['median'] + deferred_new)} ms against {ms(o['blocked_s']['median'] + deferred_old)} ms."
        )
    tiny = report["tiny"]
    said = []
    for name, label in TINY_METRICS:
        t = tiny[name]
        within = abs(t["diff_us"]) <= t["noise_us"]
        said.append(
            f"{label} {t['diff_us']:+.1f} us ({100 * t['diff_us'] / t['old_median_us']:+.0f}%, "
            f"{'within' if within else 'beyond'} the A/A noise of {t['noise_us']:.1f} us)"
        )
    lines += ["- Tiny calls, new - old: " + "; ".join(said) + ".", ""]
    return lines


METHOD = [
    "## Method",
    "",
    "- Every call is `await offload_tuner.run_kernel(fn, x, offload_if=True)` with one `recommended_pool()` "
    "installed by `set_executor`, one call in flight at a time. The transport is switched between calls with "
    "`_shm.settings.enabled` (False = the old in-band pickle: `dumps_call` on the caller, the pool's feeder "
    "thread pickling those bytes again into the pipe, `pickle.loads` of the result on the caller). Old and new "
    "alternate call by call in ABBA order, on the same pool and the same arrays; each size starts with one "
    "unrecorded call per direction and transport.",
    "- Directions: `argument` (a resident uint8 array in; the kernel reads one byte per 4 KB page, so the "
    "worker pays the page faults of what it was handed, and returns an int), `result` (a size in; the kernel "
    "returns an array built once per worker and cached, so neither transport pays a build), `both` (identity).",
    "- **Caller-blocked**: a ticker coroutine on the same loop runs `await asyncio.sleep(0)` in a loop and "
    "records every gap between its turns longer than 50 us; the blocked time of a call is the part of those "
    "gaps within the awaited call (from just before `run_kernel` until it returns, the result's unpickling "
    "included), less the idle rate of such gaps (measured with the ticker alone before each size, "
    "ms per s in the JSON) times the call's length. It counts everything that kept the loop from running: the "
    "caller's own pickling and unpickling, and the time other threads of the process (the pool's feeder and "
    "manager threads) held the GIL. A spinning ticker is a busy loop: it competes for the GIL with those "
    "threads (switch interval 5 ms), which is what a busy service does, and which makes single gaps of ~5 ms "
    "appear at any size. Resolution 50 us: a median below it is shown as measured and its ratio as a lower "
    "bound (≥).",
    "- **Preemption excluded**: the spinning ticker keeps one of the host's cores busy, so the work a call "
    "wakes elsewhere (the feeder thread writing a segment, the worker, the manager thread) makes the OS "
    "preempt the loop's thread for a time slice (~4-5 ms here) now and then: the loop lost its core, not its "
    "turn to the transport, and a loop that waits in epoll (a service between requests) leaves that core free. "
    "The ticker reads the thread's CPU time and context switches (`getrusage(RUSAGE_THREAD)`) every turn; the "
    "off-CPU part of a gap with involuntary switches and no voluntary one (no wait for the GIL or anything "
    "else) is preemption, and this column leaves it out (the idle rate likewise). A gap with both kinds of "
    "switch stays counted.",
    "- **Round trip** and **caller CPU**: a separate call of each pair with no ticker (the loop idle in "
    "epoll, as while a service waits): the wall time of the awaited call and `time.thread_time()` of the "
    "loop's thread over it. The JSON also has the round trip measured under the ticker.",
    "- **First touch / release** (array results): after a quiet call, reading one byte per page of the result "
    "on the caller, then dropping it. A shared-memory result is a private mapping of its segment, so its pages "
    "fault on first touch and are unmapped on release; an in-band result was copied (already resident) and "
    "is freed. Neither is in the round trip.",
    "- Medians and p90 over the calls of a cell; ratios are of medians (old / new).",
]


# --------------------------------------------------------------------------------------------------- main


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help=f"where to write (default {RESULTS})")
    parser.add_argument("--sizes", help="comma-separated payload sizes (default 1K,64K,1M,8M,64M,256M)")
    parser.add_argument("--tiny-blocks", type=int, default=16, help="blocks of the tiny-call comparison (16)")
    parser.add_argument("--tiny-per", type=int, default=60, help="calls per sub-block of a tiny block (60)")
    parser.add_argument("--smoke", action="store_true", help="two sizes, two repeats: proves it runs (< 20 s)")
    parser.add_argument("--seed", type=int, default=20261204)
    args = parser.parse_args(argv)
    default = SMOKE_SIZES if args.smoke else SIZES
    args.sizes = sorted({parse_size(s) for s in args.sizes.split(",")}) if args.sizes else list(default)
    if args.smoke:
        args.tiny_blocks, args.tiny_per = min(args.tiny_blocks, 2), min(args.tiny_per, 5)
    if min(args.sizes) < 1 or args.tiny_blocks < 1 or args.tiny_per < 1:
        parser.error("sizes, --tiny-blocks and --tiny-per must be positive")
    return args


async def measure(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    import offload_tuner
    from benchmarks import payload as here
    from offload_tuner.runtime._backends import recommended_pool

    pool = recommended_pool()
    shape = dict(getattr(pool, "_offload_tuner_shape", {}))  # workers, start method: recommended_pool's mark
    offload_tuner.set_executor(pool)
    try:
        loop = asyncio.get_running_loop()
        warm = [loop.run_in_executor(pool, here.warm_worker, list(args.sizes), 0.3) for _ in range(shape["workers"])]
        pids = await asyncio.gather(*warm)
        log(f"workers warm: {sorted(set(pids))}")
        swept = await sweep(args.sizes, args.smoke, random.Random(args.seed), log)
        idle = {k: statistics.median(r[k] for r in swept["idle_rates"]) for k in ("blocked", "preempted")}
        started = time.perf_counter()
        tiny = await tiny_blocks(args.tiny_blocks, args.tiny_per, idle)
        log(f"  tiny calls: {time.perf_counter() - started:.1f} s")
        info = {**shape, "pids": sorted(set(pids))}
    finally:
        offload_tuner.set_executor(None)
        pool.shutdown(wait=True)
    return {"swept": swept, "tiny": tiny, "pool": info}


def leftover_segments() -> list[str]:
    """This process's segment files once every call is done: any is a leak. Argument segments the transport
    keeps for reuse are not (they live until the process exits), so the reuse pool is emptied first."""
    from offload_tuner.runtime import _segments, _shm

    _segments.drain_pool()
    try:
        names = os.listdir(_shm.SHM_DIR)
    except OSError:
        return []
    mine = f"{_shm.PREFIX}{os.getpid()}-"
    return [n for n in names if n.startswith(mine) and not n.endswith("-owner")]  # the owner's lock lives on


def main(argv: list[str] | None = None) -> int:
    from offload_tuner.runtime import _shm

    args = arguments(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    sizes = fits(args.sizes, log)
    if not sizes:
        log("no size fits in /dev/shm and memory")
        return 1
    args.sizes = sizes
    was = _shm.settings.enabled
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            measured = asyncio.run(measure(args, log))
        finally:
            _shm.settings.enabled = was
    samples = measured["swept"]["samples"]
    rows = summarize(sizes, samples)
    command = " ".join(["python -m benchmarks.payload", *(sys.argv[1:] if argv is None else argv)])
    report = {
        "benchmark": "payload",
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "duration_s": time.perf_counter() - started,
        "smoke": args.smoke,
        "sizes": sizes,
        "min_bytes": _shm.settings.min_bytes,
        "gap_threshold_s": GAP_S,
        "idle_rates_s_per_s": measured["swept"]["idle_rates"],
        "host": host(),
        "code": code_state(),
        "pool": measured["pool"],
        "verdicts": verdicts(rows),
        "rows": rows,
        "tiny": tiny_summary(measured["tiny"]),
        "tiny_per": measured["tiny"]["per"],
        "warnings": sorted({str(w.message) for w in caught}),
        "leftover_segments": leftover_segments(),
        "samples": samples,
        "python": platform.python_version(),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "payload-smoke" if args.smoke else "payload"
    (args.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out_dir / f"{stem}.md").write_text(markdown(report))
    log(f"wrote {args.out_dir / stem}.{{json,md}}")
    for line in ratio_table(rows, sizes):
        log(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
