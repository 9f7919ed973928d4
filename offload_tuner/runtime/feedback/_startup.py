"""Start-up from environment variables: ``OFFLOAD_TUNER_STATS=path`` starts the stats recorder and
``OFFLOAD_TUNER_ADAPT=1`` online adaptation, on the first call of a registered kernel."""

from __future__ import annotations

import os

from offload_tuner.runtime._observe import Observer
from offload_tuner.runtime._stats import KernelStats


class StartFromEnvironment(Observer):
    """Checks the environment once, on the first kernel call of the process (not at import: a service sets its
    environment up before it serves)."""

    def __init__(self) -> None:
        self.checked = False

    def kernel_seen(self, stats: KernelStats) -> None:
        if self.checked:
            return
        self.checked = True
        # Imported only when asked for: a service that wants neither pays nothing (json, a thread, the models).
        if os.environ.get("OFFLOAD_TUNER_STATS"):
            from offload_tuner.runtime.feedback._statsfile import start_from_environment

            start_from_environment()
        if os.environ.get("OFFLOAD_TUNER_ADAPT", "0").strip() not in ("", "0"):
            from offload_tuner.runtime.feedback._adapt import start_from_environment as start_adapting

            start_adapting()
