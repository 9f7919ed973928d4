"""What learns from production calls: the drift check, retune, the stats file, online adaptation, and the start-up
from environment variables.

Above the call path: it subscribes to the hook the call path notifies (:mod:`offload_tuner.runtime._observe`) and
is never imported by it. ``offload_tuner`` calls :func:`install` at import. Only the two small observers are
imported here; the stats file, the models and adaptation are imported when first used.
"""

from __future__ import annotations

from offload_tuner.runtime import _observe
from offload_tuner.runtime.feedback._drift import DriftCheck
from offload_tuner.runtime.feedback._startup import StartFromEnvironment

drift_check = DriftCheck()
start_from_environment = StartFromEnvironment()


def install() -> None:
    """Subscribe the drift check and the start-up from the environment (again: no change)."""
    _observe.subscribe(drift_check)
    _observe.subscribe(start_from_environment)
