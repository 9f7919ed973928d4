"""The facade of the production path: :func:`run_kernel` and :func:`run_kernel_sync`, and the names
``offload_tuner`` re-exports from the layers below.

A call is decided on the hot path (:mod:`_decision`), then run inline here or handed to :mod:`_execution`.
The layers, each importing only those above it in this list (``tests/test_layers.py`` checks it):
``_warn``/``_log``/``_observe`` (leaves), ``_lanes``, ``_state`` (snapshot, install, load, dropped executors),
``_placer`` (placement per call), ``_entries`` and ``_decision`` (what decides, the hot path), ``_outcomes``
and ``_execution`` (running a call, one failure classifier for both calling conventions), this facade; and
``feedback/`` above it all, notified through :mod:`_observe`, never imported by the call path.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from offload_tuner.runtime._decision import Decision, decide, offload_target, sample_every
from offload_tuner.runtime._state import (
    current_profile,
    get_executor,
    get_executors,
    load_profile,
    set_executor,
    set_executors,
    unload_profile,
)
from offload_tuner.runtime._warn import OffloadTunerWarning, ProfileOverriddenWarning

__all__ = [
    "Decision",
    "OffloadTunerWarning",
    "ProfileOverriddenWarning",
    "current_profile",
    "decide",
    "get_executor",
    "get_executors",
    "load_profile",
    "run_kernel",
    "run_kernel_sync",
    "sample_every",
    "set_executor",
    "set_executors",
    "unload_profile",
]

R = TypeVar("R")

_execution: ModuleType | None = None
"""The execution layer, loaded on the first offloaded or timed call: a service whose calls all run inline never
pays for importing it (``import offload_tuner`` stays as cheap as before the layers were split)."""


def _load_execution() -> ModuleType:
    global _execution
    from offload_tuner.runtime import _execution as execution  # see _execution

    _execution = execution
    return execution


async def run_kernel(
    fn: Callable[..., R], *args: Any, offload_if: bool | None = None, timeout: float | None = None
) -> R:
    """Run ``fn(*args)`` inline or on the installed executor and return its result.

    ``offload_if=True``/``False`` is the caller's word and stands (the old boolean gate). ``None`` lets
    the installed profile decide from the kernel's input size. No executor installed: inline. A function
    not registered with ``@kernel``: offloaded, the original gate's default (one warning per function
    suggests ``@kernel``). A kernel without a usable profile entry: its ``default_threshold`` (``None`` =
    inline).

    ``timeout`` (seconds) bounds the wait for an offloaded call and raises :class:`TimeoutError`; the
    worker cannot be stopped mid-call, so it finishes and its result is dropped. Inline calls are plain
    function calls and are not bounded.

    Never loses work: arguments that cannot be pickled, a result that cannot be pickled, an executor that
    is broken (a worker was killed), shut down, or cancelled the call all make the pure kernel run inline,
    with one warning per cause and one record per fault on the ``offload_tuner`` logger.
    """
    target = offload_target(fn, args, offload_if)
    if target is None:
        return fn(*args)
    result: R = await (_execution or _load_execution()).run_async(target, fn, args, timeout)  # fn's, unpickled
    return result


def run_kernel_sync(
    fn: Callable[..., R], *args: Any, offload_if: bool | None = None, timeout: float | None = None
) -> R:
    """The synchronous twin of :func:`run_kernel` for code without an event loop (blocks the caller)."""
    target = offload_target(fn, args, offload_if)
    if target is None:
        return fn(*args)
    result: R = (_execution or _load_execution()).run_sync(target, fn, args, timeout)  # fn's, unpickled
    return result
