"""Operational events on the ``offload_tuner`` logger (issue 27 item 6): each fault of the fault table produces
exactly one record, with the kernel, backend and reason as structured fields, on both calling conventions (the
faults are injected as in ``tests/test_fault_parity.py``); drift, adaptation steps, a cluster back and profiles
loaded or refused produce theirs. Warnings stay for configuration mistakes and are not counted here."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import warnings
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest

import offload_tuner
from offload_tuner import get_executors
from offload_tuner.runtime import _stats
from offload_tuner.runtime._log import LOGGER_NAME
from offload_tuner.runtime.feedback import _adapt
from tests import support
from tests.support import write_profile_json
from tests.test_fault_parity import MODES, Interrupting, LostCluster, ScriptedExecutor, call, installed, stop_the_caller

SLEEPY = "tests.support:sleepy"
FIELDS = ("event", "kernel", "backend", "reason")


@pytest.fixture
def records(caplog):
    """The records of the ``offload_tuner`` logger, every level."""
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)

    def on_the_logger() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == LOGGER_NAME]

    return on_the_logger


def quietly(mode: str, fn: Any, *args: Any, timeout: float | None = None) -> Any:
    """One caller-decided call; its warnings recorded and dropped (test_fault_parity asserts them)."""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            return call(mode, fn, *args, timeout=timeout)
        except Exception as exc:
            return exc


def the_one(records: list[logging.LogRecord], event: str, level: int, backend: str) -> logging.LogRecord:
    assert [r.event for r in records] == [event], [(r.event, r.getMessage()) for r in records]  # type: ignore[attr-defined]
    record = records[0]
    assert record.levelno == level
    assert all(hasattr(record, field) for field in FIELDS)
    assert record.backend == backend  # type: ignore[attr-defined]
    assert record.reason and isinstance(record.reason, str)  # type: ignore[attr-defined]
    return record


# ------------------------------------------------------------------------------------------------ the table


@pytest.mark.parametrize("mode", MODES)
def test_a_broken_pool_logs_its_rebuild_once(mode, records):
    pool = offload_tuner.recommended_pool(1)
    with installed({"process": pool}, shared=True):
        call(mode, support.sleepy, 0.0)
        assert records() == [], "an ordinary offloaded call logs nothing"
        os.kill(next(iter(pool._processes)), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not pool._broken and time.monotonic() < deadline:
            time.sleep(0.01)
        assert quietly(mode, support.sleepy, 0.0) == os.getpid()
        record = the_one(records(), "pool_rebuilt", logging.WARNING, "process")
        assert record.kernel == SLEEPY and "BrokenProcessPool" in record.reason  # type: ignore[attr-defined]
        assert "new pool of the same shape" in record.getMessage()
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.parametrize("mode", MODES)
def test_a_worker_killed_mid_call_logs_once(mode, records):
    pool = offload_tuner.recommended_pool(1)
    with installed({"process": pool}, shared=True):
        call(mode, support.sleepy, 0.0)
        threading.Timer(0.2, os.kill, (next(iter(pool._processes)), signal.SIGKILL)).start()
        assert quietly(mode, support.sleepy, 0.6) == os.getpid()
        record = the_one(records(), "pool_rebuilt", logging.WARNING, "process")
        assert record.kernel == SLEEPY  # type: ignore[attr-defined]
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.parametrize("mode", MODES)
def test_a_shut_down_executor_logs_its_drop_once(mode, records):
    threads = ThreadPoolExecutor(1)
    threads.shutdown()
    with installed({"thread": threads}):
        assert quietly(mode, support.total, [1, 2]) == 3
        record = the_one(records(), "executor_dropped", logging.WARNING, "thread")
        assert record.kernel == "tests.support:total"  # type: ignore[attr-defined]
        assert "shutdown" in record.reason  # type: ignore[attr-defined]
        quietly(mode, support.total, [1])  # dropped: inline from now on, nothing more to report
        assert len(records()) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_call_the_executor_cancels_logs_once(mode, records):
    with installed({"executor": ScriptedExecutor(lambda future: future.cancel())}):
        assert quietly(mode, support.total, [1, 2, 3]) == 6
        record = the_one(records(), "executor_dropped", logging.WARNING, "executor")
        assert "CancelledError" in record.reason  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_logs_once_and_later_ones_at_debug(mode, records):
    threads = ThreadPoolExecutor(1)
    with installed({"thread": threads}):
        assert isinstance(quietly(mode, support.sleepy, 0.5, timeout=0.05), TimeoutError)
        record = the_one(records(), "call_timed_out", logging.WARNING, "thread")
        assert record.kernel == SLEEPY and "timeout expired" in record.reason  # type: ignore[attr-defined]
        assert isinstance(quietly(mode, support.sleepy, 0.5, timeout=0.05), TimeoutError)
        assert [r.levelno for r in records()] == [logging.WARNING, logging.DEBUG], "a hot kernel cannot flood"


@pytest.mark.parametrize("mode", MODES)
def test_an_unpicklable_argument_logs_once_per_kernel_at_warning(mode, pool, records):
    with installed({"process": pool}, shared=True):
        assert quietly(mode, support.where, [threading.Lock()]) == os.getpid()
        record = the_one(records(), "unpicklable_arguments", logging.WARNING, "process")
        assert record.kernel.endswith("where") and "cannot be pickled" in record.reason  # type: ignore[attr-defined]
        assert quietly(mode, support.where, [threading.Lock()]) == os.getpid()
        assert [r.levelno for r in records()] == [logging.WARNING, logging.DEBUG]


@pytest.mark.parametrize("mode", MODES)
def test_an_unpicklable_result_logs_once(mode, pool, records):
    with installed({"process": pool}, shared=True):
        assert type(quietly(mode, support.returns_lock, [1])).__name__ == "lock"
        record = the_one(records(), "unpicklable_result", logging.WARNING, "process")
        assert record.kernel.endswith("returns_lock")  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
def test_a_call_a_worker_cannot_load_logs_once(mode, pool, records):
    with installed({"process": pool}, shared=True):
        assert quietly(mode, support.where, [support.Unloadable()]) == os.getpid()
        record = the_one(records(), "payload_unloadable", logging.WARNING, "process")
        assert "gone_from_the_workers" in record.reason  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
def test_a_kernel_raising_is_the_callers_exception_not_an_event(mode, pool, records):
    """Documented in docs/guarantees.md: the runtime did nothing but carry the kernel's own exception back."""
    with installed({"process": pool}, shared=True):
        assert str(quietly(mode, support.fails, [1, 2])) == "bad input of length 2"
        assert str(quietly(mode, support.times_out, [1])) == "the kernel's own timeout, 1 items"
        assert records() == []


@pytest.mark.parametrize("mode", MODES)
def test_a_lost_cluster_logs_once(mode, records):
    with installed({"dask": LostCluster()}):
        assert quietly(mode, support.where, [1, 2]) == os.getpid()
        record = the_one(records(), "cluster_lost", logging.WARNING, "dask")
        assert "ClusterUnavailable" in record.reason and "3600 s" in record.getMessage()  # type: ignore[attr-defined]


def test_a_cluster_back_logs_its_recovery(monkeypatch, records):
    from offload_tuner.runtime import _dask, _state

    cluster = LostCluster()
    with installed({"dask": cluster}):
        quietly("sync", support.where, [1])
        assert get_executors() == {}
        monkeypatch.setattr(_dask, "cluster_ready", lambda executor: True)
        monkeypatch.setattr(_dask, "cluster_closed", lambda executor: False)
        _state._retry_cluster("dask", cluster, 3600.0)  # what the retry timer runs
        assert get_executors() == {"dask": cluster}
        assert [(r.event, r.levelno, r.backend) for r in records()] == [  # type: ignore[attr-defined]
            ("cluster_lost", logging.WARNING, "dask"),
            ("cluster_recovered", logging.INFO, "dask"),
        ]


@pytest.mark.parametrize("mode", MODES)
def test_a_stopped_caller_logs_nothing(mode, records):
    class Queue(Executor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
            return Future() if mode == "async" else Interrupting()

    with installed({"executor": Queue()}):
        stop_the_caller(mode)
    assert records() == []


def test_a_broken_handler_never_fails_the_call(records):
    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("handler down")

        def handleError(self, record: logging.LogRecord) -> None:
            raise RuntimeError("handler down")

    logger = logging.getLogger(LOGGER_NAME)
    handler = Broken()
    logger.addHandler(handler)
    threads = ThreadPoolExecutor(1)
    threads.shutdown()
    try:
        with installed({"thread": threads}):
            assert quietly("sync", support.total, [1, 2]) == 3
    finally:
        logger.removeHandler(handler)


# ------------------------------------------------------------------------------------------- feedback, profiles


def test_a_profile_loaded_and_one_refused_are_logged(tmp_path, records):
    offload_tuner.load_profile(write_profile_json(tmp_path / "p.json", {"tests.support:total": 5}))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        offload_tuner.load_profile(bad)
    loaded, refused = records()
    assert (loaded.event, loaded.levelno) == ("profile_loaded", logging.INFO)  # type: ignore[attr-defined]
    assert (refused.event, refused.levelno) == ("profile_rejected", logging.WARNING)  # type: ignore[attr-defined]
    assert str(bad) in refused.reason and loaded.source.endswith("p.json")  # type: ignore[attr-defined]


def test_drift_is_logged_once_per_kernel(tmp_path, records):
    from offload_tuner.runtime._stats import DRIFT_CHECK_EVERY
    from tests.test_stats import _profile_with_model

    offload_tuner.sample_every(1)
    with ThreadPoolExecutor(1) as pool, warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        offload_tuner.set_executor(pool)
        offload_tuner.load_profile(_profile_with_model(tmp_path, 1e-9))
        for _ in range(3 * DRIFT_CHECK_EVERY):
            offload_tuner.run_kernel_sync(support.total, list(range(100)))
            _stats.stats_for(support.total).checked_at = -1e9
    drift = [r for r in records() if r.event == "drift_detected"]  # type: ignore[attr-defined]
    assert len(drift) == 1 and drift[0].levelno == logging.WARNING
    assert drift[0].kernel.endswith("total") and "inline compute at sizes 64-127" in drift[0].reason  # type: ignore[attr-defined]


def test_each_adaptation_step_is_logged_at_info(tmp_path, records):
    from tests.test_adapt import FULL, TRIAL_WINDOWS, install_profile, offloading_pays, run_windows

    before = dict(_adapt._adapter.events)
    with ThreadPoolExecutor(1) as pool:
        install_profile(tmp_path, pool)
        path = run_windows(FULL, TRIAL_WINDOWS, offloading_pays, inline_factor=3.0)
    steps = [r for r in records() if r.event == "adaptation_step"]  # type: ignore[attr-defined]
    assert len(steps) == sum(_adapt._adapter.events.values()) - sum(before.values()) > 1, "one record per step"
    assert all(r.levelno == logging.INFO and r.kernel.endswith("total") for r in steps)  # type: ignore[attr-defined]
    assert [r.phase for r in steps][-1] == "accepted" and steps[-1].threshold == path[-1]  # type: ignore[attr-defined]


def test_a_failed_adaptation_step_is_logged(tmp_path, monkeypatch, records):
    from tests.test_adapt import FULL, install_profile, offloading_pays, run_windows

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ArithmeticError("model exploded")

    monkeypatch.setattr(_adapt, "retune_kernel", broken)
    with ThreadPoolExecutor(1) as pool, warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        install_profile(tmp_path, pool)
        run_windows(FULL, 2, offloading_pays)
    failed = [r for r in records() if r.event == "adaptation_failed"]  # type: ignore[attr-defined]
    assert failed and failed[0].levelno == logging.WARNING and "model exploded" in failed[0].reason  # type: ignore[attr-defined]
