"""Calibration faults: a hanging kernel, an interrupted run, an unwritable target."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from offload_tuner.calibration._calibrate import EFFORTS, KernelPlan, calibrate
from offload_tuner.runtime._policy import PolicyKnobs
from offload_tuner.runtime._registry import spec_for
from tests import controlled

ROOT = Path(__file__).resolve().parent.parent


def test_a_hanging_kernel_is_stopped_and_the_others_still_calibrate(pool):
    specs = [spec_for(controlled.hangs_when_big), spec_for(controlled.spin)]
    plans = {
        specs[0].key: KernelPlan(min_size=4, max_size=64, time_limit_s=1.0),
        specs[1].key: KernelPlan(min_size=4, max_size=4096),
    }
    started = time.monotonic()
    profile = calibrate(specs, pool, effort=EFFORTS["quick"], knobs=PolicyKnobs(4, 2, 2), plans=plans)
    hung = profile["kernels"][specs[0].key]
    assert hung["status"] == "failed" and "time limit" in hung["error"]
    assert profile["kernels"][specs[1].key]["status"] == "ok"
    assert time.monotonic() - started < 60  # generous: it did not hang


def _calibrate_in_subprocess(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "offload_tuner.inspection._cli",
            "calibrate",
            "tests.controlled:spin",
            "tests.controlled:echo",
            "--effort",
            "thorough",
            "--out",
            str(out),
            "--quiet",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_and_ctrl_c_leave_the_previous_profile_intact(tmp_path):
    out = tmp_path / "profile.json"
    previous = {"schema": 1, "kernels": {}, "note": "the previous profile"}
    out.write_text(json.dumps(previous))
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = _calibrate_in_subprocess(out)
        time.sleep(2.0)  # well into measuring
        proc.send_signal(sig)
        _stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, (sig, proc.returncode, stderr[-2000:])
        assert "interrupted" in stderr and "untouched" in stderr
        assert json.loads(out.read_text()) == previous
        assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.json"]  # no partial or temp file


def test_full_disk_keeps_the_previous_profile(tmp_path, monkeypatch, capsys):
    """ENOSPC while writing: the message says so, the old file survives, nothing partial is left."""
    import offload_tuner.runtime._profile as profile_module
    from offload_tuner.inspection._cli import EXIT_WRITE, main

    out = tmp_path / "profile.json"
    out.write_text('{"schema": 2, "kernels": {}}')
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, text):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(profile_module.os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    code = main(["calibrate", "tests.controlled:spin", "--effort", "quick", "--out", str(out), "--quiet"])
    assert code == EXIT_WRITE
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_text() == '{"schema": 2, "kernels": {}}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.json"]
