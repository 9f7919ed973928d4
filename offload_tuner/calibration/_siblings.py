"""Sibling service processes for the concurrent phase (impure): ``calibrate --processes N`` measures every
candidate with N-1 other processes running the same reference workload beside the measuring one.

Why: ``uvicorn --workers N`` runs N event loops, each with its own pool of ``cores // N`` workers, on the cores
calibration measured with one loop and one pool. A threshold chosen alone is chosen for cores nobody else uses.
So each sibling is what one more service process is: its own event loop, its own pool of the measuring
process's size, ``concurrency`` callers going round the kernel's ring of calls (the same mix of sizes, its own
seeded order) under the very candidate the measuring process runs. Siblings start just before the measuring
run and keep going round their ring until it ends, so the whole measured run sees the shape; what they report
is how many calls they ran and their loop's lag samples.

Robustness: every wait is bounded by the kernel's time limit; a sibling that does not answer is killed with its
whole process group (it calls ``setsid``: its pool's forkserver and workers die with it) and the kernel's phase
fails with a :class:`SiblingFailed` naming it; the next kernel starts fresh siblings. A sibling whose parent
disappears kills its own group. :meth:`Siblings.close` (also on ``KeyboardInterrupt``) leaves no process behind.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, TypeVar

SIBLING_VARIABLE = "OFFLOAD_TUNER_CALIBRATION_SIBLING"
"""Set (to the sibling's index) in a sibling process and inherited by its pool workers: lets a kernel or a test
tell a sibling from the measuring process."""
STARTUP_S = 60.0
"""The least time a sibling gets to start: an interpreter, the package, its pool warmed (a busy 2-core box)."""
EXIT_GRACE_S = 5.0
"""Seconds a sibling gets to shut its pool down and exit after being asked, before its group is killed."""
PARENT_POLL_S = 0.5

T = TypeVar("T")


class SiblingFailed(RuntimeError):
    """A sibling process failed, hung past its time limit or died: the kernel's concurrent phase fails."""


class Siblings:
    """``count`` sibling processes, started on first use, each with ``workers`` pool workers and ``callers``
    callers. Use as a context manager: leaving it stops every sibling, whatever happened."""

    def __init__(self, count: int, *, workers: int, callers: int) -> None:
        if count < 1 or workers < 1 or callers < 1:
            raise ValueError(f"siblings need count, workers and callers >= 1, got {count}, {workers}, {callers}")
        self.count, self.workers, self.callers = count, workers, callers
        self.processes: list[Any] = []
        self.conns: list[Connection] = []
        self.pids: list[int] = []
        """Every sibling ever started (tests check that none of their process groups is left)."""
        self.kernel: tuple | None = None
        self.limit_s = STARTUP_S

    def __enter__(self) -> Siblings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ lifecycle

    def prepare(self, key: str, workload_range: tuple[float, float], count: int, seed: int, *, limit_s: float) -> None:
        """Have every sibling build the ring of ``count`` calls of kernel ``key`` (imported by its key, as pool
        workers do), sibling ``i`` in the order of ``seed`` + i + 1. Starts the siblings if none run."""
        self._prepare(("kernel", key, float(workload_range[0]), float(workload_range[1]), count, seed), limit_s)

    def prepare_shared(
        self, members: Sequence[tuple[str, str, float, float, int]], seed: int, *, limit_s: float
    ) -> None:
        """Have every sibling build the shared stream's ring (:mod:`_shared`): each member ``(key, lane, lo, hi,
        count)``'s calls, shuffled in sibling ``i``'s order. Run it with :meth:`around` and a ``("run_shared",
        thresholds)`` message. Starts the siblings if none run."""
        self._prepare(("shared", tuple(members), seed), limit_s)

    def _prepare(self, kernel: tuple[Any, ...], limit_s: float) -> None:
        self.limit_s = limit_s
        if self.processes and kernel == self.kernel:
            return
        if not self.processes:
            self._start()
        self.kernel = None
        self._send_all(kernel)
        self._collect("ok", self.limit_s)
        self.kernel = kernel

    def _start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the caller's threads
        try:
            for index in range(self.count):
                parent, child = context.Pipe()
                process = context.Process(
                    target=sibling_main,
                    args=(child, index + 1, self.workers, self.callers, os.getpid(), self.count + 1),
                    name=f"offload-tuner-sibling-{index + 1}",
                )
                process.start()
                child.close()
                self.processes.append(process)
                self.conns.append(parent)
                assert process.pid is not None  # started
                self.pids.append(process.pid)
            self._collect("ready", max(STARTUP_S, self.limit_s))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Ask every sibling to exit, kill the groups of those that do not within ``EXIT_GRACE_S``, reap them."""
        processes, conns = self.processes, self.conns
        self.processes, self.conns, self.kernel = [], [], None
        for conn in conns:
            try:
                conn.send(("exit",))
            except (OSError, ValueError):
                pass  # already gone
        for process in processes:
            process.join(EXIT_GRACE_S)
            _kill_group(process.pid)  # also sweeps anything the sibling left in its group
            process.join()
        for conn in conns:
            conn.close()

    def kill(self) -> None:
        """Kill every sibling's group at once (one of them failed or hung: no grace for any)."""
        for process in self.processes:
            _kill_group(process.pid)
        self.close()

    # ---------------------------------------------------------------------------------------- runs

    def around(
        self, lane: str, threshold: int | None, run: Callable[[], T], message: tuple[Any, ...] | None = None
    ) -> tuple[T, list[int], list[float]]:
        """``run()`` while every sibling goes round its ring under ``threshold`` on ``lane`` ("process" or
        "thread"), or as ``message`` says (the shared stream's ``("run_shared", thresholds)``). Returns what
        ``run`` returned, the calls each sibling ran and all the siblings' lag samples."""
        if self.kernel is None:
            raise SiblingFailed("siblings have no kernel prepared (an earlier failure stopped them)")
        try:
            self._send_all(("run", lane, threshold) if message is None else message)
            result = run()
        except BaseException:
            self.kill()
            raise
        self._send_all(("stop",))
        replies = self._collect("done", self.limit_s)
        lags = [lag for _, sibling_lags in replies for lag in sibling_lags]
        return result, [calls for calls, _ in replies], lags

    def _send_all(self, message: tuple[Any, ...]) -> None:
        """Send ``message`` to every sibling. One that died (its end of the pipe closed) fails the kernel by name,
        as a silent one does in :meth:`_collect`, and every sibling is killed: the next kernel starts fresh ones."""
        for index, conn in enumerate(self.conns):
            try:
                conn.send(message)
            except (OSError, ValueError) as exc:
                self.kill()
                raise SiblingFailed(f"sibling process {index + 1} died ({type(exc).__name__})") from exc

    def _collect(self, expected: str, timeout_s: float) -> list[Any]:
        """One ``expected`` reply from every sibling, each within ``timeout_s``; kills them all otherwise."""
        replies = []
        for index, conn in enumerate(self.conns):
            try:
                if not conn.poll(timeout_s):
                    raise SiblingFailed(
                        f"sibling process {index + 1} did not answer within {timeout_s:.0f} s (hung?); killed"
                    )
                kind, payload = conn.recv()
            except (EOFError, OSError) as exc:
                self.kill()
                raise SiblingFailed(f"sibling process {index + 1} died ({type(exc).__name__})") from exc
            except BaseException:
                self.kill()
                raise
            if kind != expected:
                self.kill()
                raise SiblingFailed(f"sibling process {index + 1} failed: {payload}")
            replies.append(payload)
        return replies


def _kill_group(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty: every process of it has exited


# ---------------------------------------------------------------------------------------- sibling side


def sibling_main(conn: Connection, index: int, workers: int, callers: int, parent: int, processes: int = 1) -> None:
    """A sibling process: its own session (so its group can be killed whole), its own pool, then messages until
    "exit" or the parent's end of the pipe closes."""
    from offload_tuner.runtime._backends import recommended_pool

    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the measuring process decides when siblings stop
    os.environ[SIBLING_VARIABLE] = str(index)  # before the pool starts: its workers inherit it
    _watch_parent(parent)
    from offload_tuner.calibration._sibling_loop import SiblingState, handle

    pool = recommended_pool(workers, processes=processes)  # BLAS/OpenMP threads: the same share as the measuring pool
    state = SiblingState(pool, workers, callers, index)
    try:
        state.warm()
        conn.send(("ready", None))
        while True:
            message = conn.recv()
            if message[0] == "exit":
                break
            conn.send(handle(state, message, conn))
    except (EOFError, OSError):
        pass  # the measuring process is gone: nothing to answer
    finally:
        state.shutdown()


def _watch_parent(parent: int) -> None:
    """Kill this sibling's whole group if the measuring process dies (killed with SIGKILL, no ``finally``)
    while a kernel call hangs here and the closed pipe would never be read."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="offload-tuner-sibling-watch", daemon=True).start()
