from __future__ import annotations

import warnings

import pytest

import offload_tuner
from offload_tuner.runtime import _state, _stats, _warn


@pytest.fixture(scope="session")
def pool():
    """One forkserver pool for the whole session: starting pools is the slow part of these tests."""
    executor = offload_tuner.recommended_pool(2)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(autouse=True)
def clean_runtime(tmp_path, monkeypatch):
    """Every test starts with no executor, no profile, no remembered warnings, and no default profile."""
    monkeypatch.setenv("OFFLOAD_TUNER_PROFILE", str(tmp_path / "no-profile-here.json"))
    monkeypatch.delenv("OFFLOAD_TUNER_STATS", raising=False)
    monkeypatch.delenv("OFFLOAD_TUNER_ADAPT", raising=False)
    for name in ("OFFLOAD_TUNER_PROCESSES", "WEB_CONCURRENCY", "OFFLOAD_TUNER_HOST_CHECK"):
        monkeypatch.delenv(name, raising=False)  # the service shape and host check tests set them
    offload_tuner.set_executor(None)
    offload_tuner.unload_profile()
    _warn.warned.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        yield
    offload_tuner.set_executor(None)
    offload_tuner.unload_profile()
    offload_tuner.record_stats(None)
    offload_tuner.adapt(False, min_calls=256)
    _state.swap(adapted=_state.NOT_ADAPTED)
    offload_tuner.sample_every(_stats.DEFAULT_SAMPLE_EVERY)
    offload_tuner.reset_stats()
