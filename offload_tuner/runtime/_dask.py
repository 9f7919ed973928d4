"""A Dask cluster as one more backend: how to reach it, whether it can take a call now, and which failures are its.

Nothing here imports Dask at module level: the runtime reads only attributes of executors the user installed,
and :class:`ClusterExecutor` imports ``distributed`` in its own connecting thread. A service that never installs
a cluster never imports Dask (``tests/test_dask.py`` checks it).

Two ways in, both the ``"dask"`` backend:

* ``client.get_executor()``: the user's connected ``distributed.Client``; the runtime checks its status before
  each cluster call, so a lost scheduler makes calls run locally instead of waiting on a dead connection;
* :class:`ClusterExecutor` (``offload_tuner.cluster_executor(address)``): connects in the background and keeps
  retrying, so a service starts, and serves, while the scheduler is unreachable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

CONNECT_TIMEOUT_S = 5.0
"""How long one connection attempt to the scheduler may take (Dask's own default is 30 s)."""
RETRY_S = 30.0
"""Pause between connection attempts, and before the runtime tries a dropped cluster again."""


class ClusterUnavailable(RuntimeError):
    """The cluster cannot take a call now (not connected yet, or its scheduler was lost); the call runs locally."""


class ClusterExecutor(concurrent.futures.Executor):
    """A Dask cluster behind the ``concurrent.futures`` API that never holds up the service.

    It connects in a background thread and retries every ``retry_s`` until it reaches the scheduler; until then,
    and whenever the client has lost the scheduler, :meth:`submit` raises :class:`ClusterUnavailable` at once,
    and the runtime runs the call locally (one warning) and tries the cluster again later.
    """

    def __init__(self, address: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S, retry_s: float = RETRY_S) -> None:
        if not isinstance(address, str) or "://" not in address:
            raise ValueError(f"cluster_executor() needs a scheduler address like 'tcp://host:8786', got {address!r}")
        for name, value in (("connect_timeout_s", connect_timeout_s), ("retry_s", retry_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"cluster_executor(): {name} must be a positive number of seconds, got {value!r}")
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            raise ImportError("cluster_executor() needs Dask's distributed package: pip install 'offload-tuner[dask]'")
        self.address = address
        self.connect_timeout_s = float(connect_timeout_s)
        self.retry_s = float(retry_s)
        self.last_error: str | None = None
        self._client: Any = None
        self._executor: Any = None
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._connect, name=f"offload-tuner-dask {address}", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        # The client runs its own event loop in its own thread; this thread only waits for it to connect.
        asyncio.set_event_loop(None)
        from distributed import Client

        while not self._closed.is_set():
            try:
                client = Client(self.address, timeout=self.connect_timeout_s, set_as_default=False)  # type: ignore[no-untyped-call]  # distributed is not annotated
            except Exception as exc:  # OSError (unreachable, refused), TimeoutError, a bad address...
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._closed.wait(self.retry_s)
                continue
            with self._lock:
                if self._closed.is_set():
                    client.close()  # type: ignore[no-untyped-call]  # distributed is not annotated
                    return
                self._client, self._executor = client, client.get_executor(pure=False)  # type: ignore[no-untyped-call]  # distributed is not annotated
                self.last_error = None
            self._connected.set()
            return

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the first connection succeeded (True) or ``timeout`` passed (False)."""
        return self._connected.wait(timeout)

    @property
    def client(self) -> Any:
        """The connected ``distributed.Client`` (None before the first connection)."""
        return self._client

    def ready(self) -> bool:
        client = self._client  # read once: shutdown() may clear it meanwhile
        return not self._closed.is_set() and client is not None and client.status == "running"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        if self._closed.is_set():
            raise RuntimeError("cannot schedule new futures after shutdown")
        with self._lock:
            client, executor = self._client, self._executor
        if executor is None or client.status != "running":
            state = "not connected yet" if executor is None else f"client {client.status}"
            raise ClusterUnavailable(
                f"Dask scheduler {self.address}: {state}" + (f" ({self.last_error})" if self.last_error else "")
            )
        future: concurrent.futures.Future[Any] = executor.submit(fn, *args, **kwargs)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed.set()
            client, self._client, self._executor = self._client, None, None
        if client is not None:
            try:
                client.close(timeout=self.connect_timeout_s)
            except Exception:  # a client whose scheduler is gone may complain while closing; it is closed either way
                pass
        if wait:
            self._thread.join(self.connect_timeout_s + 1)

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else "ready" if self.ready() else "not connected"
        return f"ClusterExecutor({self.address!r}, {state})"


def cluster_client(executor: Any) -> Any:
    """The ``distributed.Client`` behind a ``"dask"`` executor (None if not connected)."""
    if isinstance(executor, ClusterExecutor):
        return executor.client
    return getattr(executor, "_client", None)


def cluster_ready(executor: Any) -> bool:
    """Whether a ``"dask"`` executor can take a call now: an attribute read, no round trip."""
    if isinstance(executor, ClusterExecutor):
        return executor.ready()
    client = getattr(executor, "_client", None)
    return (
        client is not None
        and getattr(client, "status", None) == "running"
        and not getattr(executor, "_shutdown", False)
    )


def cluster_closed(executor: Any) -> bool:
    """Whether the user shut a ``"dask"`` executor down, or closed its client (then the runtime stops trying it:
    a closed client never comes back)."""
    if isinstance(executor, ClusterExecutor):
        return executor._closed.is_set()
    client = getattr(executor, "_client", None)
    return bool(getattr(executor, "_shutdown", False)) or getattr(client, "status", None) in ("closing", "closed")


def retry_delay(executor: Any) -> float:
    """Seconds before the runtime tries a dropped cluster again: the executor's ``retry_s``, else :data:`RETRY_S`."""
    delay = getattr(executor, "retry_s", None)
    return float(delay) if isinstance(delay, (int, float)) and delay > 0 else RETRY_S


def cluster_address(executor: Any) -> str | None:
    """The scheduler address of a ``"dask"`` executor (what profiles key a cluster's costs by)."""
    if isinstance(executor, ClusterExecutor):
        return executor.address
    client = getattr(executor, "_client", None)
    scheduler = getattr(client, "scheduler", None)
    address = getattr(scheduler, "address", None)
    return address if isinstance(address, str) else None


def cluster_identity(executor: Any) -> dict[str, Any]:
    """Address, worker count and threads of the cluster now (one round trip to the scheduler)."""
    client = cluster_client(executor)
    if client is None:
        raise ClusterUnavailable(f"Dask cluster {cluster_address(executor)}: not connected")
    workers = (
        client.scheduler_info(n_workers=-1)["workers"]
        if _takes_n_workers(client)
        else (client.scheduler_info()["workers"])
    )
    return {
        "address": cluster_address(executor),
        "workers": len(workers),
        "threads": sum(int(w.get("nthreads", 1)) for w in workers.values()),
    }


def _takes_n_workers(client: Any) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


SCATTER_THREADS = 4
"""Helper threads for scattered calls (``client.scatter`` blocks): bounded, and apart from the event loop's
default pool, so a stuck cluster can hold at most these."""
_scatter_pool: concurrent.futures.ThreadPoolExecutor | None = None
_scatter_lock = threading.Lock()


def scatter_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _scatter_pool
    with _scatter_lock:
        if _scatter_pool is None:
            _scatter_pool = concurrent.futures.ThreadPoolExecutor(SCATTER_THREADS, "offload-tuner-scatter")
        return _scatter_pool


def scatter_payload(client: Any, payload: bytes, timeout: float | None = None) -> Any:
    """Send a call's payload straight to a worker (``direct=True``) ahead of the call; returns the Dask future the
    task then takes as its argument. Blocks: run it on :func:`scatter_pool`. Any failure is the cluster's
    (:class:`ClusterUnavailable`), never mistaken for the kernel's: a direct connection that times out raises a
    plain ``OSError``."""
    # hash=False: a key of its own per call. By content, two calls with the same arguments would share one key, and
    # the first one's release could drop the data under the second one's task ("lost dependencies").
    bound = {} if timeout is None else {"timeout": timeout}  # Dask's own default, not None, when unbounded
    try:
        return client.scatter(payload, direct=True, hash=False, **bound)
    except Exception as exc:
        raise ClusterUnavailable(f"scatter to the cluster failed ({type(exc).__name__}: {exc})") from exc


def is_cluster_failure(exc: BaseException) -> bool:
    """Whether a call failed because of the cluster (its result can still be computed locally) rather than because
    the kernel raised. Dask re-raises a kernel's own exception as that exception; its own failures (a worker lost
    too often, a closed connection, a cancelled future) come from its modules or as a cancellation."""
    from offload_tuner.runtime._backends import PayloadNotLoadable

    if isinstance(
        exc, (ClusterUnavailable, PayloadNotLoadable, concurrent.futures.CancelledError, asyncio.CancelledError)
    ):
        return True
    module = type(exc).__module__ or ""
    return module == "distributed" or module.startswith(("distributed.", "tornado."))
