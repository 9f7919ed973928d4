"""The stats file: what the processes of a service on one host observed, shared safely, read defensively.

Format (JSON, never code)::

    {"schema": "offload-tuner-stats/1", "host": "web-3",
     "processes": {"<pid>@<start>": {"pid": 4211, "started": ..., "updated": ..., "sample_every": 64,
                   "kernels": {"pkg.mod:fn": {"calls": {"inline": {"256": 812}, "offload": {"1024": 40}},
                                              "samples": {"inline": [[time, size, seconds], ...],
                                                          "loop": [...], "latency": [...]},
                                              "guarded": {"guard": 900, "threshold": null,
                                                          "calls": 40, "exact": true}}}}}}

``guarded`` (optional, where the profile's loop-budget guard decides some of the kernel's calls): how many of the
offloaded calls it decided, against the threshold in force when the section was written (``_stats.guard_decided``).
``extrapolated`` (optional, the same with ``size`` for ``guard``): those the profile's extrapolated offload size
decided (past the calibrated top, where the measured threshold would run them inline).

Each process owns its section and rewrites only that one, so several processes of a service can share a
file: a writer takes an exclusive ``flock`` on ``<file>.lock``, reads what the others wrote, replaces its
own section, and renames a fully written temp file over the old one (readers never see half a file). The
``MAX_PROCESSES`` most recently updated sections are kept, so the file stays bounded over restarts.

Reading is for tools (``retune``, ``drift``) and the runtime's own merge: every field is checked, sizes and
counts must be integers, timings finite, lists bounded; anything else is refused with :class:`StatsError`
naming the file and the field.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from offload_tuner.runtime._profile import atomic_write_text, parse_json, read_capped
from offload_tuner.runtime._stats import SAMPLE_CAP, SAMPLE_KINDS, STATS_SCHEMA, process_id
from offload_tuner.runtime._stats_document import stats_document
from offload_tuner.runtime._warn import warn_once

STATS_ENV = "OFFLOAD_TUNER_STATS"
STATS_EVERY_ENV = "OFFLOAD_TUNER_STATS_EVERY_S"
DEFAULT_EVERY_S = 60.0
MAX_STATS_BYTES = 16 * 1024 * 1024
MAX_PROCESSES = 64
MAX_KERNELS = 4096
MAX_SIZE = 2**63
"""Sizes are element counts: beyond this a value is corrupt, not a size."""


class StatsError(ValueError):
    """A stats file could not be used; the message names the file and what is wrong."""


# ------------------------------------------------------------------------------------------- reading


def read_stats(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a stats file (see the module docstring for the format)."""
    source = os.fspath(path)
    return parse_stats(read_capped(source, MAX_STATS_BYTES, StatsError), source)


def parse_stats(raw: bytes | str, source: str = "<stats>") -> dict[str, Any]:
    return validate_stats(parse_json(raw, source, StatsError), source)


def validate_stats(data: Any, source: str = "<stats>") -> dict[str, Any]:
    """The document, checked field by field; a :class:`StatsError` says which field is wrong."""

    def fail(where: str, what: str) -> StatsError:
        return StatsError(f"{source}: {where}: {what}")

    if not isinstance(data, dict):
        raise fail("top level", f"expected an object, got {type(data).__name__}")
    if data.get("schema") != STATS_SCHEMA:
        raise fail(
            "schema",
            f"expected {STATS_SCHEMA!r}, got {data.get('schema')!r} (not an offload-tuner stats file, "
            "or one from another version)",
        )
    if not isinstance(data.get("host"), str):
        raise fail("host", "expected the host name as a string")
    processes = data.get("processes")
    if not isinstance(processes, dict):
        raise fail("processes", "expected an object")
    if len(processes) > MAX_PROCESSES:
        raise fail("processes", f"{len(processes)} sections, over the limit of {MAX_PROCESSES}")
    for pid, section in processes.items():
        where = f"processes[{pid!r}]"
        if not isinstance(section, dict):
            raise fail(where, "expected an object")
        for field in ("started", "updated"):
            _number(section.get(field), f"{where}.{field}", fail)
        every = section.get("sample_every")
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise fail(f"{where}.sample_every", f"expected an int >= 0, got {every!r}")
        kernels = section.get("kernels")
        if not isinstance(kernels, dict):
            raise fail(f"{where}.kernels", "expected an object")
        if len(kernels) > MAX_KERNELS:
            raise fail(f"{where}.kernels", f"{len(kernels)} kernels, over the limit of {MAX_KERNELS}")
        for key, kernel in kernels.items():
            _validate_kernel(kernel, f"{where}.kernels[{key!r}]", fail)
    return data


def _validate_kernel(kernel: Any, where: str, fail: Any) -> None:
    if not isinstance(kernel, dict):
        raise fail(where, "expected an object")
    calls = kernel.get("calls")
    if not isinstance(calls, dict) or set(calls) - {"inline", "offload"}:
        raise fail(f"{where}.calls", "expected an object with 'inline' and 'offload' counts")
    for decision, buckets in calls.items():
        if not isinstance(buckets, dict):
            raise fail(f"{where}.calls.{decision}", "expected an object of size bucket -> count")
        for floor, n in buckets.items():
            if not (floor == "0" or (floor.isdigit() and _is_power_of_two(int(floor)) and int(floor) <= MAX_SIZE)):
                raise fail(f"{where}.calls.{decision}", f"bucket {floor!r} is not 0 or a power of two")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise fail(f"{where}.calls.{decision}[{floor}]", f"expected a count >= 0, got {n!r}")
    explored = kernel.get("explored", 0)
    if type(explored) is not int or explored < 0:
        raise fail(f"{where}.explored", f"expected a count >= 0, got {explored!r}")
    for field, size_key in (("guarded", "guard"), ("extrapolated", "size")):
        if kernel.get(field) is not None:
            _validate_guarded(kernel[field], f"{where}.{field}", fail, size_key)
    samples = kernel.get("samples")
    if not isinstance(samples, dict) or set(samples) - set(SAMPLE_KINDS):
        raise fail(f"{where}.samples", f"expected an object with kinds {', '.join(SAMPLE_KINDS)}")
    for kind, rows in samples.items():
        if not isinstance(rows, list) or len(rows) > SAMPLE_CAP:
            raise fail(f"{where}.samples.{kind}", f"expected a list of at most {SAMPLE_CAP} samples")
        for row in rows:
            if not isinstance(row, list) or len(row) != 3:
                raise fail(f"{where}.samples.{kind}", f"expected [time, size, seconds], got {row!r}")
            stamp, size, seconds = row
            _number(stamp, f"{where}.samples.{kind} time", fail)
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
                raise fail(f"{where}.samples.{kind}", f"size {size!r} is not an integer in [0, 2**63]")
            _number(seconds, f"{where}.samples.{kind} seconds", fail)


def _validate_guarded(guarded: Any, where: str, fail: Any, size_key: str = "guard") -> None:
    """The offloaded calls the loop budget's guard (or the extrapolated offload size, its size under ``size_key``)
    decided (``_stats.guard_decided``), where one did."""
    if not isinstance(guarded, dict):
        raise fail(where, "expected an object")
    guard, threshold, calls = guarded.get(size_key), guarded.get("threshold"), guarded.get("calls")
    if type(guard) is not int or not 1 <= guard <= MAX_SIZE:
        raise fail(f"{where}.{size_key}", f"expected a size >= 1, got {guard!r}")
    if threshold is not None and (type(threshold) is not int or not 0 <= threshold <= MAX_SIZE):
        raise fail(f"{where}.threshold", f"expected a size >= 0 or null (never), got {threshold!r}")
    if type(calls) is not int or calls < 0:
        raise fail(f"{where}.calls", f"expected a count >= 0, got {calls!r}")
    if not isinstance(guarded.get("exact"), bool):
        raise fail(f"{where}.exact", f"expected true or false, got {guarded.get('exact')!r}")


def _number(value: Any, where: str, fail: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise fail(where, f"expected a finite number >= 0, got {value!r}")


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# ------------------------------------------------------------------------------------------- merging


def merge(existing: Mapping[str, Any] | None, mine: Mapping[str, Any]) -> dict[str, Any]:
    """``existing`` with ``mine``'s process sections replacing theirs; the most recent ``MAX_PROCESSES`` kept."""
    processes = dict(existing["processes"]) if existing else {}
    processes.update(mine["processes"])
    recent = sorted(processes.items(), key=lambda item: item[1]["updated"], reverse=True)[:MAX_PROCESSES]
    return {"schema": STATS_SCHEMA, "host": mine["host"], "processes": dict(recent)}


# ------------------------------------------------------------------------------------------- writing


def write_stats(path: str | os.PathLike[str], document: Mapping[str, Any] | None = None) -> Path:
    """Merge this process's statistics (or ``document``) into ``path``, atomically and under a file lock.

    An unreadable existing file is moved aside to ``<file>.corrupt`` (what it held cannot be merged, and a
    service must not stop recording because of it); the caller is told through the returned path only.
    """
    target = Path(path)
    mine = document if document is not None else stats_document()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        try:
            existing: dict[str, Any] | None = read_stats(target)
        except StatsError as exc:
            existing = None
            if target.exists():
                os.replace(target, target.with_name(target.name + ".corrupt"))
                warn_once(
                    f"corrupt:{target}",
                    f"offload-tuner: stats file {exc}; moved it aside to {target.name}.corrupt and started a new one",
                )
        merged = merge(existing, mine)
        atomic_write_text(target, json.dumps(merged, separators=(",", ":"), allow_nan=False) + "\n")
    return target


class _locked:
    """An exclusive ``flock`` on ``<file>.lock`` (no locking where ``fcntl`` does not exist)."""

    def __init__(self, target: Path) -> None:
        self.path = target.with_name(target.name + ".lock")

    def __enter__(self) -> None:
        self.fh = open(self.path, "a+b")
        try:
            import fcntl

            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # not POSIX: a lost update is the worst case, never a torn file
            pass

    def __exit__(self, *exc: object) -> None:
        self.fh.close()  # closing releases the lock


# ------------------------------------------------------------------------------------------ recording


class StatsRecorder:
    """Writes this process's statistics to a file every ``every_s`` seconds and at exit (a daemon thread)."""

    def __init__(self, path: str | os.PathLike[str], every_s: float) -> None:
        if (
            not isinstance(every_s, (int, float))
            or isinstance(every_s, bool)
            or not math.isfinite(every_s)
            or every_s <= 0
        ):
            raise ValueError(f"record_stats(every_s=...) needs a positive number of seconds, got {every_s!r}")
        self.path = Path(path)
        self.every_s = float(every_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="offload-tuner-stats", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.flush()

    def flush(self) -> None:
        """Write now. Never raises: a full disk or a read-only folder must not break the service."""
        try:
            write_stats(self.path)
        except Exception as exc:
            warn_once(
                f"write:{self.path}:{type(exc).__name__}",
                f"offload-tuner: cannot write stats to {self.path} ({type(exc).__name__}: {exc}); will retry",
            )

    def stop(self, flush: bool = True) -> None:
        """Stop the thread (and write a last time)."""
        self._stop.set()
        self._thread.join()
        atexit.unregister(self.flush)
        if flush:
            self.flush()


_recorder: StatsRecorder | None = None
_recorder_lock = threading.Lock()


def record_stats(path: str | os.PathLike[str] | None, every_s: float = DEFAULT_EVERY_S) -> StatsRecorder | None:
    """Write this process's statistics to ``path`` every ``every_s`` seconds and at exit, merged with what
    the service's other processes on this host write there. ``None`` stops recording. Returns the recorder."""
    global _recorder
    with _recorder_lock:
        if _recorder is not None:
            _recorder.stop(flush=True)
            _recorder = None
        if path is not None:
            _recorder = StatsRecorder(path, every_s)
        return _recorder


def start_from_environment() -> None:
    """``OFFLOAD_TUNER_STATS=path`` (and ``OFFLOAD_TUNER_STATS_EVERY_S``): start recording, once, on the first
    call of a registered kernel. A bad interval is reported once and the default used."""
    path = os.environ.get(STATS_ENV)
    if not path or _recorder is not None:
        return
    every = DEFAULT_EVERY_S
    raw = os.environ.get(STATS_EVERY_ENV)
    if raw:
        try:
            every = float(raw)
            if not math.isfinite(every) or every <= 0:
                raise ValueError
        except ValueError:
            every = DEFAULT_EVERY_S
            warn_once(
                f"every:{raw}",
                f"offload-tuner: {STATS_EVERY_ENV}={raw!r} is not a positive number of "
                f"seconds; writing stats every {DEFAULT_EVERY_S:g} s",
            )
    record_stats(path, every)


def own_section(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """This process's section of a stats document, if it has one."""
    section: Mapping[str, Any] | None = document.get("processes", {}).get(process_id())
    return section
