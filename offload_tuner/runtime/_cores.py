"""Usable cores and the number of service processes: what a pool may size itself to on this host.

Why: ``os.cpu_count()`` and the affinity mask see every core of the node. A container limited by a CFS quota
to 2 CPUs on a 64-core node would start 64 workers (and calibrate, and record, 64 cores), so every worker gets a
sliver of CPU time and the cost models are wrong. The quota also may be set on any ancestor of this process's
cgroup, not only the one it sits in (a pod's limit on the pod slice, the container's own cgroup unlimited): the
tightest quota on the path from this process's cgroup up to the root counts. loky's ``cpu_count()`` reads only the
root (loky#634) and once crashed on an empty ``cpu.max`` (loky#478); here every unreadable, missing, empty or
malformed file means "no limit from that file", and nothing raises.

Both cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) are read, hybrid hosts
included; mount points come from ``/proc/self/mountinfo``, else the usual places under ``/sys/fs/cgroup``.

A leaf module: stdlib only, imports nothing from offload_tuner, caches nothing (quotas and affinity can change
while a service runs; reading a handful of small files once per pool build is cheap).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

PROCESSES_VARIABLE = "OFFLOAD_TUNER_PROCESSES"
FALLBACK_PROCESSES_VARIABLE = "WEB_CONCURRENCY"

PROC_ROOT = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Where distributions mount the v1 cpu controller when /proc/self/mountinfo does not say.
V1_DEFAULT_MOUNTS = ("cpu,cpuacct", "cpu")

ReadFile = Callable[[Path], str]
# A mount: (mount point, the cgroup path that mount point shows, from mountinfo's "root" field).
Mount = tuple[Path, str]


def _read_text(path: Path) -> str:
    with open(path, encoding="ascii", errors="replace") as fh:
        return fh.read(4096)


def affinity_cores() -> int:
    """The CPUs this process may be scheduled on: the affinity mask where the OS has one, else all of them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity off Linux
        return max(1, os.cpu_count() or 1)


def usable_cores(*, proc_root: Path = PROC_ROOT, cgroup_root: Path = CGROUP_ROOT, affinity: int | None = None) -> int:
    """The cores this process can really use: min(affinity mask, cgroup CPU quota rounded up), at least 1.

    ``proc_root``/``cgroup_root`` and ``affinity`` (a CPU count standing in for the affinity mask) exist for
    tests; production calls take the defaults. Never raises: an unreadable source counts as unlimited.
    """
    cores = affinity_cores() if affinity is None else max(1, affinity)
    read_file: ReadFile = _read_text
    try:
        cgroup_text = read_file(proc_root / "self" / "cgroup")
    except (OSError, ValueError):
        return cores
    try:
        mountinfo_text = read_file(proc_root / "self" / "mountinfo")
    except (OSError, ValueError):
        mountinfo_text = ""
    limit = cgroup_cpu_limit(cgroup_text, mountinfo_text, read_file, cgroup_root=cgroup_root)
    if limit is None:
        return cores
    return max(1, min(cores, math.ceil(limit)))


def cgroup_cpu_limit(
    cgroup_text: str, mountinfo_text: str, read_file: ReadFile = _read_text, *, cgroup_root: Path = CGROUP_ROOT
) -> float | None:
    """The tightest CPU quota, in CPUs (``1.5`` for 150000/100000), on this process's cgroup path, or None.

    ``cgroup_text`` is the content of ``/proc/self/cgroup``, ``mountinfo_text`` that of ``/proc/self/mountinfo``
    (may be empty: then the default mount points under ``cgroup_root`` are used), ``read_file`` reads one cgroup
    file. Every cgroup directory from this process's own up to the mount root is read, for v2 and v1 alike.
    """
    v2_mounts, v1_mounts = _cgroup_mounts(mountinfo_text)
    if not v2_mounts:
        v2_mounts = [(cgroup_root, "/")]
    if not v1_mounts:
        v1_mounts = [(cgroup_root / name, "/") for name in V1_DEFAULT_MOUNTS]
    limits: list[float] = []
    for hierarchy, controllers, path in _cgroup_lines(cgroup_text):
        if hierarchy == "0" and not controllers:
            limits += _limits(v2_mounts, path, lambda d: _v2_limit(d, read_file))
        elif "cpu" in controllers:
            limits += _limits(v1_mounts, path, lambda d: _v1_limit(d, read_file))
    return min(limits, default=None)


def _cgroup_lines(text: str) -> Iterator[tuple[str, list[str], str]]:
    """(hierarchy id, controllers, path) for each well-formed line of /proc/self/cgroup."""
    for line in text.splitlines():
        fields = line.strip().split(":", 2)
        if len(fields) == 3 and fields[2].startswith("/"):
            hierarchy, controllers, path = fields
            yield hierarchy, [c for c in controllers.split(",") if c], path


def _cgroup_mounts(mountinfo_text: str) -> tuple[list[Mount], list[Mount]]:
    """The cgroup v2 mounts and the cgroup v1 mounts carrying the ``cpu`` controller, from mountinfo."""
    v2: list[Mount] = []
    v1: list[Mount] = []
    for line in mountinfo_text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        mount: Mount = (Path(_unescape(fields[4])), _unescape(fields[3]))
        if tail[0] == "cgroup2":
            v2.append(mount)
        elif tail[0] == "cgroup" and "cpu" in tail[2].split(","):
            v1.append(mount)
    return v2, v1


def _unescape(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash as octal escapes (``\040``)."""
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def _limits(mounts: Iterable[Mount], cgroup_path: str, limit_of: Callable[[Path], float | None]) -> list[float]:
    """The quotas set in every directory from ``cgroup_path`` up to each mount's root."""
    found: list[float] = []
    for mount_point, mount_root in mounts:
        for directory in _ancestors(mount_point, _relative_to_mount(cgroup_path, mount_root)):
            limit = limit_of(directory)
            if limit is not None:
                found.append(limit)
    return found


def _relative_to_mount(cgroup_path: str, mount_root: str) -> list[str]:
    """The path components of ``cgroup_path`` below the mount's root.

    A container's cgroup mount often shows only its own subtree (mount root ``/docker/abc``) while
    /proc/self/cgroup names the full path: strip the shared prefix. Where the two do not line up (cgroup
    namespaces, ``/..`` roots), the path is taken as is; its directories that do not exist read as unlimited
    and the walk ends at the mount point itself, which is then the container's own cgroup.
    """
    path = [p for p in cgroup_path.split("/") if p not in ("", ".", "..")]
    root = [p for p in mount_root.split("/") if p not in ("", ".", "..")]
    if path[: len(root)] == root:
        return path[len(root) :]
    return path


def _ancestors(mount_point: Path, parts: list[str]) -> Iterator[Path]:
    """The cgroup directory for ``parts`` under ``mount_point``, then each parent up to the mount point."""
    for depth in range(len(parts), -1, -1):
        yield mount_point.joinpath(*parts[:depth])


def _v2_limit(directory: Path, read_file: ReadFile) -> float | None:
    """``cpu.max`` as CPUs: ``"150000 100000"`` -> 1.5; ``max``, empty, missing or garbage -> None."""
    try:
        fields = read_file(directory / "cpu.max").split()
        if not fields or fields[0] == "max":
            return None
        return _quota(int(fields[0]), int(fields[1]) if len(fields) > 1 else 100_000)
    except (OSError, ValueError):
        return None


def _v1_limit(directory: Path, read_file: ReadFile) -> float | None:
    """``cpu.cfs_quota_us / cpu.cfs_period_us`` as CPUs; a quota of -1, missing or garbage files -> None."""
    try:
        quota = int(read_file(directory / "cpu.cfs_quota_us").strip())
        if quota < 0:
            return None
        return _quota(quota, int(read_file(directory / "cpu.cfs_period_us").strip()))
    except (OSError, ValueError):
        return None


def _quota(quota: int, period: int) -> float | None:
    """A quota in CPUs; a zero or negative quota or period is no quota the kernel would accept: None."""
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def service_processes(environ: Mapping[str, str] | None = None) -> int:
    """How many service processes share this host's cores: a stated input, not something we can observe.

    ``OFFLOAD_TUNER_PROCESSES`` when set, else ``WEB_CONCURRENCY`` (what gunicorn and uvicorn read for their
    worker count) when set, else 1. An empty value counts as unset. An invalid value (not an integer, or below 1)
    in the variable that applies raises ``ValueError`` naming the variable and the value, rather than returning a
    silent default: the runtime catches it, turns its message into one warning and falls back to 1, while the
    CLI can let it stop the command. ``environ`` defaults to ``os.environ`` (a mapping for tests).
    """
    env = os.environ if environ is None else environ
    for name in (PROCESSES_VARIABLE, FALLBACK_PROCESSES_VARIABLE):
        raw = env.get(name, "")
        if raw.strip():
            return _positive_int(name, raw)
    return 1


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(
            f"{name}={raw!r} is not a whole number of service processes (expected an integer >= 1)"
        ) from None
    if value < 1:
        raise ValueError(f"{name}={raw!r}: the number of service processes must be at least 1")
    return value


def cores_per_process(cores: int, processes: int) -> int:
    """Each service process's share of the usable cores, for sizing its pool: ``max(1, cores // processes)``."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    return max(1, cores // processes)
