"""The runtime's warnings, said once per cause: the leaf every other runtime module may import."""

from __future__ import annotations

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


def warn_once(
    key: str, message: str, category: type[OffloadTunerWarning] = OffloadTunerWarning, stacklevel: int = 3
) -> None:
    """Warn about ``key`` the first time only: a fallback taken on every call must not flood the log."""
    if key in warned:
        return
    warned.add(key)
    warnings.warn(message, category, stacklevel=stacklevel)
