"""The runtime's warnings, said once per cause: the leaf every other runtime module may import."""

from __future__ import annotations

import os
import sys
import warnings


class OffloadTunerWarning(UserWarning):
    """Raised (once per cause) when the runtime falls back to a default."""


class ProfileOverriddenWarning(OffloadTunerWarning):
    """A call passed ``offload_if`` while a trusted profile entry exists for its kernel (once per kernel).

    Its own category so a deliberate override can be silenced precisely:
    ``warnings.filterwarnings("ignore", category=ProfileOverriddenWarning)``.
    """


warned: set[str] = set()
"""The causes already reported (tests clear it)."""

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def first_time(key: str) -> bool:
    """Whether ``key`` is reported for the first time (and remember it): the log records of a cause taken on
    every call go at WARNING once, then at DEBUG."""
    if key in warned:
        return False
    warned.add(key)
    return True


def warn_once(
    key: str, message: str, category: type[OffloadTunerWarning] = OffloadTunerWarning, stacklevel: int = 3
) -> bool:
    """Warn about ``key`` the first time only: a fallback taken on every call must not flood the log. Returns
    whether it warned now. ``stacklevel=0``: point at the first caller outside ``offload_tuner`` (the user's call
    site, however deep in the runtime the warning is raised)."""
    if not first_time(key):
        return False
    warnings.warn(message, category, stacklevel=stacklevel or _outside_stacklevel())
    return True


def _outside_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside the package, counted from ``warn_once``'s caller's view."""
    frame = sys._getframe(2)  # warn_once's caller
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
