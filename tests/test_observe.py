"""The call path notifies observers (drift check, start-up from the environment) through one hook; an observer
can never fail the call that notified it."""

from __future__ import annotations

import warnings

import offload_tuner
from offload_tuner import OffloadTunerWarning, kernel, run_kernel_sync
from offload_tuner.runtime import _observe, _stats
from offload_tuner.runtime.feedback import drift_check, start_from_environment


@kernel(sample=lambda n: (list(range(n)),))
def observed(xs: list[int]) -> int:
    return len(xs)


class Broken(_observe.Observer):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def kernel_seen(self, stats: _stats.KernelStats) -> None:
        self.seen.append("kernel_seen")
        raise RuntimeError("observer bug")

    def samples_due(self, stats: _stats.KernelStats) -> None:
        self.seen.append("samples_due")
        raise RuntimeError("observer bug")


def test_an_observer_that_raises_never_fails_the_call_and_is_reported_once():
    broken = Broken()
    _observe.subscribe(broken)
    previous = offload_tuner.sample_every(1)  # every call timed: samples are due after DRIFT_CHECK_EVERY of them
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            results = [run_kernel_sync(observed, [1, 2, 3]) for _ in range(_stats.DRIFT_CHECK_EVERY)]
    finally:
        offload_tuner.sample_every(previous)
        _observe.unsubscribe(broken)
    assert results == [3] * _stats.DRIFT_CHECK_EVERY
    assert broken.seen == ["kernel_seen", "samples_due"]
    said = [str(w.message) for w in record if issubclass(w.category, OffloadTunerWarning)]
    assert len(said) == 1 and "Broken failed (RuntimeError: observer bug); calls go on" in said[0]


def test_the_feedback_observers_are_subscribed_at_import_once():
    assert _observe._observers.count(drift_check) == 1 and _observe._observers.count(start_from_environment) == 1
    from offload_tuner.runtime import feedback

    feedback.install()  # again: no second subscription
    assert _observe._observers.count(drift_check) == 1
