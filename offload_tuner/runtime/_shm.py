"""Large buffers through shared memory: pickle protocol 5 out of band, one segment per call and direction at a time.

Why: in-band, a large array is copied by ``pickle.dumps`` on the caller, pickled again by the pool's feeder thread
(both with the GIL held, so the event loop stalls), pushed through a pipe, and the result comes back the same way.
Out of band (PEP 574), the pickle stream keeps only the small parts and each buffer at or above
:data:`settings.min_bytes <Settings>` is written once into a segment under ``/dev/shm`` with ``os.pwrite``, which
releases the GIL; the reader maps the segment copy-on-write and hands the unpickler views of it, so a kernel's
array arguments and the caller's array results are never copied again, and a kernel never sees memory another
call can change (private mapping, one segment per call at a time). Read-only buffers arrive read-only, writable
ones writable (PEP 574's ``READONLY_BUFFER``), in band or not.

Argument segments are written again for later calls (``_segments.take_reusable``): a file whose pages tmpfs holds
already skips allocating and zeroing them, a large share of a multi-megabyte write. Only once the worker said it
let go of the mapping (it unmaps after the call; a kernel that kept a view of its argument makes that fail, and
the file is unlinked instead), so nothing a kernel holds can change under it. At most ``_segments.POOL_BYTES``,
and a sixteenth of the file system, are kept free per process.

Where: :data:`settings.directory <Settings>` (``/dev/shm``), read by the caller once per call; the call's segment
paths travel in its packet, so workers (other processes) follow a redirect without being told. The files and
their naming live in :mod:`_segments`.

No leaks: segments are named ``offload-tuner-<pid>-<start>-<seq><a|r>`` after the *calling* process (its pid and
start time), which holds a lock file ``offload-tuner-<pid>-<start>-owner`` there while it lives. The caller
unlinks its argument segment once the call's future completes, whatever the outcome (or keeps it free for the
next call, as above); a result segment is unlinked
by the caller as soon as it is mapped, or, when the caller stopped waiting (timeout, cancellation, a worker
killed), once the future completes, and again for a few seconds; what is left at exit is removed then; what a
killed service process left behind is removed by the next start (:func:`sweep_orphans`, run by the first call of
every process). Segments are plain files: no ``multiprocessing.resource_tracker`` is involved, so it never warns.
Where the directory is missing, too small or full, the call goes in band, with one warning.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from offload_tuner.runtime import _segments
from offload_tuner.runtime._backends import PICKLE_PROTOCOL, PayloadNotLoadable, ResultNotPicklable
from offload_tuner.runtime._segments import (
    ABANDON_GRACE_S,
    PREFIX,
    SHM_DIR,
    SegmentUnavailable,
    map_segment,
    unlink,
    write_segment,
)
from offload_tuner.runtime._warn import warn_once

__all__ = ["ABANDON_GRACE_S", "PREFIX", "SHM_DIR", "SegmentUnavailable", "map_segment", "unlink", "write_segment"]

DEFAULT_MIN_BYTES = 1 << 20
"""Out of band from this many bytes per buffer until a profile's calibration says otherwise."""
NEVER = 1 << 62
"""A ``min_bytes`` no buffer reaches: everything in band."""
_REAP_EVERY_S = 0.25


@dataclass(slots=True)
class Settings:
    """What the process backend does with large buffers; set from the environment and the installed profile."""

    enabled: bool = True
    min_bytes: int = DEFAULT_MIN_BYTES
    directory: str = SHM_DIR
    """Where segments go; read by the caller per call (its packet carries the paths to the worker)."""
    pinned: bool = False
    """``min_bytes`` came from ``OFFLOAD_TUNER_SHM=<bytes>``: a profile's calibrated size does not replace it."""


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
        settings.min_bytes, settings.pinned = max(1, int(value)), True
    except ValueError:
        warn_once(
            f"shm-env:{value}",
            f"offload-tuner: OFFLOAD_TUNER_SHM={value!r} is neither 'off' nor a byte count; ignoring it",
        )


def apply_calibrated(min_bytes: int | None) -> None:
    """The size from which a buffer goes out of band, as a profile's calibration found it (None: shared memory
    never paid off, nothing goes out of band; anything else unusable: the default), unless the environment
    pinned one."""
    if settings.pinned:
        return
    if min_bytes is None:
        settings.min_bytes = NEVER
    elif isinstance(min_bytes, int) and not isinstance(min_bytes, bool) and min_bytes >= 1:
        settings.min_bytes = min_bytes
    else:
        settings.min_bytes = DEFAULT_MIN_BYTES


def available(directory: str | None = None) -> bool:
    directory = settings.directory if directory is None else directory
    return os.path.isdir(directory) and os.access(directory, os.W_OK)


def new_call_name() -> str:
    """The path stem of one call's segments in :data:`settings.directory <Settings>` (``<stem>a`` carries its
    arguments, ``<stem>r`` its result): a full path, so the worker writes where this process reads. A call
    whose directory is unusable (no owner lock there) goes in band (:func:`encode_call`)."""
    return _segments.call_stem(settings.directory)


def sweep_orphans(directory: str | None = None) -> list[str]:
    """Remove the segments whose calling process is gone (a service killed mid-call); returns their names."""
    return _segments.sweep_orphans(settings.directory if directory is None else directory)


def reap_abandoned() -> None:
    """Unlink abandoned result segments again; forget those past their grace period (:data:`ABANDON_GRACE_S`)."""
    _segments.reap_abandoned()


_next_reap = 0.0


def _reap_now_and_then() -> None:
    global _next_reap
    now = time.monotonic()
    if now >= _next_reap:
        _next_reap = now + _REAP_EVERY_S
        _segments.reap_abandoned()


# ------------------------------------------------------------------------------------------------ pickling


def _castable() -> frozenset[str]:
    found = set()
    for fmt in "cbB?hHiIlLqQnNefdP":
        try:
            view: Any = memoryview(bytes(16))
            view.cast(fmt)
        except (TypeError, ValueError):
            continue
        found.add(fmt)
    return frozenset(found)


_CASTABLE = _castable()
"""The formats a memoryview can be rebuilt in (``memoryview.cast``: native single-character formats)."""


def _rebuild(buffer: Any, kind: str, fmt: str, shape: tuple[int, ...]) -> Any:
    if kind == "bytes":
        return bytes(buffer)
    if kind == "bytearray":
        return bytearray(buffer)
    view: Any = memoryview(buffer)  # any format: typeshed's overloads name literal formats only
    return view.cast(fmt, shape) if (fmt, shape) != ("B", (view.nbytes,)) else view


class _Flat:
    """A ``bytes``, ``bytearray`` or C-contiguous ``memoryview`` marked to travel out of band: the pickler never
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
    if (
        type(value) is memoryview
        and value.nbytes >= min_bytes
        and value.c_contiguous  # a Fortran-ordered view would come back transposed
        and value.format.lstrip("@") in _CASTABLE
    ):
        return _Flat(value)
    return value


def mark_large(values: Any, min_bytes: int) -> Any:
    """The values (and the items of a top-level tuple or list) that are large flat buffers, marked to go out of
    band; deeper ones stay in band. A shallow look: it costs a few type checks per argument."""
    kind = type(values)
    if kind is tuple or kind is list:
        for item in values:  # most calls carry no flat buffer: one type check per argument, nothing built
            if type(item) in _FLAT_TYPES:
                marked = [_flat_large(value, min_bytes) for value in values]
                return kind(marked) if any(m is not v for m, v in zip(marked, values)) else values
        return values
    return _flat_large(values, min_bytes)


_FLAT_TYPES = frozenset((bytes, bytearray, memoryview))


def dumps_out_of_band(obj: Any, min_bytes: int) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj`` with every contiguous buffer of ``min_bytes`` (at least 1) or more kept out of band."""
    buffers: list[memoryview] = []
    floor = max(1, min_bytes)  # an empty buffer in a segment would be an empty file: nothing to map

    def keep(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: in band
            return True
        if raw.nbytes < floor:
            return True
        buffers.append(raw)
        return False

    return pickle.dumps(obj, protocol=PICKLE_PROTOCOL, buffer_callback=keep), buffers


def _copies(buffers: list[memoryview]) -> list[bytearray]:
    """The buffers in band: writable copies (the stream's ``READONLY_BUFFER`` makes read-only ones read-only)."""
    return [bytearray(buffer) for buffer in buffers]


# ---------------------------------------------------------------------------------------------- call packets

# A packet is a plain tuple, cheap for the pool's feeder thread to pickle again:
#   call:   (payload, PendingSegment | in-band copies | None, result segment path or None, min_bytes, reserved)
#   result: (payload, result segment path or None, layout | in-band copies | (), in-band note or None)


class PendingSegment:
    """A call's large argument buffers, written into their segment when the pool's feeder thread pickles the
    call (``__reduce__``), not on the caller: the write releases the GIL, so the event loop runs meanwhile.
    The buffers are therefore read when the pool sends the call: an array must not be changed while a call that
    was given it is in flight (the contract of the thread lane too). If the segment cannot be written the
    buffers travel in band, with one warning; nothing raises in the feeder thread. The lock orders a send
    against :meth:`release`: a call completed before its send (a broken pool) never leaves a segment behind."""

    __slots__ = ("buffers", "capacity", "lock", "path", "pid", "released")

    def __init__(self, path: str, buffers: list[memoryview]) -> None:
        self.path = path
        self.pid = os.getpid()
        """The process the call belongs to: a forked child copying it neither pools nor unlinks its segment."""
        self.buffers = buffers
        self.released = False
        self.capacity = 0
        """Bytes of the file written (0: none yet)."""
        self.lock = threading.Lock()

    def release(self, reusable: bool = False) -> None:
        """The call is over: the segment is kept for another call when its reader said it unmapped it
        (``reusable``), else unlinked; a late send never writes it again. In a forked child it does nothing:
        the segment is the parent's to keep or remove."""
        if os.getpid() != self.pid:
            return
        with self.lock:
            if self.released:
                return  # once only: a second release could unlink a segment another call has taken since
            self.released = True
            self.buffers = []
            written, self.capacity = self.capacity, 0
        if reusable and written:
            _segments.give_back(self.path, written)
        else:
            unlink(self.path)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        with self.lock:
            if self.released:
                return _in_band, ([],)  # nobody waits for this call any more
            buffers, self.buffers = self.buffers, []  # sent once: the caller's arrays are let go of
            try:
                layout = self._write(buffers)  # first: it may swap self.path for a reused segment's
                return _segment_ref, (self.path, layout)
            except SegmentUnavailable as exc:
                _in_band_warning(str(exc))
            except Exception as exc:  # never let the feeder thread fail the call for the transport's sake
                _in_band_warning(f"{type(exc).__name__}: {exc}")
            return _in_band, (_copies(buffers),)

    def _write(self, buffers: list[memoryview]) -> tuple[tuple[int, int], ...]:
        """Into a free segment of the right size when there is one (its pages are allocated already), else a new
        one; either way this call's alone until :meth:`release`."""
        needed = _segments.segment_bytes(buffers)
        reused = _segments.take_reusable(os.path.dirname(self.path), needed)
        if reused is not None:
            try:
                layout = _segments.rewrite_segment(reused[0], buffers)
            except SegmentUnavailable:
                pass  # unlinked by rewrite_segment; a new segment below
            else:
                self.path, self.capacity = reused  # this call's own name was never created: nothing to unlink
                return layout
        layout = write_segment(self.path, buffers)
        self.capacity = needed
        return layout


def _segment_ref(path: str, layout: tuple[tuple[int, int], ...]) -> tuple[str, tuple[tuple[int, int], ...]]:
    return path, layout


def _in_band(copies: list[bytearray]) -> list[bytearray]:
    return copies


def encode_call(fn: Callable[..., Any], args: tuple[Any, ...], stem: str | None, min_bytes: int) -> tuple[Any, ...]:
    """The call as a packet whose large buffers go to ``<stem>a`` when it is sent (``stem`` None: a new call's in
    :data:`settings.directory <Settings>`). In band, said once, when this process holds no owner lock in the
    stem's directory (it is missing, full or read-only). Raises what pickling raises.

    Every process-pool call comes through here, most with no large buffer: the common path is kept short (no
    path arithmetic, one type check per argument)."""
    if stem is None:
        directory = settings.directory
        stem = _segments.call_stem(directory)
    else:
        directory = os.path.dirname(stem)
    if directory not in _segments.swept:
        _segments.sweep_once(directory)
    if _segments.abandoned:
        _reap_now_and_then()
    payload, buffers = dumps_out_of_band((fn, mark_large(args, min_bytes)), min_bytes)
    if not _segments.holds_lock(directory):
        if buffers:
            _in_band_warning(f"cannot create files in {directory}")
        return (payload, _copies(buffers) if buffers else None, None, min_bytes, None)
    _segments.outstanding.add(stem + "r")  # whatever happens to the call, it is gone at exit
    pending = PendingSegment(stem + "a", buffers) if buffers else None
    return (payload, pending, stem + "r", min_bytes, None)


def _arguments_closable(source: Any) -> tuple[Any, Any]:
    """(the mapping or None, the argument buffers as the worker received them)."""
    if source is None or isinstance(source, list):
        return None, source or ()
    path, layout = source
    return _segments.map_closable(path, layout)


def invoke_packet(packet: tuple[Any, ...]) -> tuple[Any, ...]:
    """Worker side: map the arguments, call, send the result's large buffers out of band the same way. The
    result packet's last item says whether the arguments' mapping was let go of (then the caller may write that
    segment again for another call: nothing here can see it change)."""
    payload, source, result_path, min_bytes, _ = packet
    try:
        mapping, views = _arguments_closable(source)
        fn, args = pickle.loads(payload, buffers=views)
    except Exception as exc:  # a module missing in the worker, a segment removed by a caller that gave up
        raise PayloadNotLoadable(f"{type(exc).__name__}: {exc}") from None
    del views
    result = _result_packet(fn(*args), result_path, min_bytes)
    del fn, args
    return (*result, mapping is not None and _segments.close_mapping(mapping))


def _result_packet(result: Any, path: str | None, min_bytes: int) -> tuple[Any, ...]:
    try:
        blob, out = dumps_out_of_band(mark_large(result, min_bytes), min_bytes)
    except Exception as exc:
        raise ResultNotPicklable(f"{type(exc).__name__}: {exc}") from None
    if not out:
        return (blob, path, (), None)
    if path is None:
        return (blob, None, _copies(out), "the caller has no usable shared-memory directory")
    try:  # the caller's segment: it removes it (track=False), never this worker at its exit
        return (blob, path, write_segment(path, out, track=False), None)
    except SegmentUnavailable as exc:
        return (blob, path, _copies(out), str(exc))


def decode_result(packet: tuple[Any, ...]) -> Any:
    """Caller side: the result, its large buffers mapped from the segment, which is unlinked at once (the mapping
    lives as long as the result does)."""
    blob, path, layout, note = packet[:4]
    if note is not None:
        _in_band_warning(note)
    if type(layout) is not tuple or not layout:  # in band
        if path is not None:
            _segments.forget(path)
        return pickle.loads(blob, buffers=layout)
    try:
        buffers = map_segment(path, layout)
    finally:
        unlink(path)
    return pickle.loads(blob, buffers=buffers)


def in_use() -> bool:
    """Whether process-pool calls go through packets. Without a usable ``/dev/shm`` they still do: the first
    large buffer then falls back in band with one warning, and small calls never notice."""
    return settings.enabled


def release_when_done(future: Any, packet: tuple[Any, ...]) -> None:
    """Unlink the call's argument segment once its future completes, whatever the outcome."""
    pending = packet[1]
    if isinstance(pending, PendingSegment):
        future.add_done_callback(lambda done: pending.release(_unmapped(done)))


def _unmapped(future: Any) -> bool:
    """Whether a completed call's worker let go of its arguments' mapping (its result packet says so)."""
    if future.cancelled() or future.exception() is not None:
        return False
    result = future.result()
    return type(result) is tuple and len(result) > 4 and result[4] is True


def abandon(future: Any, packet: tuple[Any, ...]) -> None:
    """The caller stopped waiting (timeout, cancellation, a lost pool): whatever result segment the worker writes
    is unlinked when the future completes (at once if it has), and again by the next calls for a few seconds."""
    result_path = packet[2]
    pending = packet[1]
    if result_path is not None and _segments.foreign(result_path):
        return  # a forked child's copy of its parent's call: the parent still waits for that result
    if future is None:  # never submitted
        if isinstance(pending, PendingSegment):
            pending.release()
        if result_path is not None:
            unlink(result_path)
        return
    if result_path is not None:
        future.add_done_callback(lambda done: _abandon_result(result_path, done))


def _abandon_result(path: str, future: Any) -> None:
    """Unlink the result segment; if the pool broke, again for a while: its other workers are terminated only
    after the futures fail, and one may write its result meanwhile. Otherwise the worker is done with it (the
    result arrived, the kernel raised, or the call was cancelled before it was sent), so once is enough."""
    from concurrent.futures import BrokenExecutor  # loaded already: this is a future's callback

    unlink(path)
    if not future.cancelled() and isinstance(future.exception(), BrokenExecutor):
        _segments.abandon(path)


def _in_band_warning(reason: str) -> None:
    warn_once(
        "shm-in-band",
        f"offload-tuner: shared memory is unavailable ({reason}); large buffers travel in band (slower), said once",
    )


configure_from_environment()
