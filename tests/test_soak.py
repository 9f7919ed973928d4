"""A short soak in the test suite (the full one: `python -m benchmarks.soak`, 20k calls)."""

from __future__ import annotations

import warnings

MAX_GROWTH_BYTES = 4 * 1024 * 1024


def test_short_soak_has_no_errors_and_no_memory_growth():
    from benchmarks.soak import soak

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no profile" is expected here; the soak is about errors and leaks
        report = soak(calls=2000, callers=8, seed=11, workers=2)
    assert report["error_count"] == 0, report["errors"]
    assert len(report["traced_bytes_after_each_quarter"]) >= 4
    assert report["growth_after_first_quarter_bytes"] < MAX_GROWTH_BYTES, report
    assert report["lag_p99_ms"] is not None
