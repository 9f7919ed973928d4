"""Operational events on the ``offload_tuner`` logger: a leaf beside :mod:`_warn`, for what an operator acts on
(a pool rebuilt, an executor dropped, a cluster lost or back, a call's fallback after a failure, drift, an
adaptation step, a profile loaded or rejected). Warnings stay for configuration mistakes, said once to whoever
runs the code; these records go wherever the service's logging sends them, with structured fields.

Every record carries ``event``, ``kernel``, ``backend`` and ``reason`` in ``extra``. Never called on the hot
path: only where something happened. :mod:`logging` is imported on the first event, not at import (``import
offload_tuner`` and the inline path stay as cheap as before); the logger gets a :class:`logging.NullHandler`, so
an application without logging configured sees the warnings only, not each event twice.
"""

from __future__ import annotations

from typing import Any, Final

LOGGER_NAME: Final = "offload_tuner"
WARNING: Final = 30
"""``logging.WARNING``: faults and fallbacks (without importing logging to name it)."""
INFO: Final = 20
"""``logging.INFO``: a cluster back, an adaptation step, a profile loaded."""
DEBUG: Final = 10
"""``logging.DEBUG``: a per-call fallback already reported at WARNING for this kernel and cause."""

_logger: Any = None


def logger() -> Any:
    """``logging.getLogger("offload_tuner")``, set up on first use."""
    global _logger
    if _logger is None:
        import logging

        log = logging.getLogger(LOGGER_NAME)
        if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
            log.addHandler(logging.NullHandler())
        _logger = log
    return _logger


def describe(exc: BaseException) -> str:
    """An exception for a record's ``reason``: ``"Type: message"``, or the type alone when it has no message."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def event(
    name: str, level: int, message: str, *, kernel: str | None, backend: str | None, reason: str, **fields: Any
) -> None:
    """One record: ``message`` for people, ``event``/``kernel``/``backend``/``reason`` (and ``fields``) for
    machines. Never raises: a broken handler must not fail the call that is being rescued."""
    try:
        log = logger()
        if log.isEnabledFor(level):
            extra = {"event": name, "kernel": kernel, "backend": backend, "reason": reason, **fields}
            log.log(level, "offload-tuner: %s", message, extra=extra)
    except Exception:  # logging raising (a handler's bug, a closed stream): not the caller's problem
        pass


def profile_event(source: str, problem: str | None, backend: str | None, kernels: int) -> None:
    """A profile loaded (INFO) or refused (WARNING: its kernels use their defaults); once per load, never per call."""
    if problem is None:
        event("profile_loaded", INFO, f"profile {source} loaded ({kernels} kernels)", kernel=None, backend=backend,
              reason=f"{kernels} kernels", source=source)  # fmt: skip
    else:
        event("profile_rejected", WARNING, f"profile not used, kernels use their defaults: {problem}", kernel=None,
              backend=backend, reason=problem, source=source)  # fmt: skip
