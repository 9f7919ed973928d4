"""Issue 28: the shared-memory transport leaks nothing. 10,000 calls with workers killed, callers cancelled and
timeouts leave no segment and no resource-tracker warning; a service killed mid-call leaves segments that the next
start removes; and the sweep never takes a live process's segments (whatever its pid namespace), takes a dead
one's, and counts a recycled pid (another start time) as dead."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from offload_tuner.runtime import _segments, _shm

ROOT = Path(__file__).resolve().parent.parent
PREFIX = _shm.PREFIX

pytestmark = pytest.mark.slow  # starts processes and pools; part of the default run


# ---------------------------------------------------------------------- kernels (workers import them by name)


def roundtrip(a: np.ndarray) -> np.ndarray:
    return a + 1.0


def sleepy(seconds: float, a: np.ndarray) -> np.ndarray:
    time.sleep(seconds)
    return a * 2.0


# ------------------------------------------------------------------------------------------------ helpers


def entries_of(pid: int, directory: str = _shm.SHM_DIR) -> list[str]:
    """Every file of process ``pid`` (segments and owner lock) in ``directory``."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(f"{PREFIX}{pid}-"))


def run_script(tmp_path: Path, name: str, source: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(tmp_path),
        timeout=timeout,
    )


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_TUNER_")}
    return {**env, "PYTHONPATH": str(ROOT), "OFFLOAD_TUNER_PROFILE": str(tmp_path / "no-profile.json")}


# ------------------------------------------------------------------------------------- 10,000 calls, faults

SOAK = """
import asyncio, itertools, json, os, signal, sys, threading, time, warnings
from collections import Counter
import numpy as np
import offload_tuner
from offload_tuner import run_kernel, run_kernel_sync, set_executor
from offload_tuner.runtime import _segments, _shm, _state
from tests.test_shm_leaks import roundtrip, sleepy

CALLS, FLOATS = 10_000, (64 << 10) // 8  # 64 KiB each way, min_bytes 4096: every call uses two segments
_shm.settings.min_bytes = 4096
warnings.simplefilter("ignore")  # the rebuilt pools' warnings: not what this run is about
numbers, stats, lock = itertools.count(), Counter(), threading.Lock()


def count(what):
    with lock:
        stats[what] += 1


def kill_a_worker():
    pool = _state.current().executors.get("process")
    pids = list(getattr(pool, "_processes", None) or ())
    if pids:
        os.kill(pids[0], signal.SIGKILL)
        count("killed")


def check(n, result, expected):
    if result.shape != (FLOATS,) or result[0] != expected or result[-1] != expected:
        raise AssertionError(f"call {n}: wrong result {result[:3]}")


async def one_async(n):
    a = np.full(FLOATS, float(n))
    if n % 97 == 0:
        try:
            await run_kernel(sleepy, 0.05, a, offload_if=True, timeout=0.005)
            count("not timed out")
        except TimeoutError:
            count("timed out")
    elif n % 89 == 0:
        task = asyncio.ensure_future(run_kernel(sleepy, 0.03, a, offload_if=True))
        await asyncio.sleep(0.003)
        task.cancel()
        try:
            await task
            count("finished before cancel")
        except asyncio.CancelledError:
            count("cancelled")
    else:
        if n % 1000 == 500:
            kill_a_worker()
        check(n, await run_kernel(roundtrip, a, offload_if=True), n + 1.0)
        count("ok")


async def async_caller():
    while (n := next(numbers)) < CALLS:
        await one_async(n)


def sync_caller():
    while (n := next(numbers)) < CALLS:
        a = np.full(FLOATS, float(n))
        if n % 101 == 0:
            try:
                run_kernel_sync(sleepy, 0.05, a, offload_if=True, timeout=0.005)
                count("not timed out")
            except TimeoutError:
                count("timed out")
        else:
            if n % 1000 == 500:  # whichever caller draws it: the async ones do not always get these numbers
                kill_a_worker()
            check(n, run_kernel_sync(roundtrip, a, offload_if=True), n + 1.0)
            count("ok")


async def main():
    threads = [threading.Thread(target=sync_caller) for _ in range(2)]
    for t in threads:
        t.start()
    await asyncio.gather(*(async_caller() for _ in range(6)))
    for t in threads:
        t.join()


def run():
    started = time.perf_counter()
    set_executor(offload_tuner.recommended_pool(2))
    asyncio.run(main())
    pool = _state.current().executors.get("process")
    set_executor(None)
    pool.shutdown(wait=True)
    elapsed = time.perf_counter() - started
    time.sleep(0.2)
    _shm.reap_abandoned()  # the grace retries of results a killed pool's worker may still have written
    _segments.drain_pool()  # argument segments kept for reuse: this process's until it exits, not leaked
    tag = _segments.owner_tag()
    left = sorted(n for n in os.listdir(_shm.SHM_DIR) if n.startswith(f"{_shm.PREFIX}{tag}-") and not n.endswith("-owner"))
    print(json.dumps({"stats": stats, "left": left, "seconds": round(elapsed, 2), "pid": os.getpid(),
                      "exit_list": len(_segments.outstanding)}))


if __name__ == "__main__":
    run()
"""


def test_ten_thousand_calls_with_killed_workers_cancellations_and_timeouts_leak_nothing(tmp_path):
    done = run_script(tmp_path, "soak.py", SOAK, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    stats = report["stats"]
    assert sum(stats.values()) - stats.get("killed", 0) == 10_000, stats
    # ~190 calls ask for a timeout; those that meet a killed pool run inline and are not timed out
    assert stats["killed"] >= 5 and stats["timed out"] >= 25 and stats["cancelled"] >= 20, stats
    assert report["left"] == [], report  # nothing left while it ran on...
    assert report["exit_list"] == 0, report
    assert entries_of(report["pid"]) == []  # ...nor after it exited (its owner lock went with it)
    assert "resource_tracker" not in done.stderr and "leaked" not in done.stderr, done.stderr[-3000:]
    print(f"soak: {report['seconds']} s, {stats}")


# ------------------------------------------------------------------------------- a service killed mid-call

SERVICE = """
import asyncio, os, sys
import numpy as np
import offload_tuner
from offload_tuner import run_kernel, set_executor
from offload_tuner.runtime import _segments
from tests.test_shm_leaks import sleepy


async def main():
    set_executor(offload_tuner.recommended_pool(1))
    big = np.ones((4 << 20) // 8)  # 4 MiB: above the default 1 MiB, through a segment
    call = asyncio.ensure_future(run_kernel(sleepy, 120, big, offload_if=True))
    stem = f"offload-tuner-{_segments.owner_tag()}-"
    while not any(n.startswith(stem) and n.endswith("a") for n in os.listdir("/dev/shm")):
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await call


if __name__ == "__main__":
    asyncio.run(main())
"""

FIRST_CALL = """
from offload_tuner import recommended_pool, run_kernel_sync, set_executor
from tests.test_shm_leaks import roundtrip
import numpy as np

if __name__ == "__main__":
    pool = recommended_pool(1)
    set_executor(pool)
    print(run_kernel_sync(roundtrip, np.zeros(3), offload_if=True)[0])
    set_executor(None)
    pool.shutdown()
"""


def start_service(tmp_path: Path) -> subprocess.Popen:
    script = tmp_path / "service.py"
    script.write_text(textwrap.dedent(SERVICE))
    service = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(tmp_path),
        start_new_session=True,  # its forkserver and workers share its process group: killed together after
    )
    assert service.stdout is not None
    line = service.stdout.readline()
    if line.strip() != "ready":
        service.kill()
        pytest.fail(f"service did not start: {line!r} {service.stderr.read() if service.stderr else ''}")
    return service


def kill(service: subprocess.Popen) -> None:
    """SIGKILL the service (no atexit, no finally), then what it started (a real container kill takes all)."""
    semaphores = _semaphores_of_group(service.pid)
    os.kill(service.pid, signal.SIGKILL)
    service.wait()
    try:
        os.killpg(service.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for stream in (service.stdout, service.stderr):
        if stream is not None:
            stream.close()
    # The group's resource tracker died with it, so nothing unlinks the named semaphores its pool made (a real
    # container's /dev/shm goes with the container): the test removes them, not to leave them on the host.
    for path in semaphores:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _semaphores_of_group(group: int) -> set[str]:
    """The named semaphores (``/dev/shm/sem.*``) the processes of a process group have mapped."""
    found: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat[stat.rfind(")") + 2 :].split()[2]) != group:
                continue
            maps = Path(f"/proc/{entry}/maps").read_text()
        except (OSError, ValueError, IndexError):
            continue
        found.update(line.split(maxsplit=5)[5] for line in maps.splitlines() if "/dev/shm/sem." in line)
    return found


def test_a_service_killed_mid_call_leaves_segments_the_next_start_removes(tmp_path):
    killed, live = start_service(tmp_path), start_service(tmp_path)
    stem = _segments.call_stem(_shm.SHM_DIR)  # this process's own in-flight segment: must survive every sweep
    assert _segments.holds_lock(os.path.dirname(stem))
    _segments.write_segment(stem + "a", [memoryview(bytearray(8192))])
    try:
        kill(killed)
        left = entries_of(killed.pid)
        assert any(n.endswith("a") for n in left) and any(n.endswith("-owner") for n in left), left
        live_before = entries_of(live.pid)
        first = run_script(tmp_path, "first.py", FIRST_CALL)  # a new process's first call sweeps
        assert first.returncode == 0, first.stderr
        assert entries_of(killed.pid) == []
        assert entries_of(live.pid) == live_before and any(n.endswith("a") for n in live_before)
        assert os.path.exists(stem + "a")

        kill(live)  # now this one dies too: an explicit sweep (what `offload-tuner check` runs) takes it
        gone = entries_of(live.pid)
        assert gone and set(gone) <= set(_shm.sweep_orphans())
        assert entries_of(live.pid) == [] and os.path.exists(stem + "a")
    finally:
        for service in (killed, live):
            if service.poll() is None:
                kill(service)
        _segments.unlink(stem + "a")


# --------------------------------------------------------------------------------------- orphan naming


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def _touch(directory: Path, name: str) -> str:
    (directory / name).write_bytes(b"x")
    return name


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_sweep_takes_dead_and_recycled_owners_and_never_a_live_one(tmp_path, sleeper):
    start = _segments.start_ticks(sleeper.pid)
    assert start is not None
    live = [_touch(tmp_path, f"{PREFIX}{sleeper.pid}-{start}-{i}{end}") for i, end in enumerate("ar")]
    mine = [_touch(tmp_path, f"{PREFIX}{_segments.owner_tag()}-3{end}") for end in "ar"]
    recycled = [_touch(tmp_path, f"{PREFIX}{sleeper.pid}-{int(start) - 1}-0a")]  # same pid, started earlier
    dead_pid = _dead_pid()
    dead = [_touch(tmp_path, f"{PREFIX}{dead_pid}-12345-{i}r") for i in range(2)]
    dead.append(_touch(tmp_path, f"{PREFIX}{dead_pid}-12345-owner"))  # a lock nobody holds
    other = [_touch(tmp_path, n) for n in ("offload-tuner-x-1-2a", "offload-tuner-", "unrelated", ".offload-tuner-1")]
    removed = _shm.sweep_orphans(str(tmp_path))
    assert sorted(removed) == sorted(recycled + dead)
    assert sorted(os.listdir(tmp_path)) == sorted(live + mine + other)


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_a_live_owner_in_another_pid_namespace_keeps_its_segments_by_its_lock(tmp_path):
    """A pid that means nothing here (a container sharing /dev/shm): its held owner lock keeps its segments;
    once its holder is gone they go, lock included."""
    ghost = f"{int(Path('/proc/sys/kernel/pid_max').read_text()) + 7}-4242"  # no such pid in this namespace
    names = [_touch(tmp_path, f"{PREFIX}{ghost}-{i}a") for i in range(3)]
    lock = f"{PREFIX}{ghost}-owner"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert _shm.sweep_orphans(str(tmp_path)) == []
        assert sorted(os.listdir(tmp_path)) == sorted([*names, lock])
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert sorted(_shm.sweep_orphans(str(tmp_path))) == sorted([*names, lock])
    assert os.listdir(tmp_path) == []


def test_an_owner_lock_appears_already_held(tmp_path):
    """The owner lock is made under a name no sweep reads and renamed once held: a sweep racing a process's
    first call can never find it free."""
    stem = _segments.call_stem(str(tmp_path))
    assert _segments.holds_lock(os.path.dirname(stem))
    lock = tmp_path / f"{PREFIX}{_segments.owner_tag()}-owner"
    assert sorted(os.listdir(tmp_path)) == [lock.name]
    fd = os.open(lock, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_a_broken_pool_with_calls_queued_leaves_no_segment(tmp_path):
    """One worker, one long call running and several queued, all with large arguments; the worker is killed:
    every call still returns its result (re-run inline), and no segment is left."""
    done = run_script(tmp_path, "broken.py", BROKEN)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["results"] == report["expected"]
    assert report["left"] == [] and entries_of(report["pid"]) == []


BROKEN = """
import asyncio, json, os, signal, time, warnings
import numpy as np
import offload_tuner
from offload_tuner import run_kernel, set_executor
from offload_tuner.runtime import _segments, _shm, _state
from tests.test_shm_leaks import sleepy

warnings.simplefilter("ignore")
_shm.settings.min_bytes = 4096


async def main():
    pool = offload_tuner.recommended_pool(1)
    set_executor(pool)
    calls = [asyncio.ensure_future(run_kernel(sleepy, 0.5, np.full(8192, float(i)), offload_if=True)) for i in range(8)]
    stem = f"{_shm.PREFIX}{_segments.owner_tag()}-"
    while sum(n.startswith(stem) and n.endswith("a") for n in os.listdir(_shm.SHM_DIR)) < 2:
        await asyncio.sleep(0.005)  # the running call's segment and at least one queued one's are written
    os.kill(next(iter(pool._processes)), signal.SIGKILL)
    results = [float(r[0]) for r in await asyncio.gather(*calls)]
    current = _state.current().executors.get("process")
    set_executor(None)
    current.shutdown(wait=True)
    return results


if __name__ == "__main__":
    results = asyncio.run(main())
    time.sleep(0.2)
    _shm.reap_abandoned()
    _segments.drain_pool()  # argument segments kept for reuse: this process's until it exits, not leaked
    tag = _segments.owner_tag()
    left = sorted(n for n in os.listdir(_shm.SHM_DIR) if n.startswith(f"{_shm.PREFIX}{tag}-") and not n.endswith("-owner"))
    print(json.dumps({"results": results, "expected": [2.0 * i for i in range(8)], "left": left, "pid": os.getpid()}))
"""
