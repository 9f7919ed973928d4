"""Module-level kernels and helpers for tests (worker processes import them by name)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from offload_tuner import kernel
from offload_tuner.runtime._host import host_identity
from offload_tuner.runtime._profile import SCHEMA_VERSION


@kernel(sample=lambda n: (list(range(n)),))
def total(xs: list[int]) -> int:
    """Cheap and deterministic: enough to see where a call ran."""
    return sum(xs)


@kernel(sample=lambda n: (list(range(n)),))
def where(xs: list[int]) -> int:
    """Returns the pid that ran it, to tell inline from offloaded."""
    return os.getpid()


@kernel(sample=lambda n: (list(range(n)),))
def fails(xs: list[int]) -> int:
    raise ValueError(f"bad input of length {len(xs)}")


@kernel(sample=lambda n: (list(range(n)),))
def returns_lock(xs: list[int]) -> Any:
    """A result that cannot be pickled."""
    return threading.Lock()


@kernel(size=lambda xs: -1)
def negative_size(xs: list[int]) -> int:
    return 0


@kernel(size=lambda xs: "many")
def junk_size(xs: list[int]) -> int:
    return 0


def not_registered(xs: list[int]) -> int:
    return len(xs)


def write_profile_json(
    path: Path,
    thresholds: dict[str, Any],
    *,
    host: dict | None = None,
    executor_kind: str = "process",
    extra: dict | None = None,
) -> Path:
    """A minimal valid profile for this host, thresholds keyed by kernel key."""
    from offload_tuner.runtime._registry import code_fingerprint, spec_by_key

    kernels = {}
    for key, threshold in thresholds.items():
        spec = spec_by_key(key)
        kernels[key] = {
            "threshold": threshold,
            "status": "ok",
            "code_fingerprint": code_fingerprint(spec.fn) if spec else None,
        }
    data = {
        "schema": SCHEMA_VERSION,
        "host": host if host is not None else host_identity(),
        "executor": {"kind": executor_kind},
        "kernels": kernels,
        **(extra or {}),
    }
    path.write_text(json.dumps(data))
    return path


def sleepy(seconds: float) -> int:
    """Sleeps, then says which process ran it: for faults injected mid-call."""
    import time

    time.sleep(seconds)
    return os.getpid()


def crash_here(message: str) -> None:
    raise KeyError(message)


@kernel(sample=lambda n: (list(range(n)),))
def lane_probe(xs: list[int]) -> tuple[int, str]:
    """Which process and which thread ran it: tells a thread pool's thread from the caller's (inline)."""
    return os.getpid(), threading.current_thread().name


@kernel(sample=lambda n: (list(range(n)),))
def calls_lane_probe(xs: list[int]) -> tuple[int, str]:
    """A kernel that runs another through the runtime, as a kernel built from kernels would."""
    from offload_tuner import run_kernel_sync

    return run_kernel_sync(lane_probe, xs)


@kernel(sample=lambda n: (list(range(n)),))
def nested_decisions(xs: list[int]) -> tuple[str, str, int]:
    """From inside the runtime: where decide() places lane_probe with and without offload_if=True, and which
    process ran lane_probe with offload_if=True."""
    from offload_tuner import decide, run_kernel_sync

    return (
        decide(lane_probe, xs).backend,
        decide(lane_probe, xs, offload_if=True).backend,
        run_kernel_sync(lane_probe, xs, offload_if=True)[0],
    )


@kernel(size=lambda seconds, n: n, sample=lambda n: (0.0, n))
def nap(seconds: float, n: int) -> tuple[int, int]:
    """Sleeps ``seconds``, then says which process ran it and echoes ``n``: a call that can be caught in flight."""
    import time

    time.sleep(seconds)
    return os.getpid(), n


def synthetic_costs(per_element_s: float) -> dict:
    """KernelCosts JSON: compute ``per_element_s * n``, light pickling, a few bytes per element."""

    def power(a: float, b: float = 1.0) -> dict:
        return {
            "form": "power",
            "params": {"a": a, "b": b},
            "size_range": [1.0, 1e6],
            "cv_error": 0.0,
            "n_samples": 20,
            "trusted": True,
            "notes": [],
        }

    return {
        "compute": power(per_element_s),
        "caller_serial": power(1e-8),
        "worker_serial": power(1e-8),
        "nbytes": power(8.0),
        "worker_compute_ratio": 1.0,
    }


def synthetic_transport(round_trip_s: float) -> dict:
    return {
        "round_trip_s": round_trip_s,
        "round_trip_per_byte_s": 1e-9,
        "caller_cpu_s": 5e-5,
        "caller_cpu_per_byte_s": 1e-10,
        "worker_cpu_s": 5e-5,
        "worker_cpu_per_byte_s": 1e-10,
    }


def cluster_profile(
    tmp_path: Path, address: str, *, ratio: float = 0.02, per_element_s: float = 1e-3, threads: int = 2
) -> Path:
    """Kernels whose compute is 1 ms per element, a cluster whose workers are ``1 / ratio`` times faster: at
    size 100 the cluster (10 ms round trip + 2 ms) wins over the pool (100 ms) when both are idle."""
    from offload_tuner.runtime._registry import kernel_key

    keys = [kernel_key(fn) for fn in (nap, total, fails, times_out)]
    path = write_profile_json(tmp_path / "p.json", dict.fromkeys(keys, 1))
    data = json.loads(path.read_text())
    for entry in data["kernels"].values():
        entry["costs"] = synthetic_costs(per_element_s)
    data["transport"] = {"model": synthetic_transport(2e-4)}
    data["policy"] = {"concurrency": 4, "workers": 1, "cores": 2, "loop_budget_s": 0.1}
    data["cluster"] = {
        "identity": {"address": address, "workers": threads, "threads": threads},
        "transport": synthetic_transport(1e-2),
        "kernels": {key: {"worker_compute_ratio": ratio} for key in keys},
    }
    path.write_text(json.dumps(data))
    return path


@kernel(sample=lambda n: (list(range(n)),))
def times_out(xs: list[int]) -> int:
    """Raises TimeoutError itself: the caller must get it as the kernel's own, not as the runtime's bound."""
    raise TimeoutError(f"the kernel's own timeout, {len(xs)} items")


def _unloadable() -> None:
    raise ModuleNotFoundError("No module named 'gone_from_the_workers'")


class Unloadable:
    """Pickles fine here; unpickling it (in a worker) fails as a missing module would."""

    def __reduce__(self) -> tuple:
        return (_unloadable, ())


async def sleepy_call_while_its_workers_are_killed(pool: Any) -> int:
    """Offload a 0.5 s ``sleepy`` call (offload_if=True), SIGKILL every worker of ``pool`` while it runs, and
    return what the caller gets (the pid that ran it): the fault the runtime must survive without losing the call."""
    import asyncio
    import signal

    from offload_tuner import run_kernel

    call = asyncio.create_task(run_kernel(sleepy, 0.5, offload_if=True))
    await asyncio.sleep(0.2)
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)
    return await asyncio.wait_for(call, timeout=30)
