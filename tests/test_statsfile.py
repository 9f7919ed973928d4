"""The stats file: several processes share it safely; a corrupt or hostile file is refused with a clear error."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time

import pytest

import offload_tuner
from offload_tuner.runtime._stats import SAMPLE_CAP, STATS_SCHEMA
from offload_tuner.runtime.feedback._statsfile import (
    MAX_PROCESSES,
    StatsError,
    merge,
    parse_stats,
    read_stats,
    write_stats,
)
from tests.support import total

KEY = "tests.support:total"


def document(pid: str = "1@1.0", updated: float = 100.0, inline: int = 3) -> dict:
    return {
        "schema": STATS_SCHEMA,
        "host": "h",
        "processes": {
            pid: {
                "pid": 1,
                "started": 1.0,
                "updated": updated,
                "sample_every": 64,
                "kernels": {
                    KEY: {
                        "calls": {"inline": {"64": inline}, "offload": {"1024": 2}},
                        "samples": {"inline": [[100.0, 70, 0.001]], "loop": [], "latency": []},
                    }
                },
            }
        },
    }


def test_a_snapshot_round_trips_through_the_file(tmp_path):
    offload_tuner.sample_every(1)
    offload_tuner.run_kernel_sync(total, list(range(70)))
    path = write_stats(tmp_path / "stats.json")
    data = read_stats(path)
    (section,) = data["processes"].values()
    assert section["pid"] == os.getpid()
    assert section["kernels"][KEY]["calls"]["inline"] == {"64": 1}
    assert [row[1] for row in section["kernels"][KEY]["samples"]["inline"]] == [70]


def test_writers_replace_only_their_own_section(tmp_path):
    path = tmp_path / "stats.json"
    write_stats(path, document("1@1.0", inline=3))
    write_stats(path, document("2@1.0", inline=5))
    write_stats(path, document("1@1.0", updated=200.0, inline=7))  # process 1 again, later: replaces its own
    processes = read_stats(path)["processes"]
    assert set(processes) == {"1@1.0", "2@1.0"}
    assert processes["1@1.0"]["kernels"][KEY]["calls"]["inline"] == {"64": 7}
    assert processes["2@1.0"]["kernels"][KEY]["calls"]["inline"] == {"64": 5}


def test_only_the_most_recent_sections_are_kept():
    merged = None
    for i in range(MAX_PROCESSES + 10):
        merged = merge(merged, document(f"{i}@1.0", updated=float(i)))
    assert len(merged["processes"]) == MAX_PROCESSES
    assert "0@1.0" not in merged["processes"] and f"{MAX_PROCESSES + 9}@1.0" in merged["processes"]


def _hammer(path: str, name: str, times: int) -> None:
    for i in range(times):
        write_stats(path, document(f"{name}@1.0", updated=time.time(), inline=i + 1))


def test_concurrent_writers_lose_nobody_and_never_tear_the_file(tmp_path):
    path = str(tmp_path / "stats.json")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(path, f"w{i}", 25)) for i in range(4)]
    for w in workers:
        w.start()
    seen = 0
    while any(w.is_alive() for w in workers):  # a reader in the middle of it all only ever sees whole files
        if os.path.exists(path):
            read_stats(path)
            seen += 1
    for w in workers:
        w.join()
        assert w.exitcode == 0
    processes = read_stats(path)["processes"]
    assert set(processes) == {f"w{i}@1.0" for i in range(4)}
    assert all(p["kernels"][KEY]["calls"]["inline"] == {"64": 25} for p in processes.values())
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def _broken(mutate) -> str:
    data = document()
    mutate(data)
    return json.dumps(data)


def _section(d: dict) -> dict:
    return d["processes"]["1@1.0"]


def _kernel(d: dict) -> dict:
    return _section(d)["kernels"][KEY]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("{not json", "invalid JSON"),
        ('{"schema": "offload-tuner-stats/1", "host": "h", "processes": {"1": {"updated": NaN}}}', "non-finite"),
        ("[1, 2]", "expected an object"),
        (json.dumps({"schema": 2, "host": "h", "processes": {}}), "not an offload-tuner stats file"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        (_broken(lambda d: d.update(processes=[])), "processes: expected an object"),
        (_broken(lambda d: _section(d).update(sample_every=-1)), "sample_every"),
        (_broken(lambda d: _section(d).update(updated="soon")), "updated"),
        (_broken(lambda d: _kernel(d)["calls"]["inline"].update({"63": 1})), "not 0 or a power of two"),
        (_broken(lambda d: _kernel(d)["calls"]["inline"].update({"64": -4})), "count >= 0"),
        (_broken(lambda d: _kernel(d)["calls"]["inline"].update({"64": 1.5})), "count >= 0"),
        (_broken(lambda d: _kernel(d)["calls"].update(elsewhere={})), "'inline' and 'offload'"),
        (_broken(lambda d: _kernel(d).update(explored=-1)), "explored: expected a count >= 0"),
        (_broken(lambda d: _kernel(d)["samples"].update(loop=[[1.0, -5, 0.1]])), "size -5"),
        (_broken(lambda d: _kernel(d)["samples"].update(loop=[[1.0, 5, 1e400]])), "non-finite"),
        (_broken(lambda d: _kernel(d)["samples"].update(loop=[[1.0, 5]])), "[time, size, seconds]"),
        (_broken(lambda d: _kernel(d)["samples"].update(loop=[[1.0, 5, 0.1]] * (SAMPLE_CAP + 1))), "at most"),
        (_broken(lambda d: _kernel(d)["samples"].update(pickle=[])), "kinds"),
        (
            _broken(lambda d: d["processes"].update({str(i): _section(d) for i in range(MAX_PROCESSES)})),
            "over the limit",
        ),
    ],
)
def test_corrupt_or_hostile_files_are_refused_naming_the_problem(text, message):
    with pytest.raises(StatsError, match="stats.json.*" + re.escape(message)):
        parse_stats(text, "stats.json")


def test_an_oversized_or_missing_file_is_refused(tmp_path, monkeypatch):
    with pytest.raises(StatsError, match="no such file"):
        read_stats(tmp_path / "absent.json")
    monkeypatch.setattr("offload_tuner.runtime.feedback._statsfile.MAX_STATS_BYTES", 100)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(document()))
    with pytest.raises(StatsError, match="byte limit"):
        read_stats(path)


def test_a_corrupt_file_is_moved_aside_and_recording_goes_on(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text("{garbage")
    with pytest.warns(offload_tuner.OffloadTunerWarning, match="moved it aside"):
        write_stats(path, document())
    assert (tmp_path / "stats.json.corrupt").read_text() == "{garbage"
    assert set(read_stats(path)["processes"]) == {"1@1.0"}


def test_record_stats_writes_periodically_and_on_stop(tmp_path):
    path = tmp_path / "stats.json"
    offload_tuner.record_stats(path, every_s=0.05)
    offload_tuner.run_kernel_sync(total, [1, 2, 3])
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists()
    offload_tuner.run_kernel_sync(total, [1, 2, 3])
    offload_tuner.record_stats(None)  # stops, writing a last time
    (section,) = read_stats(path)["processes"].values()
    assert section["kernels"][KEY]["calls"]["inline"] == {"2": 2}
    with pytest.raises(ValueError, match="positive number of seconds"):
        offload_tuner.record_stats(path, every_s=0)


def test_the_environment_variable_records_a_service_to_its_exit(tmp_path):
    path = tmp_path / "stats.json"
    code = (
        "import offload_tuner\n"
        "from tests.support import total\n"
        "for n in (1, 100, 100): offload_tuner.run_kernel_sync(total, list(range(n)))\n"
    )
    env = {**os.environ, "OFFLOAD_TUNER_STATS": str(path), "OFFLOAD_TUNER_STATS_EVERY_S": "3600"}
    for _ in range(2):  # two service processes, one after the other, share the file
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    processes = read_stats(path)["processes"]
    assert len(processes) == 2
    assert all(p["kernels"][KEY]["calls"]["inline"] == {"1": 1, "64": 2} for p in processes.values())


def test_the_public_error_type_is_the_one_raised():
    assert offload_tuner.StatsError is StatsError and issubclass(StatsError, ValueError)
