"""Profiles: JSON only, validated, written atomically."""

from __future__ import annotations

import json
import os

import pytest

from offload_tuner.runtime._profile import (
    MAX_PROFILE_BYTES,
    SCHEMA_VERSION,
    ProfileError,
    default_profile_path,
    parse_profile,
    read_profile,
    validate_profile,
    write_profile,
)


def minimal(**kernels) -> dict:
    return {
        "schema": SCHEMA_VERSION,
        "host": {},
        "executor": {"kind": "process"},
        "kernels": {k: {"threshold": v} for k, v in kernels.items()},
    }


def test_round_trip_keeps_everything(tmp_path):
    data = minimal(**{"m:f": 96, "m:g": None, "m:h": 0})
    data["kernels"]["m:f"]["samples"] = {"size": [1, 2], "compute_s": [1e-6, 2e-6]}
    path = write_profile(tmp_path / "p.json", data)
    profile = read_profile(path)
    assert {k: e.threshold for k, e in profile.kernels.items()} == {"m:f": 96, "m:g": None, "m:h": 0}
    assert json.loads(path.read_text()) == data
    assert profile.kernels["m:f"].data["samples"]["size"] == [1, 2]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"kernels": {}}, '"schema"'),
        ({"schema": "1", "kernels": {}}, '"schema"'),
        ({"schema": 4, "kernels": {}}, "schema version 4 is not supported"),
        ({"schema": 1, "kernels": {}}, "older offload-tuner .* calibrate"),
        ({"schema": 2}, '"kernels"'),
        ({"schema": 2, "kernels": []}, '"kernels"'),
        ({"schema": 2, "kernels": {"m:f": {}}}, 'missing "threshold"'),
        ({"schema": 2, "kernels": {"m:f": {"threshold": 1.5}}}, "not an integer"),
        ({"schema": 2, "kernels": {"m:f": {"threshold": "96"}}}, "not an integer"),
        ({"schema": 2, "kernels": {"m:f": {"threshold": True}}}, "not an integer"),
        ({"schema": 2, "kernels": {"m:f": {"threshold": -1}}}, "negative"),
        ({"schema": 2, "kernels": {"m:f": {"threshold": 10**30}}}, "absurdly large"),
        ({"schema": 2, "kernels": {"m:f": {"threshold": 1, "status": "great"}}}, "status"),
        ({"schema": 2, "host": [], "kernels": {}}, '"host"'),
    ],
)
def test_schema_violations_are_named(data, message):
    with pytest.raises(ProfileError, match=message):
        parse_profile(json.dumps(data), "x.json")


@pytest.mark.parametrize("text", ["NaN", '{"schema": 2, "kernels": {"m:f": {"threshold": Infinity}}}'])
def test_non_finite_numbers_are_rejected(text):
    with pytest.raises(ProfileError, match="invalid JSON"):
        parse_profile(text, "x.json")


def test_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:
        fh.truncate(MAX_PROFILE_BYTES + 1)
    with pytest.raises(ProfileError, match="limit"):
        read_profile(path)


def test_write_is_atomic_and_a_failed_write_keeps_the_old_profile(tmp_path, monkeypatch):
    path = write_profile(tmp_path / "p.json", minimal(**{"m:f": 1}))
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        write_profile(path, minimal(**{"m:f": 2}))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]  # no temp file left behind


def test_invalid_data_is_never_written(tmp_path):
    with pytest.raises(ProfileError):
        write_profile(tmp_path / "p.json", {"schema": 2, "kernels": {"m:f": {"threshold": -5}}})
    assert not (tmp_path / "p.json").exists()
    with pytest.raises(ValueError):
        write_profile(tmp_path / "q.json", {**minimal(**{"m:f": 1}), "x": float("nan")})
    assert not (tmp_path / "q.json").exists()


def test_default_location_is_per_host(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    a, b = default_profile_path("alpha"), default_profile_path("beta/../x")
    assert a.parent == b.parent and a != b
    assert a.name == "alpha.json" and "/" not in b.name
    assert str(a).startswith(str(tmp_path))


@pytest.mark.parametrize(
    "thread, expected",
    [
        ([], '"thread" must be an object'),
        ({"threshold": 5}, "gil_hold"),
        ({"gil_hold": 1.5, "threshold": 5}, "gil_hold"),
        ({"gil_hold": True, "threshold": 5}, "gil_hold"),
        ({"gil_hold": 0.1}, 'missing "threshold"'),
        ({"gil_hold": 0.1, "threshold": -3}, "negative"),
    ],
)
def test_a_bad_thread_section_is_refused_by_name(thread, expected):
    data = minimal(**{"m:f": 1})
    data["kernels"]["m:f"]["thread"] = thread
    with pytest.raises(ProfileError, match=expected):
        validate_profile(data, "x.json")
    with pytest.raises(ProfileError, match="fixed_s"):
        validate_profile({**minimal(**{"m:f": 1}), "thread": {"fixed_s": -1}}, "x.json")


def test_a_schema_2_profile_still_loads_without_thread_sections():
    """Schema 3 only adds the thread lane: a schema 2 profile keeps working, and its kernels stay off threads."""
    profile = validate_profile({**minimal(**{"m:f": 96}), "schema": 2}, "old.json")
    assert profile.kernels["m:f"].threshold == 96 and profile.kernels["m:f"].thread is None
    data = minimal(**{"m:f": 96})
    data["kernels"]["m:f"]["thread"] = {"gil_hold": 0.02, "threshold": 4096}
    entry = validate_profile(data, "new.json").kernels["m:f"]
    assert entry.thread is not None and entry.thread.gil_hold == 0.02 and entry.thread.threshold == 4096
    with pytest.raises(ProfileError, match="older offload-tuner"):
        validate_profile({**minimal(**{"m:f": 96}), "schema": 1}, "older.json")
