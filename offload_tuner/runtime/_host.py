"""Who measured: a host fingerprint stored with every profile, and the check that a profile fits this host.

Stdlib only: the runtime checks the fingerprint when it loads a profile. Library versions (which need
``importlib.metadata``) are collected only when calibrating.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from typing import Any

from offload_tuner.runtime._profile import current_hostname

# The fields that must agree for thresholds to transfer. Library versions and the platform string are
# recorded for people, not compared: a numpy patch release does not move a pickling threshold.
IDENTITY_FIELDS = ("hostname", "cpu_model", "logical_cores", "python_implementation", "python_minor")

KEY_LIBRARIES = ("numpy", "scikit-learn", "offload-tuner")


def cpu_model() -> str:
    """The CPU model name, from /proc/cpuinfo on Linux, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def host_identity() -> dict[str, Any]:
    """The comparable part of the fingerprint; cheap enough to compute once per profile load."""
    return {
        "hostname": current_hostname(),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count() or 1,
        "python_implementation": platform.python_implementation(),
        "python_minor": f"{sys.version_info.major}.{sys.version_info.minor}",
    }


def host_fingerprint() -> dict[str, Any]:
    """The full fingerprint written into a profile: identity plus details for humans."""
    from importlib import metadata  # only when calibrating: costs a few ms

    libraries: dict[str, str | None] = {}
    for name in KEY_LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    return {
        **host_identity(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "libraries": libraries,
    }


def host_mismatches(recorded: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> list[str]:
    """Human-readable differences between a profile's host and this one (empty when they match)."""
    current = current if current is not None else host_identity()
    problems = []
    for field in IDENTITY_FIELDS:
        if recorded.get(field) != current.get(field):
            problems.append(f"{field}: profile has {recorded.get(field)!r}, this host {current.get(field)!r}")
    return problems
