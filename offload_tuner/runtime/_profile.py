"""Profiles: per-host calibration results as JSON data (never code), validated on the way in.

The runtime needs only ``schema``, ``host``, ``executor`` and each kernel's ``threshold``, ``status`` and
``code_fingerprint``; everything else (models, samples) is carried along for tools and notebooks.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offload_tuner.runtime._placement import ClusterCosts
from offload_tuner.runtime._policy import OBJECTIVES
from offload_tuner.runtime._registry import as_count
from offload_tuner.runtime._warn import warn_once

SCHEMA_VERSION = 3
"""2: thresholds are chosen by measurements under the reference load (each kernel's ``load`` section).
3: each kernel may carry a ``thread`` section (how much it holds the GIL, the thread lane's threshold) and the
profile a ``thread`` section (the thread pool's fixed cost). A schema 2 profile is read as a schema 3 one
without them: its kernels are never sent to threads."""
MIGRATED_SCHEMAS = (2,)
"""Older schemas read as the current one (their fields mean the same; what they lack is optional)."""
PROFILE_ENV = "OFFLOAD_TUNER_PROFILE"
# A profile for a few dozen kernels with raw samples is well under 1 MiB; refuse to parse absurd files.
MAX_PROFILE_BYTES = 32 * 1024 * 1024
# Sizes are element counts; anything beyond this is a corrupt value, not a real threshold.
MAX_THRESHOLD = 2**53
KERNEL_STATUSES = ("ok", "failed", "untrusted")


class ProfileError(ValueError):
    """A profile could not be used; the message names the file and the reason."""


@dataclass(frozen=True, slots=True)
class ThreadEntry:
    """What calibration measured of a kernel run in a thread (schema 3)."""

    gil_hold: float
    """Share of a busy event loop's pace lost while the kernel runs in a thread: near 0 for a kernel that releases
    the GIL (numpy, compression, hashing), near 1 for pure Python."""
    threshold: int | None
    """From this size up the kernel runs in the thread pool (None: never)."""


@dataclass(frozen=True, slots=True)
class GuardEntry:
    """The loop budget at every size (``guard``): from ``size`` up, inline calls are predicted to block the loop past
    the budget while offloading blocks it less, so they are offloaded whatever the threshold."""

    size: int
    extrapolated: bool
    """The size lies beyond the measured range: it rests on the fits' extrapolation."""

    def describe(self, top: float | None = None) -> str:
        """Why the guard offloads, for ``decide()``, ``show`` and ``explain``."""
        text = f"guard: inline from size {self.size} is predicted to block the loop past the budget"
        if self.extrapolated:
            beyond = f"the calibrated top {top:g}" if top is not None else "the calibrated range"
            text += f" (extrapolated beyond {beyond})"
        return text


@dataclass(frozen=True, slots=True)
class ExtrapolatedEntry:
    """Beyond the calibrated top, the model's best estimate (``extrapolated_offload``, :mod:`_extrapolate`): where
    the measured threshold offloads nothing past the top, from ``size`` up calls are offloaded, a stream of them
    predicted ``gain`` times faster shared with the pool than inline."""

    size: int
    gain: float

    def describe(self, top: float | None = None) -> str:
        """Why calls from ``size`` up are offloaded, for ``decide()``, ``show`` and ``explain``."""
        beyond = f"the calibrated top {top:g}" if top is not None else "the calibrated range"
        return (
            f"extrapolated: offloading from size {self.size}, beyond {beyond}, is predicted to pay (a stream of such "
            f"calls {self.gain:.2f}x as fast shared with the pool)"
        )


@dataclass(frozen=True, slots=True)
class KernelEntry:
    """The runtime-relevant part of one kernel's calibration."""

    key: str
    threshold: int | None
    status: str
    code_fingerprint: str | None
    data: Mapping[str, Any] = field(repr=False)
    thread: ThreadEntry | None = None
    guard: GuardEntry | None = None
    """None: no guard (the budget off, a kernel whose offloaded loop time grows faster, or an older profile)."""
    extrapolated: ExtrapolatedEntry | None = None
    """None: the threshold offloads from within the calibrated range, offloading is not predicted to pay past the
    top by the margin, or an older profile."""

    @property
    def calibrated_top(self) -> float | None:
        """The largest size the isolated measurement reached, where the profile records it."""
        return _range_top(self.data.get("calibrated_range"))

    @property
    def measured_top(self) -> float | None:
        """The largest size calibration measured at all (:func:`measured_top`)."""
        return measured_top(self.data)


def _range_top(measured: Any) -> float | None:
    top = measured[1] if isinstance(measured, (list, tuple)) and len(measured) == 2 else None
    return float(top) if isinstance(top, (int, float)) and not isinstance(top, bool) else None


def measured_top(entry: Mapping[str, Any]) -> float | None:
    """The largest size calibration measured the kernel at: the isolated ladder's top, or the mix's under load
    where the mix reaches further (a ladder cut short). Past it the model alone speaks; below it a measured
    threshold decides, so the extrapolated offload size starts above it."""
    tops = [t for t in (_range_top(entry.get("calibrated_range")), _range_top(entry.get("workload_range"))) if t]
    return max(tops) if tops else None


@dataclass(frozen=True, slots=True)
class Profile:
    source: str
    schema: int
    host: Mapping[str, Any]
    executor: Mapping[str, Any]
    kernels: Mapping[str, KernelEntry]
    data: Mapping[str, Any] = field(repr=False)
    cluster: ClusterCosts | None = None
    """A Dask cluster calibration measured (``calibrate --dask``): optional, so it needs no schema change."""

    @property
    def executor_kind(self) -> str | None:
        kind = self.executor.get("kind")
        return kind if isinstance(kind, str) else None


def current_hostname() -> str:
    """The host name without importing socket (a few ms) where ``os.uname`` exists."""
    if hasattr(os, "uname"):
        return os.uname().nodename or "localhost"
    import socket

    return socket.gethostname() or "localhost"


def default_profile_path(hostname: str | None = None) -> Path:
    """Where ``offload-tuner calibrate`` writes and the runtime looks when nothing else is named.

    ``$XDG_DATA_HOME/offload-tuner/profiles/<hostname>.json`` (``~/.local/share`` by default; the
    platform's local app-data folder on Windows and macOS). One file per host, so a shared home
    directory keeps each machine's own thresholds; where this host has none, :func:`configured_profile_path`
    falls back to the newest profile beside it that the host identity check accepts.
    """
    hostname = hostname or current_hostname()
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in hostname)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "offload-tuner" / "profiles" / f"{safe}.json"


def configured_profile_path(fits: Callable[[Mapping[str, Any]], bool] | None = None) -> Path:
    """``$OFFLOAD_TUNER_PROFILE`` if set, else the per-host default location; where no profile is named after this
    host, the newest profile beside it whose recorded host ``fits`` (see ``_host.configured_profile_path``, which
    passes the identity check in force).

    A container gets a new hostname on every deploy, so a profile calibrated once and shipped in the image under the
    calibrating host's name would never be found by name. Where none fits, the default path is returned, so the
    message stays "no such file: run calibrate" rather than naming another machine's profile.
    """
    env = os.environ.get(PROFILE_ENV)
    if env:
        return Path(env)
    default = default_profile_path()
    if default.is_file():
        return default
    return _newest_fitting(default.parent, fits or (lambda host: True)) or default


def _newest_fitting(directory: Path, fits: Callable[[Mapping[str, Any]], bool]) -> Path | None:
    """The most recently written ``*.json`` in ``directory`` whose ``host`` object ``fits``, or None (a missing or
    unreadable folder, an unreadable or non-profile file: passed over; read as JSON data only)."""
    try:
        candidates = sorted(((p.stat().st_mtime, p) for p in directory.glob("*.json") if p.is_file()), reverse=True)
    except OSError:
        return None
    for _, path in candidates:
        try:
            host = json.loads(path.read_text(encoding="utf-8")).get("host")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(host, dict) and fits(host):
            return path
    return None


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not allowed")


def read_profile(path: str | os.PathLike[str]) -> Profile:
    """Read and validate a profile file; raise :class:`ProfileError` naming the file and the reason."""
    source = os.fspath(path)
    return parse_profile(read_capped(source, MAX_PROFILE_BYTES, ProfileError), source)


def parse_profile(raw: bytes | str, source: str = "<profile>") -> Profile:
    """Parse JSON text into a validated :class:`Profile`. Only ``json`` ever touches the bytes."""
    return validate_profile(parse_json(raw, source, ProfileError), source)


def read_capped(source: str, limit: int, error: type[ValueError]) -> bytes:
    """A data file's bytes, or ``error`` naming the file: missing, unreadable, or over ``limit`` bytes (refused
    before it is read whole). Shared by profiles and stats files."""
    try:
        size = os.stat(source).st_size
        if size > limit:
            raise error(f"{source}: file is {size} bytes, over the {limit}-byte limit")
        with open(source, "rb") as fh:
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{source}: no such file") from None
    except OSError as exc:
        raise error(f"{source}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise error(f"{source}: file is over the {limit}-byte limit")
    return raw


def parse_json(raw: bytes | str, source: str, error: type[ValueError]) -> Any:
    """JSON data (NaN and Infinity refused), or ``error`` naming the file and what is wrong with the text."""
    if not raw or not raw.strip():
        raise error(f"{source}: file is empty")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise error(f"{source}: not UTF-8 text ({exc.reason})") from None
    except RecursionError:
        raise error(f"{source}: JSON nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError, as is a rejected NaN
        raise error(f"{source}: invalid JSON ({exc})") from None


def validate_profile(data: Any, source: str = "<profile>") -> Profile:
    """Check the structure the runtime relies on; the message says which field is wrong."""

    def fail(reason: str) -> ProfileError:
        return ProfileError(f"{source}: {reason}")

    if not isinstance(data, dict):
        raise fail(f"top level must be a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise fail('missing or non-integer "schema"')
    if schema != SCHEMA_VERSION and schema not in MIGRATED_SCHEMAS:
        if 0 < schema < SCHEMA_VERSION:
            raise fail(
                f"schema version {schema} was written by an older offload-tuner whose thresholds were never "
                f"checked under load; run `offload-tuner calibrate` again (this version reads {SCHEMA_VERSION})"
            )
        raise fail(f"schema version {schema} is not supported (this offload-tuner reads {SCHEMA_VERSION})")
    host = data.get("host", {})
    if not isinstance(host, dict):
        raise fail('"host" must be an object')
    executor = data.get("executor", {})
    if not isinstance(executor, dict):
        raise fail('"executor" must be an object')
    processes = executor.get("processes", 1)
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise fail(f'"executor": processes must be an integer >= 1 (service processes), got {processes!r}')
    _validate_policy(data.get("policy"), fail)
    kernels_in = data.get("kernels")
    if not isinstance(kernels_in, dict):
        raise fail('missing "kernels" object')
    kernels: dict[str, KernelEntry] = {}
    for key, entry in kernels_in.items():
        kernels[key] = _validate_kernel(key, entry, schema, fail)
    thread = data.get("thread")
    thread = {} if thread is None else thread
    if not isinstance(thread, dict):
        raise fail('"thread" must be an object')
    fixed = thread.get("fixed_s")
    if fixed is not None and (isinstance(fixed, bool) or not isinstance(fixed, (int, float)) or not 0 <= fixed < 1.0):
        raise fail(f'"thread": fixed_s must be a number of seconds in [0, 1), got {fixed!r}')
    _validate_shared_memory(data.get("transport"), fail)
    cluster = None
    if data.get("cluster") is not None:
        try:
            cluster = ClusterCosts.from_json(data["cluster"])
        except ValueError as exc:
            raise fail(f'"cluster": {exc}') from None
    return Profile(source, schema, host, executor, kernels, data, cluster)


def _validate_policy(policy: Any, fail: Any) -> None:
    """``policy``: the knobs calibration used (optional); its ``objective``, what the measurement under load decided
    by, one of ``OBJECTIVES`` (missing: ``throughput``, what profiles before the latency objective used)."""
    if policy is None:
        return
    if not isinstance(policy, dict):
        raise fail('"policy" must be an object')
    objective = policy.get("objective", "throughput")
    if objective not in OBJECTIVES:
        raise fail(f'"policy": objective must be one of {", ".join(OBJECTIVES)}, got {objective!r}')


def _validate_shared_memory(transport: Any, fail: Any) -> None:
    """``transport.shared_memory.min_bytes``: the buffer size from which calls use shared memory (null: never)."""
    section = transport.get("shared_memory") if isinstance(transport, dict) else None
    if section is None:
        return
    if not isinstance(section, dict):
        raise fail('"transport": shared_memory must be an object')
    size = section.get("min_bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise fail(f'"transport": shared_memory.min_bytes must be a byte count >= 1 or null, got {size!r}')


def _validate_kernel(key: str, entry: Any, schema: int, fail: Any) -> KernelEntry:
    """One kernel's entry: what the runtime reads of it, checked."""
    if not isinstance(entry, dict):
        raise fail(f"kernel {key!r}: entry must be an object")
    if "threshold" not in entry:
        raise fail(f'kernel {key!r}: missing "threshold"')
    threshold = _validate_threshold(entry["threshold"], key, fail)
    status = entry.get("status", "ok")
    if status not in KERNEL_STATUSES:
        raise fail(f"kernel {key!r}: status {status!r} is not one of {', '.join(KERNEL_STATUSES)}")
    fingerprint = entry.get("code_fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise fail(f'kernel {key!r}: "code_fingerprint" must be a string')
    # A schema 2 profile predates the thread lane: whatever it holds under "thread" is not ours to trust.
    thread_entry = _validate_thread(entry, key, fail) if schema >= 3 else None
    guard = _validate_guard(entry, key, fail)
    extrapolated = _validate_extrapolated(entry, key, fail)
    return KernelEntry(key, threshold, status, fingerprint, entry, thread_entry, guard, extrapolated)


def _validate_thread(entry: Mapping[str, Any], key: str, fail: Any) -> ThreadEntry | None:
    section = entry.get("thread")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise fail(f'kernel {key!r}: "thread" must be an object')
    hold = section.get("gil_hold")
    if isinstance(hold, bool) or not isinstance(hold, (int, float)) or not 0 <= hold <= 1:
        raise fail(f"kernel {key!r}: thread gil_hold must be a share in [0, 1], got {hold!r}")
    if "threshold" not in section:
        raise fail(f'kernel {key!r}: thread section missing "threshold"')
    return ThreadEntry(float(hold), _validate_threshold(section["threshold"], f"{key} (thread lane)", fail))


def _validate_guard(entry: Mapping[str, Any], key: str, fail: Any) -> GuardEntry | None:
    """A kernel's ``guard``: missing or null (no guard, or a profile written before guards), else a size >= 1 and
    whether it was extrapolated."""
    section = entry.get("guard")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise fail(f'kernel {key!r}: "guard" must be an object or null, got {type(section).__name__}')
    size = section.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_THRESHOLD:
        raise fail(f"kernel {key!r}: guard size must be an integer in [1, 2**53], got {size!r}")
    extrapolated = section.get("extrapolated")
    if not isinstance(extrapolated, bool):
        raise fail(f"kernel {key!r}: guard extrapolated must be true or false, got {extrapolated!r}")
    return GuardEntry(size, extrapolated)


def _validate_extrapolated(entry: Mapping[str, Any], key: str, fail: Any) -> ExtrapolatedEntry | None:
    """A kernel's ``extrapolated_offload``: missing or null (none, or a profile written before it), else a size >= 1
    and the predicted gain there (a finite number >= 1)."""
    section = entry.get("extrapolated_offload")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise fail(f'kernel {key!r}: "extrapolated_offload" must be an object or null, got {type(section).__name__}')
    size, gain = section.get("size"), section.get("gain")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_THRESHOLD:
        raise fail(f"kernel {key!r}: extrapolated_offload size must be an integer in [1, 2**53], got {size!r}")
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 1 <= gain < float("inf"):
        raise fail(f"kernel {key!r}: extrapolated_offload gain must be a finite number >= 1, got {gain!r}")
    ladder = _range_top(entry.get("calibrated_range"))
    if ladder is not None and size <= ladder:
        # within the measured sizes the measured threshold decides; an extrapolation there would override it
        raise fail(f"kernel {key!r}: extrapolated_offload size {size} must lie beyond the calibrated top {ladder:g}")
    top = measured_top(entry)
    if top is not None and size <= top:  # written before the mix's top counted as measured: ignored, not refused
        warn_once(
            f"extrapolated-within-mix:{key}",
            f"offload-tuner: kernel {key!r}: its extrapolated offload size {size} lies within the mix measured under "
            f"load (up to {top:g}), where the measured threshold decides; it is ignored (calibrate again to drop it)",
        )
        return None
    return ExtrapolatedEntry(size, float(gain))


def _validate_threshold(value: Any, key: str, fail: Any) -> int | None:
    if value is None:
        return None
    try:
        count = as_count(value)
    except ValueError as exc:
        raise fail(f"kernel {key!r}: threshold {exc} (expected an integer >= 0 or null)") from None
    if count > MAX_THRESHOLD:
        raise fail(f"kernel {key!r}: threshold {count} is absurdly large (> 2**53)")
    return count


def write_profile(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Validate, then write atomically: a temp file in the same folder, fsync, rename over the old one.

    A crash or a full disk leaves the previous profile intact and no partial file behind.
    """
    target = Path(path)
    validate_profile(data, os.fspath(target))
    atomic_write_text(target, json.dumps(data, indent=1, sort_keys=False, allow_nan=False) + "\n")
    return target


def atomic_write_text(target: Path, text: str) -> None:
    """A temp file in the same folder, fsync, rename over the old one: readers see the old file or the new one,
    never half of one, and a crash or a full disk leaves no partial file behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are readable data like any config file
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
