"""offload_if= over a trusted profile entry: the caller still decides, and is told once per kernel."""

from __future__ import annotations

import asyncio
import os
import warnings

import offload_tuner
from offload_tuner import (
    OffloadTunerWarning,
    ProfileOverriddenWarning,
    decide,
    load_profile,
    run_kernel,
    run_kernel_sync,
    set_executor,
)
from offload_tuner.runtime import _state
from offload_tuner.runtime._registry import kernel_key
from tests import support
from tests.support import write_profile_json

TOTAL = kernel_key(support.total)
WHERE = kernel_key(support.where)


def overrides(record) -> list[warnings.WarningMessage]:
    return [w for w in record if issubclass(w.category, ProfileOverriddenWarning)]


async def call_site(fn, *args, offload_if):
    """A service's call site: the warning must point here, not into the library."""
    return await run_kernel(fn, *args, offload_if=offload_if)


def test_offload_if_over_a_trusted_entry_warns_once_per_kernel_and_still_stands(pool, tmp_path):
    set_executor(pool)
    path = write_profile_json(tmp_path / "p.json", {WHERE: 0, TOTAL: None})
    load_profile(path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):
            assert asyncio.run(call_site(support.where, [1], offload_if=False)) == os.getpid()  # profile: always
        assert run_kernel_sync(support.where, [1], offload_if=False) == os.getpid()
        assert run_kernel_sync(support.total, [1, 2], offload_if=True) == 3  # profile: never
    found = overrides(record)
    assert [str(w.message).split()[3] for w in found] == [WHERE, TOTAL]
    assert "threshold 0" in str(found[0].message) and str(path) in str(found[0].message)
    assert "offloading never pays" in str(found[1].message)
    assert all(w.filename == __file__ for w in found), [w.filename for w in found]
    assert [w for w in record if w not in found] == []


def test_said_once_per_kernel_across_profile_swaps(pool, tmp_path):
    set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for name in ("a.json", "b.json"):
            load_profile(write_profile_json(tmp_path / name, {WHERE: 5}))
            run_kernel_sync(support.where, [1], offload_if=True)
    assert len(overrides(record)) == 1


def test_the_configured_profile_is_loaded_for_the_check_when_its_file_exists(pool, tmp_path, monkeypatch):
    path = write_profile_json(tmp_path / "env.json", {WHERE: 5})
    monkeypatch.setenv("OFFLOAD_TUNER_PROFILE", str(path))
    offload_tuner.unload_profile()
    set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run_kernel_sync(support.where, [1], offload_if=False) == os.getpid()
    assert len(overrides(record)) == 1 and str(path) in str(record[0].message)


def test_nothing_is_said_or_loaded_when_no_profile_file_exists(pool):
    """A caller who decides every call and never calibrated is not told to calibrate."""
    set_executor(pool)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run_kernel_sync(support.where, [1], offload_if=True) != os.getpid()
        assert asyncio.run(call_site(support.where, [1], offload_if=False)) == os.getpid()
    assert [w for w in record if issubclass(w.category, OffloadTunerWarning)] == []
    assert _state._snapshot.profile is _state.UNLOADED


def test_no_override_is_reported_for_an_entry_the_runtime_does_not_use(pool, tmp_path):
    set_executor(pool)
    profile = write_profile_json(tmp_path / "p.json", {TOTAL: 5}, extra={})  # `where` is not in it
    load_profile(profile)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run_kernel_sync(support.where, [1], offload_if=True)
    assert overrides(record) == []


def test_no_check_without_an_executor(tmp_path):
    load_profile(write_profile_json(tmp_path / "p.json", {WHERE: 0}))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run_kernel_sync(support.where, [1], offload_if=True) == os.getpid()
    assert overrides(record) == []


def test_decide_says_what_the_profile_would_have_done(pool, tmp_path):
    set_executor(pool)
    load_profile(write_profile_json(tmp_path / "p.json", {WHERE: 5, TOTAL: None}))
    d = decide(support.where, [0] * 10, offload_if=False)
    assert (d.offload, d.threshold) == (False, 5)
    assert d.reason == "caller: offload_if=False, overriding the profile (size 10 >= threshold 5)"
    assert decide(support.where, [0] * 2, offload_if=True).reason.endswith("(size 2 < threshold 5)")
    assert decide(support.total, [1], offload_if=True).reason.endswith("(offloading never pays)")
    assert decide(support.not_registered, [1], offload_if=True).reason == "caller: offload_if=True"
