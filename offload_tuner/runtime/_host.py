"""Who measured: a host fingerprint stored with every profile, and the check that a profile fits this host.

Why the hostname is recorded but not compared by default: a container or pod gets a new hostname on every
deploy, so a profile calibrated once and shipped in the image would be refused in every new container. What
makes thresholds transfer is the hardware and the interpreter: the CPU model, the cores this process may use
(:func:`_cores.usable_cores`: affinity and cgroup quota), the Python implementation and minor version.
``OFFLOAD_TUNER_HOST_CHECK`` chooses what is compared: ``hardware`` (default), ``strict`` (also the hostname)
or ``off`` (nothing; the profile is still validated).

Stdlib only: the runtime checks the fingerprint when it loads a profile. Library versions (which need
``importlib.metadata``) are collected only when calibrating.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from offload_tuner.runtime import _cores, _profile
from offload_tuner.runtime._profile import current_hostname
from offload_tuner.runtime._warn import warn_once

HOST_CHECK_VARIABLE = "OFFLOAD_TUNER_HOST_CHECK"
HOST_CHECK_MODES = ("hardware", "strict", "off")
"""The values ``OFFLOAD_TUNER_HOST_CHECK`` takes; the first is the default."""

HARDWARE_FIELDS = ("cpu_model", "usable_cores", "python_implementation", "python_minor")
"""What must agree for thresholds to transfer. Library versions and the platform string are recorded for people,
not compared: a numpy patch release does not move a pickling threshold."""
IDENTITY_FIELDS = ("hostname", *HARDWARE_FIELDS)
"""The recorded identity; ``strict`` compares all of it."""
COMPARED_FIELDS: Mapping[str, tuple[str, ...]] = {"hardware": HARDWARE_FIELDS, "strict": IDENTITY_FIELDS, "off": ()}

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
        "usable_cores": _cores.usable_cores(),
        "python_implementation": platform.python_implementation(),
        "python_minor": f"{sys.version_info.major}.{sys.version_info.minor}",
    }


def host_fingerprint() -> dict[str, Any]:
    """The full fingerprint written into a profile: identity plus details for humans (``logical_cores`` is every
    core the OS reports, quota or not: what older profiles compared)."""
    from importlib import metadata  # only when calibrating: costs a few ms

    libraries: dict[str, str | None] = {}
    for name in KEY_LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    return {
        **host_identity(),
        "logical_cores": os.cpu_count() or 1,  # for people; the check compares usable_cores
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "libraries": libraries,
    }


def host_check_mode(environ: Mapping[str, str] | None = None) -> str:
    """``OFFLOAD_TUNER_HOST_CHECK`` (case and spaces ignored; unset or empty: ``hardware``). An invalid value is
    reported once, naming the variable and the allowed values, and ``hardware`` is used."""
    raw = (os.environ if environ is None else environ).get(HOST_CHECK_VARIABLE, "")
    mode = raw.strip().lower() or HOST_CHECK_MODES[0]
    if mode in COMPARED_FIELDS:
        return mode
    warn_once(
        f"host-check:{raw}",
        f"offload-tuner: {HOST_CHECK_VARIABLE}={raw!r} is not one of {', '.join(HOST_CHECK_MODES)}; "
        f"using {HOST_CHECK_MODES[0]}",
    )
    return HOST_CHECK_MODES[0]


def host_mismatches(
    recorded: Mapping[str, Any], current: Mapping[str, Any] | None = None, mode: str | None = None
) -> list[str]:
    """Human-readable differences between a profile's host and this one in the fields ``mode`` compares
    (default: :func:`host_check_mode`); empty when they match."""
    fields = COMPARED_FIELDS[host_check_mode() if mode is None else mode]
    if not fields:
        return []
    current = current if current is not None else host_identity()
    problems = []
    for field in fields:
        value, note = _recorded(recorded, field)
        if value != current.get(field):
            problems.append(f"{field}: profile has {value!r}{note}, this host {current.get(field)!r}")
    return problems


def _recorded(recorded: Mapping[str, Any], field: str) -> tuple[Any, str]:
    """A recorded field and what to add about where it came from: a profile written before usable cores were
    recorded has only ``logical_cores`` (``os.cpu_count()``), compared in their place."""
    if field == "usable_cores" and field not in recorded and "logical_cores" in recorded:
        return recorded["logical_cores"], " (its logical_cores: it predates usable_cores)"
    return recorded.get(field), ""


def describe_mode(mode: str) -> str:
    """What the check in force compares, for messages: ``OFFLOAD_TUNER_HOST_CHECK=hardware: cpu_model, ...``."""
    compared = ", ".join(COMPARED_FIELDS[mode]) or "nothing"
    return f"{HOST_CHECK_VARIABLE}={mode} compares {compared}"


def configured_profile_path() -> Path:
    """Where the runtime reads its profile: ``$OFFLOAD_TUNER_PROFILE``, else the per-host default, else the newest
    profile beside it that this host's identity check accepts (a new container's hostname names no file)."""
    return _profile.configured_profile_path(fits=lambda host: not host_mismatches(host))
