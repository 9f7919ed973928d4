"""``offload-tuner check``: every reason a profile would not be used as calibrated, listed at once; and the
shared-memory segments that processes killed mid-call left behind, removed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from offload_tuner.calibration._targets import TargetError, import_kernel
from offload_tuner.runtime._backends import configured_processes
from offload_tuner.runtime._costmodel import CostModelError
from offload_tuner.runtime._host import describe_mode, host_check_mode, host_mismatches
from offload_tuner.runtime._policy import KernelCosts, TransportModel
from offload_tuner.runtime._profile import ProfileError, read_profile


def check_profile(path: Path) -> list[str]:
    """Problems found in the profile at ``path`` (empty when it would be used as calibrated)."""
    try:
        profile = read_profile(path)
    except ProfileError as exc:
        return [str(exc)]
    mode = host_check_mode()
    problems = [f"host differs: {m} ({describe_mode(mode)})" for m in host_mismatches(profile.host, mode=mode)]
    problems += _shape_problems(profile.executor)
    transport = profile.data.get("transport")
    if transport is not None:
        try:
            TransportModel.from_json(transport.get("model", {}) if isinstance(transport, dict) else {})
        except (ValueError, TypeError) as exc:
            problems.append(f"transport model: {exc}")
    for key, entry in profile.kernels.items():
        if entry.status != "ok":
            problems.append(f"kernel {key}: calibration {entry.status}: {entry.data.get('error', 'no detail')}")
        if "costs" in entry.data:
            try:
                KernelCosts.from_json(entry.data["costs"])
            except (CostModelError, ValueError, TypeError, KeyError) as exc:
                problems.append(f"kernel {key}: cost models unreadable: {exc}")
        interval = entry.data.get("interval")
        if entry.threshold is not None and isinstance(interval, list) and len(interval) == 2:
            lo, hi = interval
            if (isinstance(lo, int) and entry.threshold < lo) or (isinstance(hi, int) and entry.threshold > hi):
                problems.append(f"kernel {key}: threshold {entry.threshold} outside its interval {interval}")
        try:
            spec = import_kernel(key)
        except TargetError as exc:
            problems.append(f"kernel {key}: cannot check its code: {exc}")
            continue
        if entry.code_fingerprint is not None and entry.code_fingerprint != spec.code_fingerprint():
            problems.append(f"kernel {key}: code changed since calibration (recalibrate)")
    return problems


def _shape_problems(executor: Mapping[str, Any]) -> list[str]:
    """The service shape the profile was calibrated for, against the one this environment states."""
    recorded, here = executor.get("processes", 1), configured_processes()
    if recorded == here:
        return []
    return [
        f"shape differs: calibrated for {recorded} service process(es), this environment runs {here} "
        f"(OFFLOAD_TUNER_PROCESSES, else WEB_CONCURRENCY, else 1): `offload-tuner calibrate --processes {here}`"
    ]


def sweep_segments() -> str | None:
    """Remove the shared-memory segments (and owner locks) of processes that are gone, as the runtime does at a
    process's first call (:func:`offload_tuner.runtime._shm.sweep_orphans`): a line saying how many, or None."""
    from offload_tuner.runtime import _segments, _shm

    removed = _shm.sweep_orphans()
    if not removed:
        return None
    locks = sum(name.endswith(_segments.OWNER_SUFFIX) for name in removed)
    return (
        f"{_shm.settings.directory}: removed {len(removed) - locks} orphaned shared-memory segment(s) of processes "
        "that are gone" + (f" and {locks} owner lock file(s)" if locks else "")
    )
