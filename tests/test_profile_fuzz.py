"""The profile loader under fuzzing: only ProfileError (the documented error) may escape."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from offload_tuner.runtime._profile import Profile, ProfileError, parse_profile, validate_profile

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)

kernel_entries = st.dictionaries(
    st.sampled_from(["threshold", "status", "code_fingerprint", "interval", "costs", "x"]),
    json_values | st.integers(-5, 10**20),
    max_size=5,
)
profiles = st.fixed_dictionaries(
    {
        "schema": st.one_of(st.just(1), json_values),
        "kernels": st.one_of(st.dictionaries(st.text(max_size=6), kernel_entries, max_size=4), json_values),
    },
    optional={"host": json_values, "executor": json_values},
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw):
    try:
        assert isinstance(parse_profile(raw, "fuzz.json"), Profile)
    except ProfileError as exc:
        assert "fuzz.json" in str(exc)


@settings(max_examples=300, deadline=None)
@given(profiles)
def test_structured_profiles(data):
    try:
        profile = validate_profile(data, "fuzz.json")
    except ProfileError as exc:
        assert str(exc).startswith("fuzz.json: ")
        return
    for entry in profile.kernels.values():  # what the runtime relies on, if accepted
        assert entry.threshold is None or (isinstance(entry.threshold, int) and entry.threshold >= 0)
        assert entry.status in ("ok", "failed", "untrusted")


@settings(max_examples=200, deadline=None)
@given(profiles)
def test_structured_profiles_as_text(data):
    text = json.dumps(data)
    for cut in (len(text), len(text) // 2):  # whole and truncated
        with contextlib.suppress(ProfileError):
            parse_profile(text[:cut], "fuzz.json")


def test_deeply_nested_json_is_refused_not_crashing():
    text = '{"schema": 2, "kernels": {}, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    try:
        parse_profile(text, "deep.json")
    except ProfileError as exc:
        assert "deep.json" in str(exc)
