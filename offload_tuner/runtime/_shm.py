"""Large buffers through shared memory: pickle protocol 5 out of band, one segment per call and direction.

Why: in-band, a large array is copied by ``pickle.dumps`` on the caller, pickled again by the pool's feeder thread
(both with the GIL held, so the event loop stalls), pushed through a pipe, and the result comes back the same way.
Out of band (PEP 574), the pickle stream keeps only the small parts and each buffer at or above
:data:`settings.min_bytes <Settings>` is written once into a segment under ``/dev/shm`` with ``os.write``, which
releases the GIL; the reader maps the segment copy-on-write and hands the unpickler views of it, so a kernel's
array arguments and the caller's array results are never copied again, and a kernel never sees memory another
call can change (private mapping, one segment per call).

No leaks: segments are named ``offload-tuner-<pid>-<start>-<seq><a|r>`` after the *calling* process (its pid and
start time), so every party can find them. The caller unlinks its argument segment once the call's future
completes, whatever the outcome; a result segment is unlinked by the caller as soon as it is mapped, or, when the
caller stopped waiting (timeout, cancellation, a worker killed), once the future completes; what a killed service
process left behind is removed by the next start (:func:`sweep_orphans`, also run by ``offload-tuner check``).
Segments are plain files: no ``multiprocessing.resource_tracker`` is involved, so it never warns. Where
``/dev/shm`` is missing, too small or full, the call goes in band, with one warning.
"""

from __future__ import annotations

import atexit
import itertools
import mmap
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from offload_tuner.runtime._backends import PICKLE_PROTOCOL, PayloadNotLoadable, ResultNotPicklable
from offload_tuner.runtime._warn import warn_once

SHM_DIR = "/dev/shm"
PREFIX = "offload-tuner-"
DEFAULT_MIN_BYTES = 1 << 20
"""Out of band from this many bytes per buffer until a profile's calibration says otherwise."""
ALIGN = 64
"""Each buffer starts on a cache-line boundary, so numpy views of it are aligned for every dtype."""
_MAX_WRITE = 1 << 30  # Linux writes at most ~2 GiB per call


@dataclass(slots=True)
class Settings:
    """What the process backend does with large buffers; set from the environment and the installed profile."""

    enabled: bool = True
    min_bytes: int = DEFAULT_MIN_BYTES


settings = Settings()


def configure_from_environment() -> None:
    """``OFFLOAD_TUNER_SHM=off`` turns the transport off; a positive integer sets the size from which a buffer
    goes out of band (overriding the profile). An invalid value is reported once and ignored."""
    value = os.environ.get("OFFLOAD_TUNER_SHM", "").strip().lower()
    if not value:
        return
    if value in ("off", "0", "false", "no"):
        settings.enabled = False
        return
    try:
        settings.min_bytes = max(1, int(value))
    except ValueError:
        warn_once(
            f"shm-env:{value}",
            f"offload-tuner: OFFLOAD_TUNER_SHM={value!r} is neither 'off' nor a byte count; ignoring it",
        )


def available(directory: str = SHM_DIR) -> bool:
    return sys.platform.startswith("linux") and os.path.isdir(directory) and os.access(directory, os.W_OK)


# ------------------------------------------------------------------------------------------------- naming


def _start_ticks(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22): with the pid, it names
    one process for good, so a recycled pid is never mistaken for a segment's live owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


_OWNER = f"{os.getpid()}-{_start_ticks(os.getpid()) or 0}"
_OWNER_PID = os.getpid()
_sequence = itertools.count()
_outstanding: set[str] = set()
"""Segments this process created and has not unlinked yet: removed at exit whatever happened."""


def _owner() -> str:
    global _OWNER, _OWNER_PID
    pid = os.getpid()
    if pid != _OWNER_PID:  # a forked child names its own segments
        _OWNER, _OWNER_PID = f"{pid}-{_start_ticks(pid) or 0}", pid
        _outstanding.clear()
    return _OWNER


def new_call_name() -> str:
    """The stem of one call's segments: ``<stem>a`` carries its arguments, ``<stem>r`` its result."""
    return f"{PREFIX}{_owner()}-{next(_sequence)}"


def unlink(name: str, directory: str = SHM_DIR) -> None:
    """Remove a segment if it exists (idempotent: the caller and a done-callback may both try)."""
    _outstanding.discard(name)
    try:
        os.unlink(os.path.join(directory, name))
    except FileNotFoundError:
        pass
    except OSError:
        pass  # a directory gone or read-only: nothing of ours can remain there


@atexit.register
def _unlink_outstanding() -> None:
    for name in [*_outstanding, *_abandoned]:
        unlink(name)


def sweep_orphans(directory: str = SHM_DIR) -> list[str]:
    """Remove the segments whose calling process is gone (a service killed mid-call); returns their names."""
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(PREFIX):
            continue
        parts = name[len(PREFIX) :].split("-")
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        pid, start = int(parts[0]), parts[1]
        if pid == os.getpid() or _start_ticks(pid) == start:
            continue  # alive: its owner cleans up
        unlink(name, directory)
        removed.append(name)
    return removed


_swept = threading.Event()


def _sweep_once() -> None:
    if not _swept.is_set():
        _swept.set()
        sweep_orphans()


# ------------------------------------------------------------------------------------------------ segments


class SegmentUnavailable(OSError):
    """A segment could not be created (no ``/dev/shm``, too small, full): the call goes in band."""


def _padding(offset: int) -> int:
    return -offset % ALIGN


def write_segment(name: str, buffers: Iterable[memoryview], directory: str = SHM_DIR) -> tuple[tuple[int, int], ...]:
    """Write ``buffers`` one after another (aligned) into a new segment; returns each one's (offset, length).
    ``os.write`` releases the GIL while the kernel copies, so other threads (the event loop) keep running."""
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise SegmentUnavailable(exc.errno, f"cannot create {path}: {exc.strerror}") from None
    _outstanding.add(name)
    layout = []
    offset = 0
    try:
        for buffer in buffers:
            offset += _padding(offset)
            layout.append((offset, buffer.nbytes))
            view = buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer
            done = 0
            while done < view.nbytes:
                done += os.pwrite(fd, view[done : done + _MAX_WRITE], offset + done)
            offset += view.nbytes
    except OSError as exc:  # ENOSPC: /dev/shm is full or smaller than the payload
        os.close(fd)
        unlink(name, directory)
        raise SegmentUnavailable(exc.errno, f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)
    return tuple(layout)


def map_segment(name: str, layout: Iterable[tuple[int, int]], directory: str = SHM_DIR) -> list[memoryview]:
    """Views of a segment's buffers, mapped private (copy-on-write): writing to one never reaches the segment."""
    fd = os.open(os.path.join(directory, name), os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mapped = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    whole = memoryview(mapped)  # the views keep the mapping alive; it is unmapped with the last of them
    return [whole[offset : offset + length] for offset, length in layout]


# ------------------------------------------------------------------------------------------------ pickling


def _rebuild(buffer: Any, kind: str, fmt: str, shape: tuple[int, ...]) -> Any:
    if kind == "bytes":
        return bytes(buffer)
    if kind == "bytearray":
        return bytearray(buffer)
    view: Any = memoryview(buffer)  # any format: typeshed's overloads name literal formats only
    return view.cast(fmt, shape) if (fmt, shape) != ("B", (view.nbytes,)) else view


class _Flat:
    """A ``bytes``, ``bytearray`` or contiguous ``memoryview`` marked to travel out of band: the pickler never
    offers those to a ``buffer_callback`` itself (only numpy arrays and ``PickleBuffer`` reach it)."""

    __slots__ = ("obj",)

    def __init__(self, obj: bytes | bytearray | memoryview) -> None:
        self.obj = obj

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        obj = self.obj
        if isinstance(obj, memoryview):
            return _rebuild, (pickle.PickleBuffer(obj), "memoryview", obj.format, obj.shape)
        return _rebuild, (pickle.PickleBuffer(obj), type(obj).__name__, "B", (len(obj),))


def _flat_large(value: Any, min_bytes: int) -> Any:
    if type(value) in (bytes, bytearray) and len(value) >= min_bytes:
        return _Flat(value)
    if type(value) is memoryview and value.nbytes >= min_bytes and value.contiguous:
        return _Flat(value)
    return value


def mark_large(values: Any, min_bytes: int) -> Any:
    """The values (and the items of a top-level tuple or list) that are large flat buffers, marked to go out of
    band; deeper ones stay in band. A shallow look: it costs a few type checks per argument."""
    kind = type(values)
    if kind is tuple or kind is list:
        marked = [_flat_large(item, min_bytes) for item in values]
        return kind(marked) if any(m is not v for m, v in zip(marked, values)) else values
    return _flat_large(values, min_bytes)


def dumps_out_of_band(obj: Any, min_bytes: int) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj`` with every contiguous buffer of ``min_bytes`` or more kept out of band (returned raw)."""
    buffers: list[memoryview] = []

    def keep(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: in band
            return True
        if raw.nbytes < min_bytes:
            return True
        buffers.append(raw)
        return False

    return pickle.dumps(obj, protocol=PICKLE_PROTOCOL, buffer_callback=keep), buffers


# ---------------------------------------------------------------------------------------------- call packets

# A packet is a plain tuple, cheap for the pool's feeder thread to pickle again:
#   call:   (payload, PendingSegment or None, result segment name, min_bytes, reserved)
#   result: (payload, segment name or None, layout, in-band note or None)


class PendingSegment:
    """A call's large argument buffers, written into their segment when the pool's feeder thread pickles the
    call (``__reduce__``), not on the caller: the write releases the GIL, so the event loop runs meanwhile.
    The buffers are therefore read when the pool sends the call: an array must not be changed while a call that
    was given it is in flight (the contract of the thread lane too). If the segment cannot be written the
    buffers travel in band, with one warning; nothing raises in the feeder thread."""

    __slots__ = ("buffers", "lock", "name", "released")

    def __init__(self, name: str, buffers: list[memoryview]) -> None:
        self.name = name
        self.buffers = buffers
        self.released = False
        self.lock = threading.Lock()

    def release(self) -> None:
        """The call is over: unlink the segment, and make sure a late send never writes it again."""
        with self.lock:
            self.released = True
            self.buffers = []
        unlink(self.name)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        try:
            with self.lock:  # a call completed (a broken pool) before its send must not leave a segment behind
                if self.released:
                    return _in_band, ([],)
                return _segment_ref, (self.name, write_segment(self.name, self.buffers))
        except SegmentUnavailable as exc:
            _in_band_warning(str(exc))
        except Exception as exc:  # never let the feeder thread fail the call for the transport's sake
            _in_band_warning(f"{type(exc).__name__}: {exc}")
        return _in_band, ([bytes(buffer) for buffer in self.buffers],)


def _segment_ref(name: str, layout: tuple[tuple[int, int], ...]) -> tuple[str, tuple[tuple[int, int], ...]]:
    return name, layout


def _in_band(copies: list[bytes]) -> list[bytes]:
    return copies


def encode_call(fn: Callable[..., Any], args: tuple[Any, ...], stem: str, min_bytes: int) -> tuple[Any, ...]:
    """The call as a packet whose large buffers go to ``<stem>a`` when it is sent. Raises what pickling raises."""
    _sweep_once()
    if _abandoned:
        reap_abandoned()
    payload, buffers = dumps_out_of_band((fn, mark_large(args, min_bytes)), min_bytes)
    if not buffers:
        return (payload, None, stem + "r", min_bytes, None)
    return (payload, PendingSegment(stem + "a", buffers), stem + "r", min_bytes, None)


def _arguments(source: Any) -> Any:
    """The argument buffers as the worker received them: a (name, layout) to map, or in-band copies."""
    if source is None:
        return ()
    if isinstance(source, list):
        return source
    name, layout = source
    return map_segment(name, layout)


def invoke_packet(packet: tuple[Any, ...]) -> tuple[Any, ...]:
    """Worker side: map the arguments, call, send the result's large buffers out of band the same way."""
    payload, source, result_name, min_bytes, _ = packet
    try:
        fn, args = pickle.loads(payload, buffers=_arguments(source))
    except Exception as exc:  # a module missing in the worker, a segment removed by a caller that gave up
        raise PayloadNotLoadable(f"{type(exc).__name__}: {exc}") from None
    result = fn(*args)
    try:
        blob, out = dumps_out_of_band(mark_large(result, min_bytes), min_bytes)
    except Exception as exc:
        raise ResultNotPicklable(f"{type(exc).__name__}: {exc}") from None
    if not out:
        return (blob, None, (), None)
    try:
        return (blob, result_name, write_segment(result_name, out), None)
    except SegmentUnavailable as exc:
        return (pickle.dumps(result, protocol=PICKLE_PROTOCOL), None, (), str(exc))


def decode_result(packet: tuple[Any, ...]) -> Any:
    """Caller side: the result, its large buffers mapped from the segment, which is unlinked at once (the mapping
    lives as long as the result does)."""
    blob, segment, layout, note = packet
    if note is not None:
        _in_band_warning(note)
    if segment is None:
        return pickle.loads(blob)
    try:
        buffers = map_segment(segment, layout)
    finally:
        unlink(segment)
    return pickle.loads(blob, buffers=buffers)


def in_use() -> bool:
    """Whether process-pool calls go through packets. Without a usable ``/dev/shm`` they still do: the first
    large buffer then falls back in band with one warning, and small calls never notice."""
    return settings.enabled


def release_when_done(future: Any, packet: tuple[Any, ...]) -> None:
    """Unlink the call's argument segment once its future completes, whatever the outcome."""
    pending = packet[1]
    if isinstance(pending, PendingSegment):
        future.add_done_callback(lambda _: pending.release())


_abandoned: dict[str, float] = {}
"""Result segments of calls nobody waits for any more, retried for :data:`ABANDON_GRACE_S`: a worker being
terminated with its pool can still write one just after the call's future completed."""
ABANDON_GRACE_S = 5.0


def abandon(future: Any, packet: tuple[Any, ...]) -> None:
    """The caller stopped waiting (timeout, cancellation, a lost pool): whatever result segment the worker writes
    is unlinked when the future completes (at once if it has), and again by the next calls for a few seconds."""
    result_name = packet[2]
    pending = packet[1]
    _abandoned[result_name] = time.monotonic() + ABANDON_GRACE_S
    if future is None:
        unlink(result_name)
        if isinstance(pending, PendingSegment):
            pending.release()
        return
    future.add_done_callback(lambda _: unlink(result_name))


def reap_abandoned() -> None:
    """Unlink abandoned result segments again; forget those past their grace period."""
    now = time.monotonic()
    for name, deadline in list(_abandoned.items()):
        unlink(name)
        if now > deadline:
            _abandoned.pop(name, None)


def _in_band_warning(reason: str) -> None:
    warn_once(
        "shm-in-band",
        f"offload-tuner: shared memory is unavailable ({reason}); large buffers travel in band (slower), said once",
    )


configure_from_environment()
