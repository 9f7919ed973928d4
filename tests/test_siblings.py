"""``calibrate --processes N``: the concurrent phase measured beside N-1 sibling service processes (no wall-time
asserts: what is checked is that siblings ran, the shape is recorded, and nothing is left running)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from typing import ClassVar

import pytest

from offload_tuner.calibration import _calibrate
from offload_tuner.calibration._calibrate import EFFORTS, KernelPlan, calibrate
from offload_tuner.calibration._siblings import SiblingFailed, Siblings
from offload_tuner.inspection._cli import EXIT_USAGE, main
from offload_tuner.runtime._backends import recommended_pool
from offload_tuner.runtime._policy import PolicyKnobs
from offload_tuner.runtime._profile import validate_profile
from offload_tuner.runtime._registry import spec_for
from tests import controlled, sibling_kernels

# Two service processes on this 2-core host: one worker each, one core each for the cost model.
KNOBS = PolicyKnobs(concurrency=4, workers=1, cores=1)
PLAN = KernelPlan(min_size=4, max_size=16384)


class _Recorded(Siblings):
    """Siblings that remember every instance, so a test can check each one's process groups are gone."""

    made: ClassVar[list[Siblings]] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _Recorded.made.append(self)


@pytest.fixture
def recorded(monkeypatch):
    _Recorded.made = []
    monkeypatch.setattr(_calibrate, "Siblings", _Recorded)
    return _Recorded.made


@pytest.fixture(scope="module")
def half_pool():
    pool = recommended_pool(1)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (zombies waiting for init to reap them do not)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds  # killed processes take a moment to go
    while any(_group_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if _group_alive(pid)]


def _assert_nothing_left(siblings: list[Siblings]) -> None:
    assert siblings, "no siblings were started"
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("offload-tuner-sibling")]
    pids = [pid for s in siblings for pid in s.pids]
    assert pids
    assert _wait_gone(pids, 5) == [], "a sibling or one of its pool's processes is left"


def test_two_processes_measure_every_candidate_beside_a_sibling_and_record_the_shape(
    half_pool, recorded, tmp_path, capsys
):
    spec = spec_for(controlled.spin)
    profile = calibrate(
        [spec], half_pool, effort=EFFORTS["quick"], knobs=KNOBS, plans={spec.key: PLAN}, processes=2, shared=True
    )
    validate_profile(profile)
    assert "at least two calibrated kernels" in profile["shared"]["error"]  # one kernel: its alone threshold
    assert profile["executor"]["processes"] == 2
    assert profile["executor"]["workers_per_process"] == 1
    assert profile["policy"]["workers"] == 1 and profile["policy"]["cores"] == 1
    entry = profile["kernels"][spec.key]
    assert entry["status"] == "ok", entry.get("error")
    load = entry["load"]
    assert load["processes"] == 2
    (sibling_calls,) = load["sibling_calls"]  # one sibling, and it ran the kernel's calls beside the runs
    assert sibling_calls > 0
    _assert_nothing_left(recorded)

    path = tmp_path / "p2.json"
    path.write_text(json.dumps(profile))
    capsys.readouterr()
    assert main(["show", str(path)]) == 0
    assert "2 processes x 1 workers" in capsys.readouterr().out


def test_the_shared_stream_is_measured_beside_siblings_going_round_it_in_two_processes(half_pool, recorded):
    specs = [spec_for(controlled.spin), spec_for(controlled.echo)]
    plans = {s.key: PLAN for s in specs}
    profile = calibrate(specs, half_pool, effort=EFFORTS["quick"], knobs=KNOBS, plans=plans, processes=2, shared=True)
    validate_profile(profile)
    section = profile["shared"]
    assert "error" not in section, section.get("error")
    assert section["processes"] == 2 and section["kernels"] == [s.key for s in specs]
    for spec in specs:
        shared = profile["kernels"][spec.key]["shared"]
        (sibling_calls,) = shared["sibling_calls"]  # one sibling, and it went round the shared stream
        assert sibling_calls > 0
    assert len(recorded) == 2  # the alone phases' siblings, then the shared stream's
    _assert_nothing_left(recorded)


def test_a_sibling_runs_the_shared_stream_each_kernel_under_its_own_threshold(half_pool):
    from offload_tuner.calibration._sibling_loop import SiblingState, handle

    class Stop:  # the measuring process's end of the pipe: "stop" is already waiting
        def __init__(self):
            self.read, self.write = os.pipe()
            os.write(self.write, b"x")

        def fileno(self):
            return self.read

        def recv(self):
            return ("stop",)

    state = SiblingState(half_pool, 1, 2, 1)
    members = (
        (spec_for(controlled.spin).key, "process", 4.0, 64.0, 4),
        (spec_for(controlled.echo).key, "thread", 4.0, 64.0, 4),
    )
    assert handle(state, ("shared", members, 7), Stop()) == ("ok", 8)
    assert sorted({key for (key, _), _ in state.calls}) == sorted(m[0] for m in members)
    kind, (done, _lags) = handle(state, ("run_shared", {members[0][0]: 0, members[1][0]: None}), Stop())
    assert kind == "done" and done >= 2
    kind, error = handle(state, ("run_shared", {members[0][0]: 0}), Stop())  # a kernel with no threshold
    assert kind == "error" and "KeyError" in error
    if state.threads is not None:
        state.threads.shutdown()


def test_one_process_is_recorded_without_starting_siblings(half_pool, recorded):
    profile = calibrate([], half_pool, effort=EFFORTS["quick"], knobs=KNOBS)
    assert profile["executor"]["processes"] == 1 and profile["executor"]["workers_per_process"] == 1
    assert recorded == []


def test_a_sibling_that_hangs_is_killed_and_the_kernel_fails_instead_of_hanging(half_pool, recorded):
    spec = spec_for(sibling_kernels.hangs_in_siblings)
    plans = {spec.key: KernelPlan(min_size=4, max_size=4096, time_limit_s=3)}
    profile = calibrate([spec], half_pool, effort=EFFORTS["quick"], knobs=KNOBS, plans=plans, processes=2)
    entry = profile["kernels"][spec.key]
    assert entry["status"] == "failed"
    assert "sibling process 1 did not answer within 3 s" in entry["error"]
    _assert_nothing_left(recorded)
    assert half_pool.submit(int, "7").result() == 7  # the measuring process's own pool is untouched


def test_an_interrupted_run_leaves_no_sibling_behind():
    spec = spec_for(controlled.spin)
    siblings = Siblings(1, workers=1, callers=2)

    def interrupted() -> None:
        time.sleep(0.1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), siblings:
        siblings.prepare(spec.key, (16, 256), 8, 1, limit_s=10)
        siblings.around("process", 0, interrupted)
    _assert_nothing_left([siblings])
    with pytest.raises(SiblingFailed, match="no kernel prepared"):
        siblings.around("process", 0, lambda: None)


def test_a_sibling_that_dies_fails_the_kernel_by_name_and_the_next_kernel_starts_fresh_siblings():
    spec = spec_for(controlled.spin)
    with Siblings(1, workers=1, callers=2) as siblings:
        siblings.prepare(spec.key, (16, 256), 8, 1, limit_s=10)
        first = siblings.pids[0]

        def sibling_dies() -> None:
            os.killpg(first, signal.SIGKILL)
            assert _wait_gone([first], 5) == []

        with pytest.raises(SiblingFailed, match="sibling process 1 died"):
            siblings.around("process", 0, sibling_dies)
        assert siblings.processes == []  # all killed: nothing half-alive is reused
        siblings.prepare(spec.key, (16, 256), 8, 1, limit_s=10)
        assert len(siblings.pids) == 2 and siblings.pids[1] != first
        _, calls, _ = siblings.around("process", 0, lambda: time.sleep(0.2))
        assert len(calls) == 1
    _assert_nothing_left([siblings])


ORPHANED = """
import time
from offload_tuner.calibration._siblings import Siblings
from offload_tuner.runtime._registry import spec_for
from tests import sibling_kernels

if __name__ == "__main__":
    siblings = Siblings(1, workers=1, callers=2)
    siblings.prepare(spec_for(sibling_kernels.hangs_in_siblings).key, (16, 256), 8, 1, limit_s=60)
    print(siblings.pids[0], flush=True)
    siblings.around("process", 0, lambda: time.sleep(60))  # the sibling hangs in its kernel meanwhile
"""


def test_a_sibling_whose_measuring_process_is_killed_kills_its_own_group():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = subprocess.Popen([sys.executable, "-c", ORPHANED], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        sibling = int(parent.stdout.readline())
        time.sleep(0.5)  # its calls are under way (and hung)
        assert _group_alive(sibling)
    finally:
        parent.kill()  # SIGKILL: no finally, no close() in the measuring process
        parent.wait()
        parent.stdout.close()
    left = _wait_gone([sibling], 10)
    if left:
        os.killpg(sibling, signal.SIGKILL)  # nothing left behind, even by a failing test
    assert left == []


def test_a_kernel_siblings_cannot_import_fails_by_name():
    with Siblings(1, workers=1, callers=2) as siblings, pytest.raises(SiblingFailed, match="no_such_module"):
        siblings.prepare("no_such_module:kernel", (16, 256), 8, 1, limit_s=10)
    _assert_nothing_left([siblings])


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--processes", "0"], {}, "--processes must be >= 1"),
        ([], {"OFFLOAD_TUNER_PROCESSES": "two"}, "OFFLOAD_TUNER_PROCESSES"),
        ([], {"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
    ],
)
def test_a_bad_process_count_is_a_usage_error(argv, environ, message, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("OFFLOAD_TUNER_PROCESSES", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    code = main(["calibrate", "tests.controlled:spin", "--out", str(tmp_path / "p.json"), *argv])
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_processes_below_one_are_refused_before_measuring(half_pool):
    with pytest.raises(ValueError, match="processes must be an integer >= 1"):
        calibrate([], half_pool, effort=EFFORTS["quick"], knobs=KNOBS, processes=0)
