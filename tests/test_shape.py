"""The service's shape (issue 27 items 2-4): pools sized to this process's share of the usable cores, the same
figure in calibrate, one warning for a profile calibrated for another number of processes, and pool workers
whose BLAS/OpenMP thread pools fit their share of the cores."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from offload_tuner import ProfileError, decide, load_profile, recommended_pool, run_kernel, set_executor
from offload_tuner.inspection import _cli, _cmd_calibrate
from offload_tuner.inspection._check import check_profile
from offload_tuner.runtime import _backends, _cores, _state
from offload_tuner.runtime._backends import THREAD_LIMIT_VARIABLES, default_workers, describe_executor
from offload_tuner.runtime._registry import kernel_key
from offload_tuner.runtime._warn import OffloadTunerWarning
from tests import support
from tests.support import write_profile_json

ROOT = Path(__file__).resolve().parent.parent
WHERE = kernel_key(support.where)


def offload_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, OffloadTunerWarning)]


def shaped_profile(tmp_path: Path, processes: int | None) -> Path:
    executor = {"kind": "process"} if processes is None else {"kind": "process", "processes": processes}
    return write_profile_json(tmp_path / "p.json", {WHERE: 0}, extra={"executor": executor})


@pytest.fixture
def cores(monkeypatch):
    """Pretend this process may use ``n`` cores (the one function every caller reads)."""

    def set_cores(n: int) -> None:
        monkeypatch.setattr(_cores, "usable_cores", lambda: n)

    return set_cores


# ------------------------------------------------------------------------------------ the shape at load time


def test_a_profile_for_2_processes_in_a_3_process_service_warns_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFLOAD_TUNER_PROCESSES", "3")
    path = shaped_profile(tmp_path, 2)
    executor = ProcessPoolExecutor(1)  # never started: decide() reads its kind
    set_executor(executor)
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert load_profile(path) is not None  # still used: the shape is a warning, not a refusal
            assert load_profile(path) is not None
            assert all(decide(support.where, [1] * n).offload for n in range(1, 200))
    finally:
        set_executor(None)
        executor.shutdown()
    messages = offload_warnings(record)
    assert len(messages) == 1, messages
    assert "calibrated for 2 service process" in messages[0] and "runs with 3" in messages[0]
    assert "calibrate --processes 3" in messages[0] and "OFFLOAD_TUNER_PROCESSES" in messages[0]


def test_the_lazily_loaded_profile_warns_once_over_many_calls(pool, tmp_path, monkeypatch):
    set_executor(pool)
    monkeypatch.setenv("WEB_CONCURRENCY", "2")  # what uvicorn/gunicorn read; the fallback for the shape
    monkeypatch.setenv("OFFLOAD_TUNER_PROFILE", str(shaped_profile(tmp_path, None)))  # absent: 1 process
    import asyncio

    async def many() -> None:
        for n in range(50):
            assert await run_kernel(support.where, list(range(n))) != os.getpid()  # threshold 0: offloaded

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        asyncio.run(many())
    messages = offload_warnings(record)
    assert len(messages) == 1 and "calibrated for 1 service process" in messages[0] and "runs with 2" in messages[0]
    assert decide(support.where, [1]).reason.startswith("profile")


@pytest.mark.parametrize(("recorded", "variable"), [(None, None), (1, None), (2, "2"), (4, "4")])
def test_the_same_shape_says_nothing(tmp_path, monkeypatch, recorded, variable):
    if variable is not None:
        monkeypatch.setenv("OFFLOAD_TUNER_PROCESSES", variable)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert load_profile(shaped_profile(tmp_path, recorded)) is not None
    assert offload_warnings(record) == []
    assert not [p for p in check_profile(tmp_path / "p.json") if p.startswith("shape")]


def test_check_names_the_shape_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFLOAD_TUNER_PROCESSES", "3")
    shape = [p for p in check_profile(shaped_profile(tmp_path, 2)) if p.startswith("shape")]
    assert len(shape) == 1 and "2 service process" in shape[0] and "calibrate --processes 3" in shape[0]


@pytest.mark.parametrize("bad", [0, -2, "2", 1.5, True])
def test_a_bad_recorded_shape_is_a_profile_error_naming_the_field(tmp_path, bad):
    with pytest.raises(ProfileError, match='"executor": processes must be an integer'):
        load_profile(shaped_profile(tmp_path, bad), strict=True)


# ---------------------------------------------------------------------------------- pool sizing, one figure


def test_recommended_pool_under_2_processes_on_2_usable_cores_has_1_worker(monkeypatch, cores):
    cores(2)
    monkeypatch.setenv("OFFLOAD_TUNER_PROCESSES", "2")
    pool = recommended_pool()
    try:
        assert pool._max_workers == 1 and default_workers() == 1
        assert pool._offload_tuner_shape["processes"] == 2 and pool._offload_tuner_threads == 1
    finally:
        pool.shutdown()
    monkeypatch.delenv("OFFLOAD_TUNER_PROCESSES")
    assert default_workers() == 2


def test_a_bad_processes_variable_warns_once_and_counts_one_process(monkeypatch, cores):
    cores(4)
    monkeypatch.setenv("OFFLOAD_TUNER_PROCESSES", "two")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert [default_workers() for _ in range(3)] == [4, 4, 4]
    messages = offload_warnings(record)
    assert len(messages) == 1 and "OFFLOAD_TUNER_PROCESSES='two'" in messages[0] and "using 1" in messages[0]


@pytest.mark.parametrize(("usable", "variable", "expected"), [(2, "2", 1), (6, "3", 2), (8, None, 8), (3, "4", 1)])
def test_calibrate_and_recommended_pool_use_the_same_figure(monkeypatch, cores, usable, variable, expected):
    """calibrate's pool size (its --workers default) and recommended_pool() both come from usable_cores()."""
    cores(usable)
    if variable is not None:
        monkeypatch.setenv("OFFLOAD_TUNER_PROCESSES", variable)
    (processes, share), code = _cmd_calibrate._shape(argparse.Namespace(processes=None))
    assert code == _cli.EXIT_OK
    pool = recommended_pool()
    try:
        assert share == pool._max_workers == default_workers() == expected
        assert processes == pool._offload_tuner_shape["processes"]
    finally:
        pool.shutdown()


def test_calibrate_builds_its_pool_like_the_service_would(tmp_path, monkeypatch, cores):
    """``calibrate --processes 2`` measures on the pool a 2-process service gets from recommended_pool(): the same
    workers and BLAS/OpenMP threads per worker, recorded in the profile's executor."""
    from offload_tuner.calibration import _calibrate

    cores(4)
    seen: dict = {}

    class Measured(Exception):
        """Stops calibrate before it measures anything."""

    def fake_calibrate(specs, executor, **kwargs):
        seen.update(describe_executor(executor), processes=kwargs["processes"])
        raise Measured

    monkeypatch.setattr(_calibrate, "calibrate", fake_calibrate)
    args = ["calibrate", "tests.controlled:spin", "--processes", "2", "--out", str(tmp_path / "p.json"), "-q"]
    with pytest.raises(Measured):
        _cli.main(args)
    monkeypatch.setenv("OFFLOAD_TUNER_PROCESSES", "2")
    service = describe_executor(pool := recommended_pool())
    pool.shutdown()
    assert seen["processes"] == 2
    assert (
        (seen["workers"], seen["threads_per_worker"]) == (service["workers"], service["threads_per_worker"]) == (2, 1)
    )


# ---------------------------------------------------------------------------------- BLAS/OpenMP thread limits


def thread_variables() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in THREAD_LIMIT_VARIABLES}


def thread_report() -> tuple[dict[str, str | None], list[tuple[str, int]] | None]:
    """In a pool worker: the thread variables, and the thread pools threadpoolctl sees once numpy is loaded."""
    env = thread_variables()
    try:
        import numpy  # noqa: F401  loads its BLAS, which reads the variables
        import threadpoolctl
    except ImportError:
        return env, None
    return env, [(info["user_api"], info["num_threads"]) for info in threadpoolctl.threadpool_info()]


def inherited_environment(start_method: str) -> dict[str, str | None]:
    """The thread variables a worker of ``start_method`` starts with, before any initializer runs.

    Not this process's ``os.environ``: a forkserver's workers inherit the environment the forkserver was started
    with, and this process's may have changed since (distributed's Nanny writes ``OMP_NUM_THREADS=1`` and the BLAS
    variables into the process that starts a LocalCluster, so after test_dask the two differ)."""
    import multiprocessing

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(start_method)) as plain:
        return plain.submit(thread_variables).result(timeout=120)


@pytest.mark.parametrize(("usable", "processes", "workers", "expected"), [(4, 2, 1, 2), (2, 1, 2, 1), (3, 1, 1, 3)])
def test_pool_workers_start_with_thread_limits_fitting_their_share(cores, usable, processes, workers, expected):
    cores(usable)
    pool = recommended_pool(workers, processes=processes)
    try:
        env, pools = pool.submit(thread_report).result(timeout=120)
    finally:
        pool.shutdown()
    assert pool._offload_tuner_threads == expected
    # a variable the user set is theirs: the one in the environment the workers inherit
    user = inherited_environment(pool._offload_tuner_shape["start_method"])
    assert env == {name: user[name] or str(expected) for name in THREAD_LIMIT_VARIABLES}
    if pools is not None:  # numpy and threadpoolctl installed (the test extra has both)
        blas = [n for api, n in pools if api == "blas"]
        assert blas and all(n <= expected for n in blas), pools
        if user["OPENBLAS_NUM_THREADS"] is None and expected <= (os.cpu_count() or 1):
            assert all(n == expected for n in blas), pools


def test_a_rebuilt_pool_keeps_the_shape_and_the_thread_limit(cores):
    cores(6)
    pool = recommended_pool(1, processes=3)
    replacement = _state._rebuild(pool)
    try:
        assert replacement is not None and replacement is not pool
        assert (
            replacement._offload_tuner_shape
            == pool._offload_tuner_shape
            == {
                "workers": 1,
                "start_method": pool._offload_tuner_shape["start_method"],
                "processes": 3,
            }
        )
        assert replacement._offload_tuner_threads == pool._offload_tuner_threads == 2
    finally:
        replacement.shutdown()


LOADED_SCRIPT = """
import json, numpy, threadpoolctl
from offload_tuner.runtime._backends import limit_worker_threads
limit_worker_threads(1)
import os
print(json.dumps({"env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
                  "blas": [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]}))
"""


@pytest.mark.parametrize(("user", "blas_limited"), [({}, True), ({"OPENBLAS_NUM_THREADS": "2"}, False)])
def test_the_initializer_limits_libraries_already_loaded_and_leaves_the_users_settings(user, blas_limited):
    pytest.importorskip("threadpoolctl", reason="threadpoolctl is in the test extra")
    env = {k: v for k, v in os.environ.items() if k not in THREAD_LIMIT_VARIABLES}
    env.update(user, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", LOADED_SCRIPT], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["env"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": user.get("OPENBLAS_NUM_THREADS", "1")}
    assert out["blas"], "numpy's BLAS not seen"
    if blas_limited:
        assert set(out["blas"]) == {1}
    else:  # loaded before the initializer ran with the user's 2 (OpenBLAS caps it at the cores it sees)
        assert set(out["blas"]) == {min(2, os.cpu_count() or 1)}


def test_the_initializer_never_fails(monkeypatch):
    """A pool whose initializer raises is broken; a library threadpoolctl cannot drive must not do that."""
    import threadpoolctl

    def boom(*args, **kwargs):
        raise RuntimeError("cannot drive this library")

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", boom)
    for name in THREAD_LIMIT_VARIABLES:
        monkeypatch.setenv(name, "")  # empty counts as unset; monkeypatch restores what was there
    _backends.limit_worker_threads(3)
    assert all(os.environ[name] == "3" for name in THREAD_LIMIT_VARIABLES)
