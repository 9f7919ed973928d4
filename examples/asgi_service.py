"""A FastAPI service running the bundled kernels through offload_tuner: the example to copy for a web app.

Where each piece goes in a web framework:

* **The pool and the profile are per process, installed in the lifespan.** A server started with
  ``uvicorn --workers N`` (or gunicorn) runs the app in N processes; each runs ``lifespan`` once at startup,
  so each gets its own ``recommended_pool()`` and its own copy of the profile. Nothing is created at import
  time: the server's supervisor imports the app too, and a pool made there would be shared by nobody.
* **The profile is loaded at startup**, from ``$OFFLOAD_TUNER_PROFILE``, else this host's default profile
  (``default_profile_path()``, where ``offload-tuner calibrate`` writes). A profile the process cannot use is
  reported by one warning in the server's log and every kernel falls back to its default (inline), so a bad
  deploy degrades instead of failing to start; pass ``strict=True`` to refuse to start instead.
* **The pool is shut down when the lifespan ends** (SIGTERM to the server): the executor is uninstalled first,
  so nothing can be submitted to a pool that is shutting down, then the pool's workers are joined.
* **Handlers just ``await run_kernel(fn, *args)``**; the profile decides per call whether it runs inline on
  the event loop or in the pool.

Endpoints (JSON bodies ``{"size": n}``): ``POST /cluster`` (``cluster_observations``, n records),
``POST /rank`` (``rank_latencies``, n rows), ``POST /spikes`` (``detect_spikes``, n samples; needs numpy) and
``GET /healthz``. A real service would parse its records from the body; here the body names a size and the
records are seeded synthetic data, made once per size and cached, so parsing a request costs little beside
the kernel and a load generator stays cheap.

``SERVICE_GATE=constant256`` makes every call site pass the old constant gate (``offload_if=size >= 256``)
instead of letting the profile decide (``SERVICE_GATE=profile``, the default): the same app, the two gates,
for ``python -m benchmarks.http`` to compare. Run it with::

    pip install -e '.[web,calibrate]'
    OFFLOAD_TUNER_PROFILE=calibration/reference/vm.json uvicorn --app-dir examples asgi_service:app --workers 2
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import offload_tuner_kernels
from offload_tuner import (
    current_profile,
    decide,
    default_profile_path,
    get_executor,
    load_profile,
    recommended_pool,
    run_kernel,
    set_executor,
)
from offload_tuner_kernels.records import make_observations

GATE_ENV = "SERVICE_GATE"
GATES = ("profile", "constant256")
OLD_CONSTANT = 256
"""The hand-picked gate the service used before: offload every call of 256 records or more."""


@dataclass(frozen=True)
class Endpoint:
    kernel: Callable[..., Any]
    records: Callable[[int], tuple[Any, ...]]
    """The kernel's arguments for a request of ``size`` records."""
    max_size: int
    """Larger requests are refused (422): a request cannot ask the service for unbounded work."""
    summary: Callable[[Any], Any]
    """What the response carries of the result: kept small so serialising it costs little."""


def _observations(size: int) -> tuple[Any, ...]:
    return (make_observations(size, seed=size),)


def _latency_rows(size: int) -> tuple[Any, ...]:
    """``size`` (endpoint_id, latency_ms) rows, log-normal around a per-endpoint median."""
    rng = random.Random(size)
    medians = [rng.uniform(2.0, 120.0) for _ in range(48)]
    rows = [
        (e, round(rng.lognormvariate(math.log(medians[e]), 0.6), 3)) for e in (rng.randrange(48) for _ in range(size))
    ]
    return (rows,)


def _signal(size: int) -> tuple[Any, ...]:
    """A noisy sine around 10.0 with a spike every ~200 samples (float64; numpy is imported only here)."""
    import numpy as np

    rng = np.random.default_rng(size)
    signal = 10.0 + 2.0 * np.sin(np.arange(size) * (2 * np.pi / 500.0)) + rng.normal(0.0, 0.5, size)
    spikes = rng.choice(size, size=size // 200, replace=False)
    signal[spikes] += rng.choice((-1.0, 1.0), size=spikes.size) * 9.0
    return (signal,)


ENDPOINTS: dict[str, Endpoint] = {
    "cluster": Endpoint(offload_tuner_kernels.cluster_observations, _observations, 2048, lambda r: len(set(r))),
    "rank": Endpoint(offload_tuner_kernels.rank_latencies, _latency_rows, 1 << 20, list),
}
if "detect_spikes" in offload_tuner_kernels.__all__:  # registered only where numpy is installed
    ENDPOINTS["spikes"] = Endpoint(offload_tuner_kernels.detect_spikes, _signal, 1 << 22, len)


@lru_cache(maxsize=256)
def cached_records(endpoint: str, size: int) -> tuple[Any, ...]:
    """Made once per process and size: stands in for a request body parsed at no cost (see the docstring)."""
    return ENDPOINTS[endpoint].records(size)


class Job(BaseModel):
    size: int = Field(ge=1, description="records in the request")


def gate_from_env() -> str:
    gate = os.environ.get(GATE_ENV, "profile")
    if gate not in GATES:
        raise RuntimeError(f"{GATE_ENV}={gate!r}: expected one of {', '.join(GATES)}")
    return gate


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs once per server process: install the pool and the profile at startup, shut the pool down at exit."""
    app.state.gate = gate_from_env()  # a typo fails the start, before any pool exists
    load_profile(os.environ.get("OFFLOAD_TUNER_PROFILE") or default_profile_path())
    pool = recommended_pool()  # forkserver, one worker per core: safe in a threaded server process
    set_executor(pool)
    try:
        yield
    finally:
        set_executor(None)  # calls from now on run inline; none can reach a pool being shut down
        pool.shutdown(wait=True, cancel_futures=True)


app = FastAPI(title="offload-tuner example service", lifespan=lifespan)


async def serve(endpoint: str, job: Job) -> dict[str, Any]:
    spec = ENDPOINTS[endpoint]
    if job.size > spec.max_size:
        raise HTTPException(422, f"size {job.size} > {spec.max_size}, the most /{endpoint} takes")
    args = cached_records(endpoint, job.size)
    if app.state.gate == "constant256":
        offload = job.size >= OLD_CONSTANT  # the old call site: the caller's word stands
        result = await run_kernel(spec.kernel, *args, offload_if=offload)
    else:
        offload = decide(spec.kernel, *args).offload  # reported in the response; costs a few microseconds
        result = await run_kernel(spec.kernel, *args)
    return {"size": job.size, "offloaded": offload, "result": spec.summary(result)}


@app.post("/cluster")
async def cluster(job: Job) -> dict[str, Any]:
    return await serve("cluster", job)


@app.post("/rank")
async def rank(job: Job) -> dict[str, Any]:
    return await serve("rank", job)


if "spikes" in ENDPOINTS:

    @app.post("/spikes")
    async def spikes(job: Job) -> dict[str, Any]:
        return await serve("spikes", job)


@app.get("/healthz")
async def healthz() -> dict[str, Any]:
    """Ready once the lifespan has run: says which process answered and what it runs with."""
    profile = current_profile()
    executor = get_executor()
    return {
        "status": "ok",
        "pid": os.getpid(),
        "gate": app.state.gate,
        "profile": None if profile is None else str(profile.source),
        "pool_workers": getattr(executor, "_max_workers", None),  # ProcessPoolExecutor keeps no public count
        "endpoints": sorted(ENDPOINTS),
    }
