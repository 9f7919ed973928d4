"""The production path: decisions, overrides, fallbacks, and where calls actually run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import warnings

import pytest

import offload_tuner
from offload_tuner import (
    KernelSizeError,
    OffloadTunerWarning,
    decide,
    kernel,
    load_profile,
    run_kernel,
    run_kernel_sync,
    set_executor,
)
from offload_tuner.runtime._registry import kernel_key
from tests import support
from tests.support import write_profile_json

TOTAL = kernel_key(support.total)
WHERE = kernel_key(support.where)


def run(coro):
    return asyncio.run(coro)


def offload_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, OffloadTunerWarning)]


def test_no_executor_runs_inline_even_when_caller_asks_to_offload():
    assert run(run_kernel(support.where, [1, 2], offload_if=True)) == os.getpid()
    d = decide(support.where, [1, 2])
    assert (d.offload, d.backend, d.size) == (False, "inline", 2)
    assert "no executor" in d.reason


def test_offload_if_overrides_in_both_directions(pool, tmp_path):
    set_executor(pool)
    # A profile that says "always offload" must not beat the caller's False, and "never" not beat True.
    load_profile(write_profile_json(tmp_path / "p.json", {WHERE: 0}))
    assert run(run_kernel(support.where, [1], offload_if=False)) == os.getpid()
    load_profile(write_profile_json(tmp_path / "q.json", {WHERE: None}))
    assert run(run_kernel(support.where, [1], offload_if=True)) != os.getpid()
    assert run_kernel_sync(support.where, [1], offload_if=True) != os.getpid()
    assert run_kernel_sync(support.where, [1], offload_if=False) == os.getpid()


def test_profile_decides_on_both_sides_of_the_threshold(pool, tmp_path):
    set_executor(pool)
    load_profile(write_profile_json(tmp_path / "p.json", {WHERE: 10}))
    below, at = [0] * 9, [0] * 10
    assert run(run_kernel(support.where, below)) == os.getpid()
    assert run(run_kernel(support.where, at)) != os.getpid()
    assert run_kernel_sync(support.where, below) == os.getpid()
    assert run_kernel_sync(support.where, at) != os.getpid()
    d_below, d_at = decide(support.where, below), decide(support.where, at)
    assert (d_below.offload, d_below.backend, d_below.threshold, d_below.size) == (False, "inline", 10, 9)
    assert (d_at.offload, d_at.backend, d_at.threshold, d_at.size) == (True, "process", 10, 10)
    assert "size 10 >= threshold 10" in d_at.reason
    assert d_at.kernel == WHERE


def test_null_threshold_never_offloads_and_zero_always_does(pool, tmp_path):
    set_executor(pool)
    load_profile(write_profile_json(tmp_path / "p.json", {WHERE: None, TOTAL: 0}))
    assert run(run_kernel(support.where, list(range(100_000)))) == os.getpid()
    assert decide(support.where, [0] * 100_000).offload is False
    assert decide(support.total, []).offload is True
    assert run(run_kernel(support.total, [])) == 0


def test_offloaded_result_equals_inline(pool):
    set_executor(pool)
    xs = list(range(1000))
    assert run(run_kernel(support.total, xs, offload_if=True)) == support.total(xs)


def test_kernel_exception_keeps_type_and_message_when_offloaded(pool):
    set_executor(pool)
    with pytest.raises(ValueError, match="bad input of length 3") as inline:
        support.fails([1, 2, 3])
    with pytest.raises(ValueError, match="bad input of length 3") as offloaded:
        run(run_kernel(support.fails, [1, 2, 3], offload_if=True))
    assert type(offloaded.value) is type(inline.value)
    with pytest.raises(ValueError, match="bad input of length 3"):
        run_kernel_sync(support.fails, [1, 2, 3], offload_if=True)


def test_unpicklable_arguments_run_inline_with_one_warning(pool):
    set_executor(pool)
    args = [threading.Lock(), threading.Lock()]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run(run_kernel(support.where, args, offload_if=True)) == os.getpid()
        assert run(run_kernel(support.where, args, offload_if=True)) == os.getpid()
    messages = offload_warnings(record)
    assert len(messages) == 1 and "cannot be pickled" in messages[0] and "where" in messages[0]


def test_unpicklable_result_is_recomputed_inline_with_one_warning(pool):
    set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = run(run_kernel(support.returns_lock, [1], offload_if=True))
        run_kernel_sync(support.returns_lock, [1], offload_if=True)
    assert hasattr(result, "acquire")
    messages = offload_warnings(record)
    assert len(messages) == 1 and "result of returns_lock cannot be pickled" in messages[0]


def test_a_call_the_worker_cannot_load_runs_inline_with_one_warning_not_as_the_kernels_error(pool):
    """A worker whose environment lacks a module the arguments need (a ModuleNotFoundError while unpickling): the
    kernel did not fail, so the caller gets its result, computed here."""
    set_executor(pool)
    args = [support.Unloadable()]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run(run_kernel(support.where, args, offload_if=True)) == os.getpid()
        assert run_kernel_sync(support.where, args, offload_if=True) == os.getpid()
    messages = offload_warnings(record)
    assert len(messages) == 1 and "could not load a call of where" in messages[0]
    assert "gone_from_the_workers" in messages[0]


@pytest.mark.parametrize("fn, expected", [(support.negative_size, "returned -1"), (support.junk_size, "'many'")])
def test_junk_size_raises_a_clear_error_naming_the_kernel(pool, tmp_path, fn, expected):
    set_executor(pool)
    load_profile(write_profile_json(tmp_path / "p.json", {kernel_key(fn): 5}))
    with pytest.raises(KernelSizeError, match=expected) as info:
        run(run_kernel(fn, [1, 2]))
    assert kernel_key(fn) in str(info.value)
    with pytest.raises(KernelSizeError, match=kernel_key(fn)):
        decide(fn, [1, 2])


class _BadLen:
    def __len__(self) -> int:
        raise RuntimeError("no length today")


@pytest.mark.parametrize("args, expected", [((), "IndexError"), ((5,), "TypeError"), ((_BadLen(),), "no length")])
def test_the_default_size_fails_with_a_clear_error_naming_the_kernel(pool, tmp_path, args, expected):
    """Kernels without size= are sized by len(first argument), computed inline on the hot path: whatever
    goes wrong there must still name the kernel."""
    set_executor(pool)
    load_profile(write_profile_json(tmp_path / "p.json", {kernel_key(support.total): 5}))
    with pytest.raises(KernelSizeError, match=expected) as info:
        run(run_kernel(support.total, *args))
    assert kernel_key(support.total) in str(info.value)
    with pytest.raises(KernelSizeError, match=expected):
        run_kernel_sync(support.total, *args)
    assert run_kernel_sync(support.total, [1, 2, 3]) == 6


def test_missing_profile_falls_back_to_default_with_one_warning(pool, tmp_path, monkeypatch):
    monkeypatch.setenv("OFFLOAD_TUNER_PROFILE", str(tmp_path / "absent.json"))
    set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):
            assert run(run_kernel(support.where, [0] * 10_000)) == os.getpid()
    messages = offload_warnings(record)
    assert len(messages) == 1
    assert "absent.json" in messages[0] and "no such file" in messages[0] and "calibrate" in messages[0]
    assert decide(support.where, [0]).threshold is None


@pytest.mark.parametrize(
    "content, reason",
    [
        ("", "empty"),
        ('{"schema": 2, "kernels": {', "invalid JSON"),
        ('{"schema": 99, "kernels": {}}', "schema version 99"),
        ('{"schema": 2, "kernels": {"m:f": {"threshold": NaN}}}', "invalid JSON"),
        ('{"schema": 2, "kernels": {"m:f": {"threshold": -3}}}', "negative"),
        ("[1, 2]", "top level"),
    ],
)
def test_corrupt_profile_falls_back_and_names_file_and_reason(pool, tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert load_profile(path) is None
        assert run(run_kernel(support.where, [0] * 100)) == os.getpid()
    messages = offload_warnings(record)
    assert len(messages) == 1 and "bad.json" in messages[0] and reason in messages[0]
    with pytest.raises(offload_tuner.ProfileError, match=reason):
        load_profile(path, strict=True)


def test_profile_from_another_host_is_not_used(pool, tmp_path):
    set_executor(pool)
    host = dict(support.host_identity(), hostname="some-other-box", usable_cores=64)  # the hostname alone: test_host
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_profile(write_profile_json(tmp_path / "p.json", {WHERE: 0}, host=host))
    assert "another host" in offload_warnings(record)[0]
    assert decide(support.where, [1]).offload is False
    # ...unless the user says the profile is meant for this host.
    load_profile(tmp_path / "p.json", check_host=False)
    assert decide(support.where, [1]).offload is True


def test_changed_kernel_code_falls_back_with_a_warning(pool, tmp_path):
    set_executor(pool)
    path = write_profile_json(tmp_path / "p.json", {WHERE: 0})
    data = json.loads(path.read_text())
    data["kernels"][WHERE]["code_fingerprint"] = "sha256:from-an-older-version"
    path.write_text(json.dumps(data))
    load_profile(path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        d = decide(support.where, [1])
    assert d.offload is False and "code changed" in d.reason
    assert "changed since it was calibrated" in offload_warnings(record)[0]


def test_profile_for_another_executor_kind_is_not_applied(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as threads:
        set_executor(threads)
        load_profile(write_profile_json(tmp_path / "p.json", {WHERE: 0}, executor_kind="process"))
        d = decide(support.where, [1])
    assert d.offload is False and "process executor" in d.reason


def test_thread_backend_runs_in_another_thread(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="worker") as threads:
        set_executor(threads)
        assert run(run_kernel(threading.current_thread, offload_if=True)) is not threading.current_thread()
        assert run_kernel_sync(threading.current_thread, offload_if=True) is not threading.current_thread()


def test_kernel_rejects_local_functions():
    def local(xs):
        return xs

    with pytest.raises(TypeError, match="module-level"):
        kernel()(local)


def test_default_threshold_applies_without_profile(pool):
    set_executor(pool)
    fn = kernel(default_threshold=5)(support.not_registered)
    try:
        assert decide(fn, [0] * 4).offload is False
        assert decide(fn, [0] * 5).offload is True
        assert run(run_kernel(fn, [0] * 5)) == 5
    finally:  # keep the registry as other tests expect it
        from offload_tuner.runtime import _registry

        _registry._REGISTRY.pop(fn, None)
        _registry._BY_KEY.pop(kernel_key(fn), None)


def test_unregistered_function_offloads_by_default_unless_told(pool):
    """The original gate's default (issue 27 item 4): offloaded without offload_if; offload_if=False stands."""
    set_executor(pool)
    d = decide(support.not_registered, [1, 2, 3])
    assert d.offload is True and "not a registered kernel" in d.reason and d.origin == "unregistered"
    assert decide(support.not_registered, [1, 2, 3], offload_if=False).offload is False
    assert run(run_kernel(support.not_registered, [1, 2, 3], offload_if=True)) == 3


def test_profile_named_by_environment_is_loaded_lazily(pool, tmp_path, monkeypatch):
    path = write_profile_json(tmp_path / "env.json", {WHERE: 3})
    monkeypatch.setenv("OFFLOAD_TUNER_PROFILE", str(path))
    offload_tuner.unload_profile()
    set_executor(pool)
    assert decide(support.where, [0] * 3).offload is True
    assert offload_tuner.current_profile().source == str(path)


def test_swapping_profile_does_not_disturb_calls_in_flight(pool, tmp_path):
    set_executor(pool)
    always = write_profile_json(tmp_path / "always.json", {TOTAL: 0})
    never = write_profile_json(tmp_path / "never.json", {TOTAL: None})

    async def main():
        load_profile(always)
        calls = [run_kernel(support.total, list(range(i))) for i in range(200)]
        swap = asyncio.get_running_loop().run_in_executor(None, load_profile, never)
        results = await asyncio.gather(*calls, swap)
        return results[:-1]

    assert run(main()) == [sum(range(i)) for i in range(200)]


def test_production_import_and_first_decision_stay_light(tmp_path):
    """No numpy/scikit-learn/matplotlib on the production path, even with a profile loaded."""
    path = write_profile_json(tmp_path / "p.json", {TOTAL: 10})
    code = (
        "import sys, asyncio, offload_tuner\n"
        "from tests import support\n"
        "offload_tuner.load_profile(sys.argv[1])\n"
        "d = offload_tuner.decide(support.total, [1] * 20)\n"
        "assert d.threshold == 10, d\n"
        "asyncio.run(offload_tuner.run_kernel(support.total, [1, 2]))\n"
        "heavy = sorted(m for m in ('numpy', 'sklearn', 'scipy', 'matplotlib', 'pandas') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"


@pytest.mark.parametrize("bad, reason", [(-1, "negative"), (2.5, "not an integer"), ("256", "not an integer")])
def test_bad_default_threshold_is_refused_at_registration(bad, reason):
    with pytest.raises(ValueError, match=f"default_threshold.*{reason}"):
        kernel(default_threshold=bad)


def test_reinstalling_the_installed_executors_keeps_every_resolved_entry(tmp_path):
    """A service may install its pool per request: re-installing what is installed is a no-op (the snapshot, its
    resolved entries and the lanes' backlog stay); anything else installs afresh, and after a failure it clears
    the dropped executors."""
    from concurrent.futures import ThreadPoolExecutor

    from offload_tuner.runtime import _state

    threads, other = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    try:
        offload_tuner.set_executor(threads)
        offload_tuner.decide(support.total, [1, 2])  # resolves the kernel's entry in this snapshot
        snap = _state.current()
        assert support.total in snap.table
        offload_tuner.set_executor(threads)
        offload_tuner.set_executors({"thread": threads})
        assert _state.current() is snap and support.total in snap.table
        offload_tuner.set_executor(other)
        assert _state.current() is not snap and offload_tuner.get_executor() is other
        _state.drop_lane(_state.current().lanes["thread"], RuntimeError("gone"))
        assert offload_tuner.get_executors() == {} and _state.current().dropped == {"thread"}
        offload_tuner.set_executor(other)  # the same object as before the drop: installed again, not a no-op
        assert offload_tuner.get_executor() is other and not _state.current().dropped
    finally:
        threads.shutdown()
        other.shutdown()
