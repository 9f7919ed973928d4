"""The calibrate command's progress line, driven by the events a real quick calibration emits: every event kind
changes the line, and the concurrent phase emits one event per candidate run (no wall-time asserts)."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

import pytest

from offload_tuner.calibration import _loadphase
from offload_tuner.calibration._calibrate import EFFORTS, KernelPlan, calibrate
from offload_tuner.inspection._progress import KINDS, TerminalProgress
from offload_tuner.runtime._policy import PolicyKnobs
from offload_tuner.runtime._registry import spec_for
from tests import controlled

RUN = "<run>"
"""A marker in the recorded sequence: one run of calls in the concurrent phase started here."""
CALIBRATION = Path(__file__).resolve().parent.parent / "offload_tuner" / "calibration"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def recorded(pool):
    """The events of a real quick calibration of two controlled kernels on a shared stream, in order, with a
    marker wherever the concurrent phase starts a run of calls (its one unit of measuring)."""
    events: list[tuple[str, dict]] = []
    original = _loadphase.run_calls

    def marked(*args, **kwargs):
        events.append((RUN, {}))
        return original(*args, **kwargs)

    specs = [spec_for(controlled.spin), spec_for(controlled.fat_result)]
    plans = {
        specs[0].key: KernelPlan(min_size=4, max_size=16384, workload_range=(1024, 16384)),
        specs[1].key: KernelPlan(min_size=4, max_size=4096),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_loadphase, "run_calls", marked)
        profile = calibrate(
            specs,
            pool,
            effort=EFFORTS["quick"],
            knobs=PolicyKnobs(concurrency=4, workers=2, cores=2),
            plans=plans,
            progress=lambda event, **info: events.append((event, info)),
            shared=True,
        )
    return events, profile


def _rendered(text: str) -> str:
    """What a terminal shows last: the text after the last carriage return / clear-line, or the last line."""
    return re.split(r"\r\033\[K|\n", text.rstrip("\n"))[-1]


def test_every_event_of_a_real_quick_calibration_changes_the_line(recorded):
    events = [(e, info) for e, info in recorded[0] if e != RUN]
    kinds = {e for e, _ in events}
    assert {"start", "transport", "kernel", "size", "validate", "kernel_measured", "load", "kernel_done"} <= kinds
    assert kinds & {"shared", "shared_failed"}  # the shared stream ran, or said why not
    assert kinds <= KINDS  # each has a line of its own, not the generic fallback
    terminal = _Terminal()
    progress = TerminalProgress(False, EFFORTS["quick"].kernel_budget_s, stream=terminal)
    shown = ""
    for event, info in events:
        before = terminal.getvalue()
        progress(event, **info)
        after = terminal.getvalue()
        assert len(after) > len(before), event  # something was written for every event
        assert _rendered(after) == progress.line != shown, (event, info, shown)
        shown = progress.line
    assert "under load: run" in terminal.getvalue()  # the concurrent phase shows on the line


def test_the_concurrent_phase_emits_an_event_per_run(recorded):
    events, profile = recorded
    seq = [e for e, _ in events]
    runs = [i for i, e in enumerate(seq) if e == RUN]
    assert runs
    for a, b in itertools.pairwise(runs):
        assert b - a > 1, f"two runs of calls with no progress event between them at {a}"
    # Each "load" event announces exactly one run: the work between two events is one run, bounded in calls.
    loads = [i for i, e in enumerate(seq) if e == "load"]
    for i in loads:
        assert seq[i + 1] == RUN, seq[i : i + 3]
    # Runs not announced by a "load" are the sizing runs: at most one per kernel's phase.
    unannounced = [i for i in runs if seq[i - 1] != "load"]
    assert len(unannounced) <= len(profile["kernels"])
    measured_runs = sum(len(c["makespan_s"]) for e in profile["kernels"].values() for c in e["load"]["candidates"])
    assert len(loads) >= measured_runs  # every run a candidate's makespans come from was announced


def test_the_line_has_a_place_for_every_event_the_calibration_emits():
    """Read from the source: a new event kind without a line here fails this test, not the user's terminal."""
    emitted = set()
    for path in CALIBRATION.glob("*.py"):
        emitted |= set(re.findall(r"progress\(\s*\"(\w+)\"", path.read_text(encoding="utf-8")))
    assert {"load", "kernel", "transport", "cluster"} <= emitted  # the pattern finds them
    assert emitted <= KINDS
    for kind in KINDS:
        assert callable(getattr(TerminalProgress, f"_on_{kind}", None)), kind


def test_events_outside_a_quick_calibration_and_unknown_ones_still_change_the_line():
    terminal = _Terminal()
    progress = TerminalProgress(False, 1.0, stream=terminal)
    shown = []
    for event, info in [
        ("start", {"kernels": 1, "effort": "quick"}),
        ("kernel", {"kernel": "m:k", "index": 0, "total": 1, "elapsed": 0.0}),
        ("gil", {"kernel": "m:k", "size": 64}),
        ("cluster", {"address": "tcp://127.0.0.1:8786", "workers": 2}),
        ("cluster_kernel", {"kernel": "m:k", "size": 64}),
        ("cluster_scatter", {"address": "tcp://127.0.0.1:8786"}),
        ("shared_failed", {"error": "a shared stream needs at least two calibrated kernels"}),
        ("some_future_event", {"kernel": "m:k", "step": 3}),
    ]:
        progress(event, **info)
        shown.append(progress.line)
        assert _rendered(terminal.getvalue()) == progress.line
    assert len(set(shown)) == len(shown)
    assert shown[-1] == "some future event: kernel m:k, step 3"


def test_quiet_shows_nothing_and_a_pipe_gets_only_stage_lines_and_results(recorded):
    events = [(e, info) for e, info in recorded[0] if e != RUN]
    quiet = io.StringIO()
    for event, info in events:
        TerminalProgress(True, 1.0, stream=quiet)(event, **info)
    assert quiet.getvalue() == ""
    pipe = io.StringIO()
    progress = TerminalProgress(False, 1.0, stream=pipe)
    for event, info in events:
        progress(event, **info)
    lines = pipe.getvalue().splitlines()
    assert "\r" not in pipe.getvalue() and "\033" not in pipe.getvalue()
    done = [e for e, _ in events if e in ("start", "shared", "kernel_done", "shared_done", "shared_failed")]
    assert len(lines) == len(done)


def test_the_shared_stage_line_says_how_the_stream_is_weighed_and_which_kernels_lack_a_rate():
    pipe = io.StringIO()
    progress = TerminalProgress(False, 1.0, stream=pipe)
    progress("shared", kernels=["m:a", "m:b"], weighted_by="rate", unrated=[])
    assert progress.line.endswith("weighted by the plan's rates...")
    progress("shared", kernels=["m:a", "m:b", "m:c"], weighted_by="inline work", unrated=["m:c"])
    assert "the plan's rates are ignored, no rate for m:c" in progress.line
    progress("shared", kernels=["m:a", "m:b"], weighted_by="inline work", unrated=[])
    assert progress.line.endswith("weighted by equal inline work...")
