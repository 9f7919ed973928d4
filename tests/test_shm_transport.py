"""Issue 28, the shared-memory transport (runtime/_shm.py, _segments.py): what goes out of band comes back equal,
with its type, dtype, order and writability, on both calling conventions; the in-band fallback (tiny or missing
directory) is correct and said once; and the transport's own edges (fork, races, descriptors, short files)."""

from __future__ import annotations

import asyncio
import errno
import mmap
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import offload_tuner_kernels
from offload_tuner import OffloadTunerWarning, run_kernel, run_kernel_sync, set_executor
from offload_tuner.runtime import _segments, _shm
from offload_tuner.runtime._registry import registered

ROOT = Path(__file__).resolve().parent.parent
MODES = ("sync", "async")
SMALL = 1024  # min_bytes for these tests: every buffer below goes in band, every one above through a segment
UNAVAILABLE = "shared memory is unavailable"

pytestmark = pytest.mark.slow  # starts process pools


# ---------------------------------------------------------------------- kernels (workers import them by name)


def echo(*xs: Any) -> tuple[Any, ...]:
    return xs


def writable(*xs: Any) -> list[bool]:
    """How each argument arrived in the worker: writable or not."""
    out = []
    for x in xs:
        if isinstance(x, np.ndarray):
            out.append(bool(x.flags.writeable))
        elif isinstance(x, memoryview):
            out.append(not x.readonly)
        else:
            out.append(isinstance(x, bytearray))
    return out


def scribble(a: np.ndarray, pause: float) -> np.ndarray:
    """What the kernel was given, then overwrite it (as a careless kernel might)."""
    seen = a.copy()
    time.sleep(pause)
    a[...] = -1
    return seen


# ------------------------------------------------------------------------------------------------ helpers


def call(mode: str, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
    if mode == "sync":
        return run_kernel_sync(fn, *args, offload_if=True, timeout=timeout)
    return asyncio.run(run_kernel(fn, *args, offload_if=True, timeout=timeout))


def same(a: Any, b: Any) -> bool:
    """Equal, of the same type, dtype, shape, order and writability (numpy arrays, memoryviews), nested."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            type(a) is type(b)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.flags.f_contiguous == b.flags.f_contiguous
            and a.flags.c_contiguous == b.flags.c_contiguous
            and a.flags.writeable == b.flags.writeable
            and np.array_equal(a, b)
        )
    if isinstance(a, memoryview) or isinstance(b, memoryview):
        return (
            type(a) is type(b)
            and (a.format, a.shape, a.readonly) == (b.format, b.shape, b.readonly)
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def mapped(a: np.ndarray) -> bool:
    """Whether an array lies in a mapped segment (it came out of band), not in memory of its own."""
    base: Any = a
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def arrays_in(value: Any) -> Iterator[np.ndarray]:
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from arrays_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from arrays_in(item)
    elif hasattr(value, "__dict__"):
        yield from arrays_in(vars(value))


def ours(directory: str) -> list[str]:
    """This process's segments (not its owner lock) in ``directory``."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    stem = f"{_shm.PREFIX}{_segments.owner_tag()}-"
    return sorted(n for n in names if n.startswith(stem) and not n.endswith(_segments.OWNER_SUFFIX))


def shm_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message) for w in caught if issubclass(w.category, OffloadTunerWarning) and UNAVAILABLE in str(w.message)
    ]


@pytest.fixture(autouse=True)
def small_buffers_and_no_leak(monkeypatch):
    """Out of band from SMALL bytes; afterwards none of this process's segments is left anywhere it wrote."""
    monkeypatch.setattr(_shm.settings, "min_bytes", SMALL)
    monkeypatch.setattr(_shm.settings, "enabled", True)
    directories = {_shm.SHM_DIR}
    yield directories
    directories.add(_shm.settings.directory)
    _segments.drain_pool()  # argument segments kept for reuse are this process's until it exits
    deadline = time.monotonic() + 5
    while any(ours(d) for d in directories) and time.monotonic() < deadline:
        time.sleep(0.02)
        _shm.reap_abandoned()
        _segments.drain_pool()  # a call's done-callback may give its segment back just after the drain above
    assert not [n for d in directories for n in ours(d)]


@pytest.fixture
def written(monkeypatch) -> list[str]:
    """The argument segments the caller wrote (the pool's feeder thread writes them, in this process)."""
    paths: list[str] = []
    real = _segments.write_segment

    def spy(path: str, buffers: Any, track: bool = True) -> Any:
        paths.append(path)
        return real(path, buffers, track)

    monkeypatch.setattr(_shm, "write_segment", spy)
    return paths


# ------------------------------------------------------------------------------------------ every kernel

BUNDLED = [spec for spec in registered() if spec.fn.__module__.startswith("offload_tuner_kernels.")]


def test_every_bundled_kernel_is_covered():
    assert {spec.fn.__name__ for spec in BUNDLED} >= set(offload_tuner_kernels.__all__)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spec", BUNDLED, ids=lambda s: s.key)
def test_a_bundled_kernel_offloaded_through_segments_equals_inline(pool, written, monkeypatch, mode, spec):
    monkeypatch.setattr(_shm.settings, "min_bytes", 256)  # the samples' arrays at n=64 are 512 bytes and up
    set_executor(pool)
    args = spec.sample(64)
    inline = spec.fn(*args)
    offloaded = call(mode, spec.fn, *args)
    assert same(offloaded, inline)
    large_in = [a for a in arrays_in(args) if a.nbytes >= 256 and a.flags.forc]
    large_out = [a for a in arrays_in(offloaded) if a.nbytes >= 256]
    assert bool(written) == bool(large_in), (written, [a.nbytes for a in large_in])
    assert all(mapped(a) for a in large_out)
    if spec.fn.__name__ == "smooth_frames":  # a big buffer in and out: this one must have exercised both ways
        assert written and large_out


# ------------------------------------------------------------------------------------- values round trip


def _rng() -> np.random.Generator:
    return np.random.default_rng(28)


def _structured() -> np.ndarray:
    out = np.zeros(3000, dtype=[("id", "<i4"), ("score", "<f8"), ("tag", "S3")])
    out["id"] = np.arange(3000)
    out["score"] = _rng().normal(size=3000)
    out["tag"] = b"abc"
    return out


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


VALUES: dict[str, Callable[[], Any]] = {
    "float64": lambda: _rng().normal(size=5000),
    "float32": lambda: _rng().normal(size=5000).astype(np.float32),
    "int8": lambda: _rng().integers(-128, 127, 5000, dtype=np.int8),
    "complex128": lambda: _rng().normal(size=3000) + 1j * _rng().normal(size=3000),
    "bool": lambda: _rng().random(5000) > 0.5,
    "structured": _structured,
    "3d-C": lambda: _rng().normal(size=(10, 20, 30)),
    "3d-Fortran": lambda: np.asfortranarray(_rng().normal(size=(10, 20, 30))),
    "read-only": lambda: _read_only(_rng().normal(size=5000)),
    "bytes": lambda: bytes(range(256)) * 64,
    "bytearray": lambda: bytearray(range(256)) * 64,
    "memoryview-of-bytes": lambda: memoryview(bytes(range(256)) * 64),
    "memoryview-of-bytearray": lambda: memoryview(bytearray(range(256)) * 64),
    "memoryview-double": lambda: memoryview(_rng().normal(size=5000)),
    "memoryview-2d-int32": lambda: memoryview(np.arange(4000, dtype=np.int32).reshape(40, 100)),
    "nested": lambda: {
        "frames": [_rng().normal(size=(50, 40)), (np.arange(2000, dtype=np.int64), "label")],
        "mask": {"deep": _rng().random(4000) > 0.3},
        "n": 7,
    },
}
IN_BAND: dict[str, Callable[[], Any]] = {
    "slice-every-other": lambda: _rng().normal(size=10000)[::2],
    "3d-column-slice": lambda: _rng().normal(size=(10, 20, 30))[:, ::3, :],
    "empty": lambda: np.empty(0),
    "empty-2d": lambda: np.empty((0, 5), dtype=np.float32),
    "0-d": lambda: np.array(3.5),
    "small": lambda: np.arange(10.0),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(VALUES))
def test_a_large_value_goes_out_of_band_and_comes_back_equal(pool, written, mode, name):
    set_executor(pool)
    value = VALUES[name]()
    back = call(mode, echo, value, 7)
    assert same(back, (value, 7))
    assert written, "the argument did not go through a segment"
    assert all(mapped(a) for a in arrays_in(back))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(IN_BAND))
def test_a_non_contiguous_or_small_value_falls_back_in_band(pool, written, mode, name):
    set_executor(pool)
    value = IN_BAND[name]()
    back = call(mode, echo, value)
    assert same(back[0], np.ascontiguousarray(value) if value.ndim and not value.flags.forc else value)
    assert not written  # the argument went in band...
    assert mapped(back[0]) == (back[0].nbytes >= SMALL)  # ...the worker's (contiguous) copy of it may come back out


@pytest.mark.parametrize("mode", MODES)
def test_a_0d_array_goes_out_of_band_when_min_bytes_is_tiny(pool, written, monkeypatch, mode):
    monkeypatch.setattr(_shm.settings, "min_bytes", 1)
    set_executor(pool)
    value = np.array(2.5 + 1j)
    back = call(mode, echo, value, np.empty(0))
    assert same(back, (value, np.empty(0)))
    assert written and mapped(back[0])


@pytest.mark.parametrize("mode", MODES)
def test_writability_arrives_as_pep_574_defines(pool, mode):
    set_executor(pool)
    frozen = _read_only(np.arange(5000.0))
    values = [
        np.arange(5000.0),
        frozen,
        bytes(5000),
        bytearray(5000),
        memoryview(bytes(5000)),
        memoryview(bytearray(5000)),
    ]
    assert call(mode, writable, *values) == [True, False, False, True, False, True]


@pytest.mark.parametrize("mode", MODES)
def test_a_kernel_writing_its_argument_changes_neither_the_callers_array_nor_another_calls(pool, mode):
    set_executor(pool)
    original = np.arange(20000.0)
    shared = original.copy()

    async def both() -> list[Any]:
        return list(await asyncio.gather(*(run_kernel(scribble, shared, 0.2, offload_if=True) for _ in range(2))))

    if mode == "async":
        seen = asyncio.run(both())
    else:
        with ThreadPool(2) as threads:
            seen = threads.map(lambda _: run_kernel_sync(scribble, shared, 0.2, offload_if=True), range(2))
    assert all(np.array_equal(s, original) for s in seen)
    assert np.array_equal(shared, original)
    assert np.array_equal(call(mode, scribble, shared, 0.0), original)


class ThreadPool:
    """A tiny map over threads (concurrent sync callers)."""

    def __init__(self, n: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.executor = ThreadPoolExecutor(n)

    def __enter__(self) -> ThreadPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.executor.shutdown()

    def map(self, fn: Callable[[int], Any], items: range) -> list[Any]:
        return list(self.executor.map(fn, items))


# --------------------------------------------------------------------------- tiny or missing directory


@pytest.mark.parametrize("mode", MODES)
def test_a_missing_directory_sends_everything_in_band_with_one_warning(pool, written, monkeypatch, tmp_path, mode):
    monkeypatch.setattr(_shm.settings, "directory", str(tmp_path / "no-such-dir"))
    set_executor(pool)
    values = (np.arange(5000.0), _read_only(np.arange(3000.0)), bytearray(4000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert same(call(mode, echo, *values), values)
        assert call(mode, writable, *values) == [True, False, True]  # in band keeps PEP 574's writability
    assert not written
    assert len(shm_warnings(caught)) == 1, [str(w.message) for w in caught]


@pytest.mark.parametrize("mode", MODES)
def test_a_full_directory_falls_back_in_band_with_one_warning(pool, written, monkeypatch, mode):
    """ENOSPC on every argument write (the feeder thread's): correct results, one warning for all calls."""

    def full(fd: int, buffers: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_segments, "_write_all", full)
    set_executor(pool)
    values = (np.arange(5000.0), _read_only(np.arange(3000.0)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert same(call(mode, echo, *values), values)
        assert call(mode, writable, *values) == [True, False]
    assert written  # tried, failed, left nothing (the autouse fixture checks)
    assert len(shm_warnings(caught)) == 1


TINY_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, warnings
    import numpy as np
    import offload_tuner
    from offload_tuner import run_kernel_sync, set_executor
    from offload_tuner.runtime import _shm
    from tests.test_shm_transport import echo, mapped

    def main():
        _shm.settings.directory = sys.argv[1]
        _shm.settings.min_bytes = 4096
        pool = offload_tuner.recommended_pool(1)
        set_executor(pool)
        big, fits = np.arange(4 << 17, dtype=np.float64), np.arange(1 << 14, dtype=np.float64)  # 4 MiB, 128 KiB
        report = {"equal": [], "mapped": []}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for value in (big, fits, big, fits):
                back = run_kernel_sync(echo, value, offload_if=True)[0]
                report["equal"].append(bool(np.array_equal(back, value)))
                report["mapped"].append(mapped(back))
        report["warnings"] = [str(w.message) for w in caught]
        set_executor(None)
        pool.shutdown()
        report["left"] = sorted(n for n in os.listdir(sys.argv[1]) if not n.endswith("-owner"))
        print(json.dumps(report))

    if __name__ == "__main__":
        main()
    """
)


def test_a_real_one_megabyte_tmpfs_keeps_small_buffers_out_of_band_and_large_ones_in_band(tmp_path):
    """A real tmpfs of 1 MiB (in a user and mount namespace of its own, where the platform allows one)."""
    import json

    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    mount = tmp_path / "tiny"
    mount.mkdir()
    script = tmp_path / "tiny.py"
    script.write_text(TINY_SCRIPT)
    inner = f"mount -t tmpfs -o size=1m tmpfs {mount} && exec {sys.executable} {script} {mount}"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mount}"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OFFLOAD_TUNER_PROFILE": str(tmp_path / "none.json")}
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", inner],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["equal"] == [True] * 4
    assert report["mapped"] == [False, True, False, True]  # 4 MiB does not fit: in band; 128 KiB does
    assert len([w for w in report["warnings"] if UNAVAILABLE in w]) == 1, report["warnings"]
    assert report["left"] == []


# -------------------------------------------------------------------------- the transport's own edges


def test_a_fortran_or_odd_format_memoryview_is_never_rebuilt_wrong():
    """``memoryview.cast`` rebuilds C order in native single-character formats only: anything else stays as it is
    (unpicklable: such a call runs inline), never transposed or unloadable in the worker."""
    fortran = memoryview(np.asfortranarray(np.arange(6000.0).reshape(60, 100)))
    big_endian = memoryview(np.arange(5000, dtype=">f8"))
    structured = memoryview(_structured())
    for view in (fortran, big_endian, structured):
        assert _shm.mark_large(view, 1) is view
    c_order = memoryview(np.arange(6000.0).reshape(60, 100))
    marked = _shm.mark_large(c_order, 1)
    assert marked is not c_order
    assert pickle.loads(pickle.dumps(marked, protocol=5)).tolist() == c_order.tolist()


@pytest.mark.parametrize("mode", MODES)
def test_a_fortran_memoryview_argument_runs_inline_and_equal(pool, mode):
    set_executor(pool)
    fortran = memoryview(np.asfortranarray(np.arange(6000.0).reshape(60, 100)))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        back = call(mode, echo, fortran)[0]
    assert back.tolist() == fortran.tolist()


def test_no_empty_buffer_ever_goes_out_of_band():
    _, buffers = _shm.dumps_out_of_band((np.empty(0), np.empty((0, 3))), 0)
    assert buffers == []


def test_a_result_the_worker_cannot_write_comes_back_in_band_with_its_type(tmp_path):
    """The worker's in-band fallback keeps what went out of band: a memoryview (unpicklable in band), writability."""
    frozen = _read_only(np.arange(3000.0))
    result = (memoryview(bytearray(5000)), np.arange(4000.0), frozen)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packet = _shm._result_packet(result, str(tmp_path / "missing" / "x-r"), 1)
        back = _shm.decode_result(packet)
    assert same(back, result)
    assert len(shm_warnings(caught)) == 1


def test_a_worker_never_tracks_its_callers_result_segment(tmp_path):
    """A worker exiting through atexit (spawn) must not remove a result its caller has not mapped yet."""
    path = str(tmp_path / f"{_shm.PREFIX}{_segments.owner_tag()}-9r")
    packet = _shm._result_packet(np.arange(4000.0), path, 1)
    assert os.path.exists(path) and path not in _segments.outstanding
    assert np.array_equal(_shm.decode_result(packet), np.arange(4000.0))
    assert not os.path.exists(path)


def test_small_results_do_not_grow_the_exit_list(pool):
    set_executor(pool)
    before = len(_segments.outstanding)
    for _ in range(20):
        run_kernel_sync(echo, 1, offload_if=True)
    assert len(_segments.outstanding) == before


def test_a_send_and_a_release_never_leave_a_segment_whatever_their_order(tmp_path):
    """The feeder thread's send (``__reduce__``) races the done-callback's release (a broken pool): the lock
    orders them, so a segment written is always removed, and one released is never written."""
    data = [memoryview(bytearray(4096))]
    late = _shm.PendingSegment(str(tmp_path / "late-a"), list(data))
    late.release()
    assert pickle.loads(pickle.dumps(late)) == []  # released first: nothing written, nothing sent
    assert not os.listdir(tmp_path)
    for i in range(200):
        pending = _shm.PendingSegment(str(tmp_path / f"race-{i}-a"), list(data))
        barrier = threading.Barrier(2)

        def send(p: _shm.PendingSegment = pending, b: threading.Barrier = barrier) -> None:
            b.wait()
            pickle.dumps(p)

        sender = threading.Thread(target=send)
        sender.start()
        barrier.wait()
        pending.release()
        sender.join()
    assert not os.listdir(tmp_path)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_segment_io_leaks_no_descriptor_and_no_file_whatever_fails(tmp_path):
    before = _open_fds()
    good = [memoryview(bytearray(b"x" * 5000)), memoryview(np.arange(100.0))]
    for i in range(50):
        path = str(tmp_path / f"s{i}")
        layout = _segments.write_segment(path, good)
        views = _segments.map_segment(path, layout)
        assert bytes(views[0]) == b"x" * 5000
        del views
        _segments.unlink(path)
        with pytest.raises(_segments.SegmentUnavailable):
            _segments.write_segment(str(tmp_path / "missing" / f"s{i}"), good)
        with pytest.raises(FileNotFoundError):
            _segments.map_segment(str(tmp_path / f"gone{i}"), layout)
        with pytest.raises(BufferError):  # a buffer that cannot be written (not contiguous) fails mid-way
            _segments.write_segment(path, [good[0], memoryview(bytearray(100))[::2]])
    assert _open_fds() == before
    assert not os.listdir(tmp_path)


def test_a_segment_shorter_than_its_layout_is_refused_not_mapped(tmp_path):
    """Mapping past a file's end and touching it would be SIGBUS; a short or empty file is refused first."""
    path = str(tmp_path / "short")
    layout = _segments.write_segment(path, [memoryview(bytearray(10000))], track=False)
    os.truncate(path, 5000)
    with pytest.raises(_segments.SegmentUnavailable):
        _segments.map_segment(path, layout)
    os.truncate(path, 0)
    with pytest.raises(_segments.SegmentUnavailable):
        _segments.map_segment(path, layout)


def test_a_forked_child_names_its_own_segments_and_never_removes_its_parents(tmp_path):
    """A child forked mid-call (a prefork server) that exits normally runs atexit: it must leave the parent's
    in-flight segments alone, and name its own after itself."""
    directory = str(tmp_path)
    stem = _segments.call_stem(directory)
    assert _segments.holds_lock(os.path.dirname(stem))
    path = stem + "a"
    _segments.write_segment(path, [memoryview(bytearray(5000))])
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            child_stem = _segments.call_stem(directory)
            _segments._unlink_outstanding()  # what its atexit does
            os.write(write, f"{_segments.owner_tag()}|{child_stem}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        tag, child_stem = pipe.read().split("|")
    os.waitpid(child, 0)
    assert tag.startswith(f"{child}-") and tag != _segments.owner_tag()
    assert os.path.basename(child_stem).startswith(f"{_shm.PREFIX}{tag}-")
    mine = f"{_shm.PREFIX}{_segments.owner_tag()}{_segments.OWNER_SUFFIX}"
    assert sorted(os.listdir(directory)) == sorted([os.path.basename(path), mine])  # the child took only its own
    assert _shm.sweep_orphans(directory) == []
    _segments.unlink(path)


def test_a_profile_sets_min_bytes_unless_the_environment_pinned_it(monkeypatch):
    for name in ("min_bytes", "pinned", "enabled"):
        monkeypatch.setattr(_shm.settings, name, getattr(_shm.settings, name))
    monkeypatch.setattr(_shm.settings, "pinned", False)
    _shm.apply_calibrated(65536)
    assert _shm.settings.min_bytes == 65536
    _shm.apply_calibrated(None)  # calibration found shared memory never pays: nothing goes out of band
    assert _shm.settings.min_bytes == _shm.NEVER
    _shm.apply_calibrated("junk")  # type: ignore[arg-type]
    assert _shm.settings.min_bytes == _shm.DEFAULT_MIN_BYTES
    monkeypatch.setenv("OFFLOAD_TUNER_SHM", "4096")
    _shm.configure_from_environment()
    _shm.apply_calibrated(65536)
    assert (_shm.settings.min_bytes, _shm.settings.pinned) == (4096, True)


def test_only_a_broken_pool_keeps_an_abandoned_result_for_the_grace_period(tmp_path, monkeypatch):
    """A result can arrive after its future failed only when the pool broke (its workers are terminated after the
    futures fail); a finished or cancelled call's segment is removed once, and nothing is retried for it."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    monkeypatch.setattr(_segments, "abandoned", {})
    endings = {"value": None, "raised": ValueError("kernel"), "cancelled": "cancel", "broken": BrokenProcessPool("x")}
    for name, ending in endings.items():
        path = str(tmp_path / f"{name}-r")
        Path(path).write_bytes(b"x")
        future: Future[Any] = Future()
        _shm.abandon(future, (b"", None, path, SMALL, None))
        if ending == "cancel":
            future.cancel()
        elif isinstance(ending, BaseException):
            future.set_exception(ending)
        else:
            future.set_result(ending)
        assert not os.path.exists(path)
    assert list(_segments.abandoned) == [str(tmp_path / "broken-r")]
    Path(tmp_path / "broken-r").write_bytes(b"late")  # a terminated worker's late write
    _shm.reap_abandoned()
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------ argument segments reused

_kept: list[np.ndarray] = []


def total(a: np.ndarray) -> float:
    return float(a.sum())


def keep(a: np.ndarray) -> float:
    """A kernel that keeps a reference to its argument (a cache, a careless global) past its return."""
    _kept.append(a)
    return float(a.sum())


def kept_total() -> float:
    return float(_kept[-1].sum())


@pytest.fixture
def rewritten(monkeypatch) -> list[str]:
    """The argument segments written again for another call."""
    paths: list[str] = []
    real = _segments.rewrite_segment

    def spy(path: str, buffers: Any) -> Any:
        paths.append(path)
        return real(path, buffers)

    monkeypatch.setattr(_segments, "rewrite_segment", spy)
    return paths


@pytest.mark.parametrize("mode", MODES)
def test_an_argument_segment_is_written_again_once_its_reader_let_go_of_it(pool, written, rewritten, mode):
    """Writing into a file whose pages tmpfs holds already skips allocating and zeroing them; every call still
    reads its own arguments."""
    set_executor(pool)
    arrays = [np.full(4096, float(i)) for i in range(6)]
    assert [call(mode, total, a) for a in arrays] == [4096.0 * i for i in range(6)]
    assert len(written) + len(rewritten) == 6
    assert rewritten and set(rewritten) <= set(written)  # the reused files are earlier calls' own
    assert len(ours(_shm.SHM_DIR)) <= 2  # the free ones (the calls ran one at a time, each on one worker)


def test_a_kernel_that_keeps_its_argument_keeps_that_segment_out_of_reuse(written, rewritten):
    """Its worker cannot unmap the arguments, so the caller never writes that file again: what the kernel kept
    stays what it was given, whatever later calls send."""
    from offload_tuner import recommended_pool

    single = recommended_pool(1)
    try:
        set_executor(single)
        first = np.full(4096, 1.0)
        assert run_kernel_sync(keep, first, offload_if=True) == 4096.0
        for i in range(2, 6):
            assert run_kernel_sync(total, np.full(4096, float(i)), offload_if=True) == 4096.0 * i
        assert run_kernel_sync(kept_total, offload_if=True) == 4096.0  # not one of the later calls' values
        assert written[0] not in rewritten
        assert rewritten  # the later calls did reuse each other's
    finally:
        set_executor(None)
        single.shutdown(wait=True)


def test_reuse_keeps_at_most_its_share_of_the_directory(tmp_path, monkeypatch):
    """Free segments are bounded by POOL_BYTES and by a sixteenth of the file system; the rest are unlinked."""
    monkeypatch.setattr(_segments, "_free", [])
    monkeypatch.setattr(_segments, "POOL_BYTES", 3 * 8192)
    paths = []
    for i in range(5):
        path = str(tmp_path / f"seg-{i}")
        Path(path).write_bytes(b"\0" * 8192)
        paths.append(path)
        _segments.give_back(path, 8192)
    assert sorted(p for _, p in _segments._free) == paths[:3]
    assert sorted(os.listdir(tmp_path)) == ["seg-0", "seg-1", "seg-2"]
    assert _segments.take_reusable(str(tmp_path), 100_000) is None  # too large for any
    assert _segments.take_reusable(str(tmp_path), 1000) is None  # would waste more than 4x
    assert _segments.take_reusable(str(tmp_path / "elsewhere"), 8000) is None  # another directory
    taken = _segments.take_reusable(str(tmp_path), 8000)
    assert taken == (paths[0], 8192)
    assert sorted(p for _, p in _segments._free) == paths[1:3]  # the taker's alone now
    _segments.give_back(*taken)  # its call is over
    _segments.drain_pool()
    assert os.listdir(tmp_path) == []


def test_a_second_release_neither_pools_nor_unlinks_again(tmp_path, monkeypatch):
    """Released twice (a done-callback and a shutdown sweep): the second must not touch a segment another call
    may have taken from the pool since."""
    monkeypatch.setattr(_segments, "_free", [])
    pending = _shm.PendingSegment(str(tmp_path / "twice-a"), [memoryview(bytearray(8192))])
    pickle.dumps(pending)  # sent: the segment is written
    written = pending.path
    assert os.path.exists(written)
    pending.release(reusable=True)
    assert [p for _, p in _segments._free] == [written]
    taken = _segments.take_reusable(str(tmp_path), 8192)  # another call takes it
    assert taken is not None and taken[0] == written
    pending.release(reusable=False)  # a late second release
    assert os.path.exists(written)  # still the other call's
    assert _segments._free == []
    _segments.give_back(*taken)
    _segments.drain_pool()
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_releasing_its_parents_call_leaves_the_segment_to_the_parent(tmp_path, monkeypatch):
    """A child forked while a call is pending holds a copy of its PendingSegment: releasing it there must
    neither unlink the parent's segment nor put it in the child's pool, whatever ``reusable`` says."""
    monkeypatch.setattr(_segments, "_free", [])
    pending = _shm.PendingSegment(str(tmp_path / "forked-a"), [memoryview(bytearray(8192))])
    pickle.dumps(pending)
    written = pending.path

    def in_child() -> str:
        pending.release(reusable=True)
        pooled = len(_segments._free)
        pending.release(reusable=False)
        return f"{pooled} {int(os.path.exists(written))}"

    assert in_forked_child(in_child) == "0 1"  # nothing pooled in the child; the file still there when it left
    assert os.path.exists(written)
    assert not pending.released  # the parent's own release is still to come
    pending.release(reusable=False)
    assert not os.path.exists(written)


def test_a_forked_child_abandoning_its_parents_call_leaves_the_result_segment(tmp_path):
    """A coroutine copied into a forked child and closed there abandons its call: the result segment it names is
    the parent's, which still waits for it; the child's own abandoned calls are removed as before."""
    from concurrent.futures import Future

    directory = str(tmp_path)
    packet = _shm.encode_call(len, (b"x",), _segments.call_stem(directory), 1 << 20)
    result_path = packet[2]
    with open(result_path, "wb") as out:  # as if the worker had written the result already
        out.write(b"r" * 4096)
    done: Future[object] = Future()
    done.set_result(None)

    def in_child() -> str:  # abandon the parent's call, then one of its own; report what is left
        _shm.abandon(done, packet)
        _shm.abandon(None, packet)
        own = _shm.encode_call(len, (b"x",), _segments.call_stem(directory), 1 << 20)
        with open(own[2], "wb") as out:
            out.write(b"c")
        _shm.abandon(done, own)
        return f"{int(os.path.exists(result_path))} {int(os.path.exists(own[2]))}"

    assert in_forked_child(in_child) == "1 0"  # the parent's result kept, the child's own removed
    _shm.abandon(done, packet)  # the parent's own abandon still removes it
    assert not os.path.exists(result_path)


def in_forked_child(action: Callable[[], str]) -> str:
    """What ``action`` returns in a forked child (or the error it raised), the child leaving without running the
    parent's atexit."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            report = action()
        except BaseException as exc:
            report = f"error {exc!r}"
        os.write(write, report.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    return report
