"""A fix for a CPython 3.11 process-pool hang, applied to the pools the runtime builds and installs.

Why: when a worker dies, 3.11's pool manager thread fails every pending call with ``set_exception``. A call a
caller cancelled that the manager had not yet purged (cancelling does not wake it, so the window lasts until its
next event: milliseconds to seconds) is already done, ``set_exception`` raises ``InvalidStateError``, the manager
thread dies, and every caller still waiting on that pool waits forever. A service sees it as a hang after a
killed worker under load with client cancellations. CPython 3.12 catches the error (the same few lines as
:meth:`_ManagerThread.terminate_broken` below); on 3.11 we give the pool a manager thread that does so too.

Only pools whose manager thread has not started yet can take the fix (it starts with their first call), which is
every pool :func:`~offload_tuner.runtime._backends.recommended_pool` builds and, in practice, every pool a service
installs before serving. Nothing changes on 3.12 and later.
"""

from __future__ import annotations

import sys
import types
from concurrent.futures import InvalidStateError, ProcessPoolExecutor
from concurrent.futures import process as _process
from typing import Any

NEEDED = sys.version_info < (3, 12)
"""Whether this interpreter's pool has the bug (fixed in CPython 3.12)."""


class _ManagerThread(_process._ExecutorManagerThread):
    """3.11's manager thread, failing pending calls the way 3.12 does: a cancelled one is skipped, not fatal."""

    def terminate_broken(self, cause: Any) -> None:
        executor = self.executor_reference()
        if executor is not None:  # marked broken first, as the original does, so that new submits fail at once
            executor._broken = "A child process terminated abruptly, the process pool is not usable anymore"
            executor._shutdown_thread = True
            executor = None
        error = _process.BrokenProcessPool(
            "A process in the process pool was terminated abruptly while the future was running or pending."
        )
        if cause is not None:
            error.__cause__ = _process._RemoteTraceback(f"\n'''\n{''.join(cause)}'''")  # type: ignore[arg-type]  # typeshed: a str is what CPython passes
        for item in self.pending_work_items.values():
            try:
                item.future.set_exception(error)
            except InvalidStateError:  # cancelled by its caller before the manager purged it
                pass
        self.pending_work_items.clear()
        super().terminate_broken(cause)  # no pending calls left to fail: terminates workers, closes the queues


def _start_manager_thread(self: Any) -> None:
    """3.11's ``ProcessPoolExecutor._start_executor_manager_thread`` with :class:`_ManagerThread`."""
    if self._executor_manager_thread is None:
        if not self._safe_to_dynamically_spawn_children:  # fork: start the processes so their sentinels are known
            self._launch_processes()
        self._executor_manager_thread = _ManagerThread(self)
        self._executor_manager_thread.start()
        _process._threads_wakeups[self._executor_manager_thread] = self._executor_manager_thread_wakeup


def repair(executor: object) -> bool:
    """Give a process pool the fixed manager thread where this interpreter needs it and the pool has not started
    one yet; True when the pool now has it. Anything else is left alone."""
    if not NEEDED or type(executor) is not ProcessPoolExecutor:
        return False
    if getattr(executor, "_executor_manager_thread", True) is not None:
        return False  # running already (or not the pool we know): too late to swap safely
    executor._start_executor_manager_thread = types.MethodType(_start_manager_thread, executor)  # type: ignore[method-assign]
    return True


def repaired(executor: object) -> bool:
    """Whether ``executor`` runs (or will start) the fixed manager thread."""
    thread = getattr(executor, "_executor_manager_thread", None)
    if isinstance(thread, _ManagerThread):
        return True
    start = getattr(executor, "__dict__", {}).get("_start_executor_manager_thread")
    return isinstance(start, types.MethodType) and start.__func__ is _start_manager_thread
