"""What packaging one call costs each side (impure: builds real segments), for the size ladder to time.

The steps are the runtime's own (:mod:`offload_tuner.runtime._packaging`): with the shared-memory transport on,
the caller pickles the call with its large buffers kept out of band (their segment is written later by the pool's
feeder thread, with the GIL released, so it is not the caller's cost) and maps the result's segment; the worker
maps the arguments' segment and writes the result's. Off, both sides pickle in band, as before."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from offload_tuner.runtime import _shm
from offload_tuner.runtime._backends import PICKLE_PROTOCOL, dumps_call


@dataclass
class Sides:
    """Callables that repeat one call's packaging work on the caller and in the worker, and its byte counts."""

    caller: Callable[[], None]
    worker: Callable[[], None]
    bytes_in: int
    """Bytes pickled in band, the call and the result (what crosses the pool's pipe)."""
    bytes_out: int
    oob_bytes: int
    """Bytes sent out of band, both directions (0 with the transport off or no buffer large enough)."""
    buffer_bytes: int
    """Bytes of every contiguous buffer of the call and its result, whatever their size: what goes out of band
    once each buffer reaches the transport's size."""
    rest_bytes: int
    """Bytes pickled in band when every buffer goes out of band."""
    segments: list[str] = field(default_factory=list)

    def close(self) -> None:
        """Remove the segments built for timing."""
        for name in self.segments:
            _shm.unlink(name)


def buffer_split(fn: Callable[..., Any], args: tuple[Any, ...], result: Any) -> tuple[int, int, bytes, bytes]:
    """(buffer bytes, rest bytes, call pickle, result pickle) of a call and its result: what could go out of band,
    what never does, and the pickles with every buffer out of band (with none, exactly the in-band pickles)."""
    payload, arg_buffers = _shm.dumps_out_of_band((fn, _shm.mark_large(args, 1)), 1)
    blob, result_buffers = _shm.dumps_out_of_band(_shm.mark_large(result, 1), 1)
    return sum(b.nbytes for b in (*arg_buffers, *result_buffers)), len(payload) + len(blob), payload, blob


def packaging_sides(fn: Callable[..., Any], args: tuple[Any, ...], result: Any) -> Sides:
    """The packaging of ``fn(*args) -> result`` as production does it now (call :meth:`Sides.close` after)."""
    buffer_bytes, rest_bytes, payload, blob = buffer_split(fn, args, result)
    split = (buffer_bytes, rest_bytes)
    if not buffer_bytes:  # no buffer at all: the call is pickled in band whatever the transport; reuse the pickles
        return _in_band(fn, args, result, split, (payload, blob))
    if not _shm.in_use():
        return _in_band(fn, args, result, split)
    min_bytes = _shm.settings.min_bytes
    payload, arg_buffers = _shm.dumps_out_of_band((fn, _shm.mark_large(args, min_bytes)), min_bytes)
    blob, result_buffers = _shm.dumps_out_of_band(_shm.mark_large(result, min_bytes), min_bytes)
    if not arg_buffers and not result_buffers:
        return _in_band(fn, args, result, split)
    stem = _shm.new_call_name()
    try:
        arg_layout = _shm.write_segment(stem + "a", arg_buffers) if arg_buffers else ()
        result_layout = _shm.write_segment(stem + "r", result_buffers) if result_buffers else ()
    except _shm.SegmentUnavailable:  # the directory is unusable: production's calls go in band, and so is this
        _shm.unlink(stem + "a")
        return _in_band(fn, args, result, split)

    def caller() -> None:  # pickle the call (buffers by reference), map the result and unpickle it
        _shm.dumps_out_of_band((fn, _shm.mark_large(args, min_bytes)), min_bytes)
        views = _shm.map_segment(stem + "r", result_layout) if result_buffers else ()
        pickle.loads(blob, buffers=views)

    def worker() -> None:  # map the arguments, unpickle them, pickle the result and write its segment
        views = _shm.map_segment(stem + "a", arg_layout) if arg_buffers else ()
        pickle.loads(payload, buffers=views)
        _, out = _shm.dumps_out_of_band(_shm.mark_large(result, min_bytes), min_bytes)
        if out:
            name = _shm.new_call_name() + "r"
            _shm.write_segment(name, out)
            _shm.unlink(name)

    oob = sum(b.nbytes for b in arg_buffers) + sum(b.nbytes for b in result_buffers)
    segments = [stem + "a"] if arg_buffers else []
    segments += [stem + "r"] if result_buffers else []
    return Sides(caller, worker, len(payload), len(blob), oob, *split, segments)


def _in_band(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    result: Any,
    split: tuple[int, int],
    pickled: tuple[bytes, bytes] | None = None,
) -> Sides:
    """Both sides pickling in band; ``pickled``: the call's and result's in-band pickles when already made."""
    if pickled is None:
        pickled = dumps_call(fn, args), pickle.dumps(result, protocol=PICKLE_PROTOCOL)
    payload, result_blob = pickled

    def caller() -> None:  # what the caller pays with the GIL held when it offloads
        dumps_call(fn, args)
        pickle.loads(result_blob)

    def worker() -> None:  # what the worker pays on top of the compute
        pickle.loads(payload)
        pickle.dumps(result, protocol=PICKLE_PROTOCOL)

    return Sides(caller, worker, len(payload), len(result_blob), 0, *split)
