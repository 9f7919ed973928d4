"""Online adaptation (opt-in): thresholds re-derived in-process from what the service runs, off the hot path.

``offload_tuner.adapt(True)`` or ``OFFLOAD_TUNER_ADAPT=1`` starts one daemon thread that wakes every
``every_s`` seconds and, per kernel the profile trusts, does what ``offload-tuner retune`` does with a stats
file: the threshold for the observed mix, from the profile's models corrected by the observed timings
(:func:`offload_tuner.runtime._retune.retune_kernel`). The hot path is unchanged: it reads the threshold from
its table, which a step replaces by swapping the runtime's snapshot. Learnt from the systems that adapt online:

* **Enough evidence first** (StarPU relearns a size entry only once its errors reach the sample count): a
  step needs ``MIN_NEW_CALLS`` calls since the last one to read the mix, and a timing correction needs
  ``MIN_SAMPLES`` samples of its kind (:mod:`_retune`).
* **Recent evidence** (Dask keeps an exponentially weighted duration per task prefix): the mix decays by
  ``MIX_DECAY`` per step, and corrections use the ``RECENT_SAMPLES`` most recent samples of each kind, so a
  kernel that got slower is followed within a few steps and old traffic fades.
* **Hysteresis** (joblib changes its batch size at most 2x per step): a threshold moves at most
  ``MAX_STEP``-fold per step, and only when the model predicts the mix ``MIN_GAIN`` faster (:mod:`_retune`).
* **Exploration**: a threshold that only ever sees one side of itself near the split cannot tell that the
  other side got cheaper. While adapting, one timed call in two (at most one call in 64 of a size bucket:
  :func:`_stats.exploration`) within 4-fold of the threshold runs the other way, so both sides stay measured.

Never fails a call: a step that raises is reported once (OffloadTunerWarning) and the thresholds in force
stay. A profile loaded afterwards starts adaptation afresh from its own thresholds. Kernels the profile says
never pay to offload are left alone (no offloaded evidence would ever come back to say otherwise).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from offload_tuner.runtime import _runtime, _stats
from offload_tuner.runtime._profile import Profile
from offload_tuner.runtime._retune import SAMPLE_KINDS, KernelModel, Traffic, kernel_models, retune_kernel
from offload_tuner.runtime._stats import BUCKETS, KernelStats, bucket_floor

ADAPT_ENV: Final = "OFFLOAD_TUNER_ADAPT"
DEFAULT_EVERY_S: Final = 30.0
MIN_NEW_CALLS: Final = 256
"""Calls of a kernel since its last step before its mix is read again."""
MIX_DECAY: Final = 0.5
"""Weight the mix read so far keeps at each step (the newest calls weigh 1)."""
RECENT_SAMPLES: Final = 64
"""Most recent samples per kind a step's timing corrections use (a median moves after half of them)."""
MAX_STEP: Final = 2.0
"""A threshold moves at most this many-fold per step."""


@dataclass(frozen=True)
class Adapted:
    """A threshold adaptation chose, and from what."""

    key: str
    threshold: int
    previous: int
    calibrated: int
    at: float
    calls: int
    why: str

    def reason(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.at))
        return (f"adapted at {when}: threshold {self.previous} -> {self.threshold} (profile: {self.calibrated}) "
                f"from {self.calls} recent calls, {self.why}")


class _KernelState:
    __slots__ = ("last_counts", "mix")

    def __init__(self) -> None:
        self.last_counts = [0] * BUCKETS
        self.mix: dict[int, float] = {}


class Adapter:
    """The adaptation state of this process (one, for the installed profile) and its background thread."""

    def __init__(self) -> None:
        self.profile: Profile | None = None
        self.kernels: dict[str, _KernelState] = {}
        self.adapted: dict[str, Adapted] = {}
        self.lock = threading.Lock()
        self.every_s = DEFAULT_EVERY_S
        self.min_new_calls = MIN_NEW_CALLS
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------- the step (pure-ish)

    def step(self, now: float | None = None) -> list[Adapted]:
        """Re-derive every adaptable kernel's threshold once; returns the changes (installed in the runtime)."""
        with self.lock:
            now = time.time() if now is None else now
            profile = _runtime.current_profile()
            if profile is not self.profile:  # a new profile (or none): start afresh from its thresholds
                self.profile, self.kernels, self.adapted = profile, {}, {}
            if profile is None or "transport" not in profile.data:
                return []
            transport, knobs, models = kernel_models(profile.data)
            changes = []
            for stats in list(_stats._by_fn.values()):
                model = models.get(stats.spec.key)
                if model is None or model.threshold is None or not _runtime.profile_decides(stats.spec.fn):
                    continue
                change = self._step_kernel(stats, model, transport, knobs, now)
                if change is not None:
                    self.adapted[change.key] = change
                    changes.append(change)
            if changes:
                _runtime.install_adapted(profile, {a.key: (a.threshold, a.reason()) for a in self.adapted.values()})
            return changes

    def _step_kernel(self, stats: KernelStats, model: KernelModel, transport: Any, knobs: Any,
                     now: float) -> Adapted | None:
        key = stats.spec.key
        state = self.kernels.setdefault(key, _KernelState())
        counts = [i + o for i, o in zip(stats.inline, stats.offload)]
        new_calls = sum(counts) - sum(state.last_counts)
        if new_calls < self.min_new_calls:
            return None
        for floor in state.mix:
            state.mix[floor] *= MIX_DECAY
        for b, (now_count, before) in enumerate(zip(counts, state.last_counts)):
            if now_count > before:
                floor = bucket_floor(b)
                state.mix[floor] = state.mix.get(floor, 0.0) + (now_count - before)
        state.last_counts = counts
        recent = {kind: stats.samples[kind].rows()[-RECENT_SAMPLES:] for kind in SAMPLE_KINDS}
        traffic = Traffic(inline=dict(state.mix),
                          samples={kind: [(int(size), float(s)) for _, size, s in rows] for kind, rows in recent.items()})
        current = self.adapted[key].threshold if key in self.adapted else model.threshold
        assert current is not None  # kernels that never pay are not adapted
        proposal = retune_kernel(model, transport, knobs, traffic, current)
        target = limited(current, proposal.new)
        if target == current:
            return None
        factors = ", ".join(f"{k} x{r:.2f} ({n} samples)" for k, (r, n) in proposal.factors.items())
        why = (f"timings {factors}" if factors else "the profile's timings") + (
            f", model predicts the mix {proposal.gain:.0%} faster" if proposal.new == target else
            f", heading for {'never' if proposal.new is None else proposal.new} (at most {MAX_STEP:g}x per step)")
        calibrated = self.adapted[key].calibrated if key in self.adapted else model.threshold
        return Adapted(key, target, current, calibrated, now, new_calls, why)

    # ------------------------------------------------------------------------------------ the thread

    def start(self, every_s: float) -> None:
        self.every_s = every_s
        if self.thread is not None and self.thread.is_alive():
            return
        self.stop.clear()
        self.thread = threading.Thread(target=self._run, name="offload-tuner-adapt", daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        thread, self.thread = self.thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                self.step()
            except Exception as exc:  # never let adaptation take the service down: keep what is in force
                _runtime._warn_once(
                    f"adapt-failed:{type(exc).__name__}",
                    f"offload-tuner: online adaptation failed ({type(exc).__name__}: {exc}); "
                    "the thresholds in force stay (said once per cause)",
                )


def limited(current: int, proposal: int | None) -> int:
    """The hysteresis: ``proposal`` (None: never offload) clamped to within ``MAX_STEP``-fold of ``current``."""
    base = max(1, current)
    high = int(base * MAX_STEP)
    low = math.ceil(base / MAX_STEP) if current > 1 else 0
    if proposal is None:
        return high
    return min(max(proposal, low), high)


_adapter = Adapter()


def adapt(enabled: bool | None = None, *, every_s: float | None = None, min_calls: int | None = None) -> bool:
    """Turn online adaptation on or off (see the module docstring); returns whether it was on.

    ``every_s``: seconds between steps (default 30); ``min_calls``: calls of a kernel since its last step
    before a step reads its mix (default 256). Turning adaptation off keeps the thresholds adapted so far
    until a profile is loaded again."""
    was = _adapter.thread is not None
    if every_s is not None and (isinstance(every_s, bool) or not isinstance(every_s, (int, float)) or not every_s > 0):
        raise ValueError(f"adapt() needs every_s > 0 seconds, got {every_s!r}")
    if min_calls is not None and (isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 1):
        raise ValueError(f"adapt() needs min_calls >= 1, got {min_calls!r}")
    if min_calls is not None:
        _adapter.min_new_calls = min_calls
    if enabled is None:
        return was
    if enabled:
        _runtime.set_exploration(True)
        _adapter.start(float(every_s) if every_s is not None else _adapter.every_s)
    else:
        _adapter.halt()
        _runtime.set_exploration(False)
    return was


def start_from_environment() -> None:
    """``OFFLOAD_TUNER_ADAPT=1`` (or a number of seconds between steps): adapt from the first kernel call."""
    raw = os.environ.get(ADAPT_ENV, "").strip()
    if raw in ("", "0"):
        return
    try:
        every = DEFAULT_EVERY_S if raw.lower() in ("1", "true", "yes", "on") else float(raw)
        if not every > 0:
            raise ValueError
    except ValueError:
        _runtime._warn_once(f"adapt-env:{raw}", f"offload-tuner: {ADAPT_ENV}={raw!r} is neither 1 nor a number of "
                            "seconds > 0; online adaptation stays off")
        return
    adapt(True, every_s=every)
