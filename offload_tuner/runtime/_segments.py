"""The files behind :mod:`_shm`: shared-memory segments named, written, mapped, unlinked and swept.

A segment is a plain file ``offload-tuner-<pid>-<start>-<seq><a|r>`` in a shared-memory directory, named after
the *calling* process (its pid and start time). Everything here takes full paths: the caller reads the directory
(``_shm.settings.directory``, ``/dev/shm`` by default) once per call, and the call's paths travel in its packet,
so a worker (another process, started however the pool starts them) writes its result where its caller reads
it, and a test or a service can point the transport elsewhere without telling the workers.

Liveness: a calling process holds an exclusive ``flock`` on ``offload-tuner-<pid>-<start>-owner`` in each
directory it names segments in, taken before its first segment name there exists and kept until it exits (the
kernel drops it however the process dies). :func:`sweep_orphans` removes an owner's files only when the owner is
provably gone: no process with that pid and start time runs here (``/proc``) *and* nobody holds its owner lock.
The lock keeps the segments of a live process in another pid namespace (containers sharing the host's
``/dev/shm``, ``--ipc=host``), whose pid means nothing here, and a recycled pid never passes for the owner.

Mappings are private (copy-on-write) and cover the whole file, which is never truncated; a segment is fully
written before its name is sent and has no page-sized hole (buffers are at most ``ALIGN - 1`` bytes apart), so
reading a mapping cannot fault on a missing page (no ``SIGBUS``), even with the directory full.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import itertools
import mmap
import os
import threading
import time
from collections.abc import Iterable

SHM_DIR = "/dev/shm"
PREFIX = "offload-tuner-"
OWNER_SUFFIX = "-owner"
ALIGN = 64
"""Each buffer starts on a cache-line boundary, so numpy views of it are aligned for every dtype."""
_MAX_WRITE = 1 << 30  # Linux writes at most ~2 GiB per call
_RETRY_LOCK_S = 1.0
"""How long a directory where the owner lock could not be taken is left alone before the next try."""
ABANDON_GRACE_S = 5.0


class SegmentUnavailable(OSError):
    """A segment could not be created (no such directory, too small, full): the call goes in band."""


def start_ticks(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22): with the pid, it names
    one process for good, so a recycled pid is never mistaken for a segment's live owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def _tag_of(pid: int) -> str:
    return f"{pid}-{start_ticks(pid) or 0}"


_owner = _tag_of(os.getpid())
_sequence = itertools.count()
_guard = threading.Lock()
_locks: dict[str, int] = {}
"""Directory -> the open file holding this process's owner lock there."""
_lock_failed: dict[str, float] = {}
outstanding: set[str] = set()
"""Paths this process named (argument segments written, result segments asked for) and has not unlinked yet:
removed at exit whatever happened (the pools' threads have been joined by then, so no worker writes one later)."""
abandoned: dict[str, float] = {}
"""Result segments of calls nobody waits for any more, unlinked again until their deadline: a worker being
terminated with its broken pool can still write one just after the call's future completed."""
swept: set[str] = set()
"""The directories this process swept for orphans (once each)."""


def owner_tag() -> str:
    """``<pid>-<start>`` of this process: the middle of its segments' names."""
    return _owner


def foreign(path: str) -> bool:
    """Whether ``path`` names a segment of another process's calls (our naming, another owner): a forked child
    copies its parent's calls in flight (a coroutine closed in the child abandons one), and must leave their files
    to the parent, which still waits for them."""
    name = os.path.basename(path)
    return name.startswith(PREFIX) and not name.startswith(f"{PREFIX}{_owner}-")


def _after_fork_in_child() -> None:
    """A forked child names its own segments, holds its own locks, and leaves its parent's files alone."""
    global _owner, _guard, _free_lock
    _owner = _tag_of(os.getpid())
    _guard = threading.Lock()
    _free_lock = threading.Lock()  # a thread of the parent may have held it at the fork
    for fd in _locks.values():
        try:
            os.close(fd)  # the parent's lock stays: it holds the same open file
        except OSError:
            pass
    _locks.clear()
    _stems.clear()
    _free.clear()
    _lock_failed.clear()
    outstanding.clear()
    abandoned.clear()
    swept.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def call_stem(directory: str) -> str:
    """The path stem of a new call's segments in ``directory`` (``<stem>a`` its arguments, ``<stem>r`` its
    result), taking this process's owner lock there first if it holds none yet. Only write segments under it if
    :func:`holds_lock` says so (else the directory is unusable: missing, full, read-only)."""
    prefix = _stems.get(directory)
    if prefix is None:
        if directory not in _locks:
            _lock_owner(directory)
        prefix = os.path.join(directory, f"{PREFIX}{_owner}-")
        if directory in _locks:  # cached once the lock is held; until then every call tries again (rate-limited)
            _stems[directory] = prefix
    return f"{prefix}{next(_sequence)}"


_stems: dict[str, str] = {}
"""Directory -> this process's name prefix there (the stem without its sequence number)."""


def holds_lock(directory: str) -> bool:
    """Whether this process holds its owner lock in ``directory``: only then may segments be named there."""
    return directory in _locks


def _lock_owner(directory: str) -> bool:
    """Take this process's owner lock in ``directory``. The file appears under its name already locked (made
    under a name no sweep reads, locked, then renamed), so no sweep ever sees it unlocked while we live."""
    with _guard:
        if directory in _locks:
            return True
        if time.monotonic() < _lock_failed.get(directory, 0.0):
            return False
        final = os.path.join(directory, f"{PREFIX}{_owner}{OWNER_SUFFIX}")
        scratch = os.path.join(directory, f".{PREFIX}{_owner}-{os.urandom(4).hex()}")
        try:
            fd = os.open(scratch, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            _lock_failed[directory] = time.monotonic() + _RETRY_LOCK_S
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(scratch, final)
        except OSError:
            os.close(fd)
            _remove(scratch)
            _lock_failed[directory] = time.monotonic() + _RETRY_LOCK_S
            return False
        _locks[directory] = fd
        return True


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
    except OSError:  # gone already, or a directory gone or read-only: nothing of ours can remain there
        return False
    return True


def unlink(path: str) -> bool:
    """Remove a segment if it exists (idempotent: the caller and a done-callback may both try)."""
    outstanding.discard(path)
    return _remove(path)


def forget(path: str) -> None:
    """A result segment name that was never written (the result was small): nothing to unlink at exit."""
    outstanding.discard(path)


@atexit.register
def _unlink_outstanding() -> None:
    for path in [*outstanding.copy(), *abandoned.copy()]:
        unlink(path)
    for directory, fd in list(_locks.items()):
        _remove(os.path.join(directory, f"{PREFIX}{_owner}{OWNER_SUFFIX}"))
        os.close(fd)
    _locks.clear()


# ------------------------------------------------------------------------------------------------ segments


def write_segment(path: str, buffers: Iterable[memoryview], track: bool = True) -> tuple[tuple[int, int], ...]:
    """Write ``buffers`` one after another (aligned) into a new segment; returns each one's (offset, length).
    ``os.pwrite`` releases the GIL while the kernel copies, so other threads (the event loop) keep running.
    ``track``: the segment is this process's to remove at exit (a worker writing its caller's result does not
    track it: the caller removes it). A failed write leaves no file and no open descriptor."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SegmentUnavailable(exc.errno, f"cannot create {path}: {exc.strerror}") from None
    if track:
        outstanding.add(path)
    try:
        return _write_all(fd, buffers)
    except OSError as exc:  # ENOSPC: the directory is full or smaller than the payload
        unlink(path)
        raise SegmentUnavailable(exc.errno, f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        unlink(path)
        raise
    finally:
        os.close(fd)


def _write_all(fd: int, buffers: Iterable[memoryview]) -> tuple[tuple[int, int], ...]:
    layout = []
    offset = 0
    for buffer in buffers:
        offset += -offset % ALIGN
        view = buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer
        layout.append((offset, view.nbytes))
        done = 0
        while done < view.nbytes:
            wrote = os.pwrite(fd, view[done : done + _MAX_WRITE], offset + done)
            if wrote <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += wrote
        offset += view.nbytes
    return tuple(layout)


def map_segment(path: str, layout: Iterable[tuple[int, int]]) -> list[memoryview]:
    """Views of a segment's buffers, mapped private (copy-on-write): writing to one never reaches the segment.
    The descriptor is closed at once; the mapping lives as long as the last view of it."""
    return map_closable(path, layout)[1]


def map_closable(path: str, layout: Iterable[tuple[int, int]]) -> tuple[mmap.mmap, list[memoryview]]:
    """:func:`map_segment`, with the mapping, for a reader that must know it let go of it (:func:`close_mapping`)."""
    spans = tuple(layout)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        end = max((offset + length for offset, length in spans), default=0)
        if end > size or size == 0:  # never map past the end of a file: touching that page would be SIGBUS
            raise SegmentUnavailable(errno.EINVAL, f"{path} holds {size} bytes, its layout needs {end}")
        mapped = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    whole = memoryview(mapped)  # the views keep the mapping alive; it is unmapped with the last of them
    return mapped, [whole[offset : offset + length] for offset, length in spans]


def close_mapping(mapped: mmap.mmap) -> bool:
    """Unmap now; False when a view of it is still alive (a kernel kept a reference to its argument), in which
    case the mapping stays and its file must never be written again."""
    try:
        mapped.close()
    except BufferError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- reuse

POOL_BYTES = 64 << 20
"""Argument segments kept for reuse, at most this many bytes per process: writing into a file whose pages
tmpfs already holds skips allocating and zeroing them (about 40% of an 8 MB write here) and freeing them after."""
_free: list[tuple[int, str]] = []
"""(capacity, path) of argument segments no reader maps any more, ready to be written again."""
_free_lock = threading.Lock()


def segment_bytes(buffers: Iterable[memoryview]) -> int:
    """The size of the file that holds ``buffers`` as :func:`write_segment` lays them out."""
    end = 0
    for buffer in buffers:
        end += -end % ALIGN
        end += buffer.nbytes
    return end


def take_reusable(directory: str, nbytes: int) -> tuple[str, int] | None:
    """A free argument segment in ``directory`` that holds ``nbytes`` without wasting more than 4x: (path, its
    capacity), now the caller's alone; None when there is none."""
    with _free_lock:
        best = None
        for index, (capacity, path) in enumerate(_free):
            fits = nbytes <= capacity <= 4 * nbytes and os.path.dirname(path) == directory
            if fits and (best is None or capacity < _free[best][0]):
                best = index
        return None if best is None else _free.pop(best)[::-1]


def _pool_limit(path: str) -> int:
    """:data:`POOL_BYTES`, or a sixteenth of the file system holding ``path`` if that is less: a small
    ``/dev/shm`` (Docker's 64 MB) is left to the calls that need it."""
    try:
        stat = os.statvfs(os.path.dirname(path))
    except OSError:
        return 0
    return min(POOL_BYTES, stat.f_frsize * stat.f_blocks // 16)


def give_back(path: str, capacity: int) -> None:
    """An argument segment whose reader unmapped it: kept for the next call, or unlinked past :data:`POOL_BYTES`."""
    with _free_lock:
        if sum(c for c, _ in _free) + capacity <= _pool_limit(path):
            _free.append((capacity, path))
            return
    unlink(path)


def drain_pool() -> None:
    """Unlink every free argument segment (they are otherwise kept until the process exits)."""
    with _free_lock:
        free, _free[:] = list(_free), []
    for _, path in free:
        unlink(path)


def rewrite_segment(path: str, buffers: Iterable[memoryview]) -> tuple[tuple[int, int], ...]:
    """Write ``buffers`` into a reused segment (it is at least as large; bytes past the layout are never read)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SegmentUnavailable(exc.errno, f"cannot reopen {path}: {exc.strerror}") from None
    try:
        return _write_all(fd, buffers)
    except OSError as exc:
        unlink(path)
        raise SegmentUnavailable(exc.errno, f"cannot write {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- abandoned ones


def abandon(path: str) -> None:
    """Unlink a result segment again on every :func:`reap_abandoned` for :data:`ABANDON_GRACE_S` seconds."""
    abandoned[path] = time.monotonic() + ABANDON_GRACE_S


def reap_abandoned() -> None:
    """Unlink abandoned result segments again; forget those past their grace period."""
    now = time.monotonic()
    for path, deadline in list(abandoned.items()):
        unlink(path)
        if now > deadline:
            abandoned.pop(path, None)


# ------------------------------------------------------------------------------------------------ orphans


def _owner_of(name: str) -> str | None:
    """``<pid>-<start>`` of a segment or owner-lock name of ours, else None."""
    if not name.startswith(PREFIX):
        return None
    parts = name[len(PREFIX) :].split("-")
    if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return f"{parts[0]}-{parts[1]}"


def _lock_held(path: str) -> bool:
    """Whether a live process holds the owner lock at ``path`` (True when it cannot be told: keep its files)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # another user's: not ours to judge (nor to remove)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # drops our probe's lock
    return False


def owner_gone(owner: str, directory: str) -> bool:
    """Whether the process ``<pid>-<start>`` is gone for good: not running here, and its owner lock free."""
    if owner == _owner:
        return False
    pid, start = owner.split("-")
    if start_ticks(int(pid)) == start:
        return False  # runs in our pid namespace
    return not _lock_held(os.path.join(directory, f"{PREFIX}{owner}{OWNER_SUFFIX}"))


def sweep_orphans(directory: str) -> list[str]:
    """Remove the segments (and owner locks) of processes that are gone (a service killed mid-call); returns
    the names removed. Never touches a live process's files, whatever its pid namespace."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    verdicts: dict[str, bool] = {}
    locks: list[str] = []
    removed: list[str] = []
    for name in names:
        owner = _owner_of(name)
        if owner is None:
            continue
        if owner not in verdicts:
            verdicts[owner] = owner_gone(owner, directory)
        if not verdicts[owner]:
            continue
        if name.endswith(OWNER_SUFFIX):
            locks.append(name)  # last: while it exists, a concurrent sweep still judges its owner the same way
        elif _remove(os.path.join(directory, name)):
            removed.append(name)
    removed += [name for name in locks if _remove(os.path.join(directory, name))]
    return removed


def sweep_once(directory: str) -> None:
    """:func:`sweep_orphans` the first time this process uses ``directory``."""
    if directory not in swept:
        swept.add(directory)
        sweep_orphans(directory)
