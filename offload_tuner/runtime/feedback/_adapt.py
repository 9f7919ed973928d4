"""Online adaptation (opt-in): the model proposes a threshold for what the service runs; a measurement under
the service's own load decides whether it stays. Off the hot path.

``offload_tuner.adapt(True)`` or ``OFFLOAD_TUNER_ADAPT=1`` starts one daemon thread that wakes every
``every_s`` seconds. Per kernel the profile trusts, once ``min_calls`` new calls were seen (a *window*):

1. **Propose.** What ``offload-tuner retune`` does with a stats file: the threshold for the observed mix from
   the profile's models corrected by the observed timings (:func:`offload_tuner.runtime.feedback._retune.retune_kernel`),
   at most ``MAX_STEP``-fold from the threshold in force (joblib changes its batch size at most 2x per step),
   and never past the loop budget: a candidate that would run inline a size of the mix predicted past it is
   capped at that size (the budget size), however far that is from the threshold in force.
2. **Try it.** The model's offloaded side is the part that misleads: in the adaptive benchmark, `retune` moved
   kernels to thresholds slower than the static profile under load, because offloading more made
   the process's *other* calls slower (the pool's threads compete for the GIL and the cores), which no
   per-call timing of the offloaded calls shows. So a proposal is a trial: the threshold in force and the
   candidate alternate window by window, the incumbent first and last (``TRIAL_PAIRS`` candidate windows),
   and each window's *pace* is measured: wall seconds per unit of work served (the calls of the window
   weighted by the model's inline time for their size, a fixed yardstick, so a window of larger calls is not
   slower for it). A loaded service's pace is its throughput. Each candidate window is compared with the mean
   of the incumbent's windows on either side of it, so a steady trend (traffic, the host's speed) cancels.
3. **Decide.** The candidate stays if its median pace ratio is ``ACCEPT_RATIO`` or better and it was faster
   in every comparison. A trial whose median says better but that lost a comparison (one short window can be
   far off while the median holds) goes on to
   ``EXTENDED_PAIRS`` pairs and is kept if the median still holds and it lost at most ``EXTENDED_LOSSES``.
   Simulated (lognormal noise per window, sd 0.1 / 0.2; 3000 trials each): a candidate no better than the
   incumbent is kept 18% / 19% of the time (15% / 16% with three pairs only), one 10% slower 1% / 7%
   (1% / 6%), 8% faster 55% / 37% (43% / 29%), 15% faster 88% / 58% (75% / 46%); trials take 9-10 windows on
   average instead of 7. Otherwise the incumbent is restored and no proposal is tried for ``COOLDOWN_WINDOWS``
   windows. A lightly loaded service serves its work at the pace it arrives whatever the threshold, so its
   trials tie and the threshold in force (the calibrated one, first) stays. A threshold in force that is itself
   past the budget is no incumbent: the capped candidate is accepted without a trial (a pace measures throughput,
   which running past the budget inline can win, not the loop lag the budget bounds).

Evidence rules (StarPU relearns a size entry only once its errors reach the sample count; Dask keeps an
exponentially weighted duration per task prefix): the mix decays by ``MIX_DECAY`` per window, timing
corrections use the ``RECENT_SAMPLES`` most recent samples of each kind and need ``MIN_SAMPLES`` of them
(:mod:`_retune`). **Exploration**: while adapting, timed calls within 4-fold of a threshold the profile
trusts run the other way, one call in ``max(2 * sample_every, 64)`` of a size bucket (half the timed calls at
the default sampling; :func:`_stats.exploration`), so both sides of it stay measured for the corrections.

Never fails a call: a step that raises is reported once (OffloadTunerWarning) and the thresholds in force
stay. Stopping adaptation ends a trial in progress (the incumbent is restored) and keeps what was accepted
until a profile is loaded again, which starts adaptation afresh from its own thresholds. A kernel the profile
says never pays to offload is adapted too (its trials offload the largest sizes seen first).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

from offload_tuner.runtime import _decision, _entries, _log, _state, _stats
from offload_tuner.runtime._policy import budget_capped, predict
from offload_tuner.runtime._profile import Profile
from offload_tuner.runtime._stats import KernelStats, bucket_floor
from offload_tuner.runtime._warn import warn_once
from offload_tuner.runtime.feedback._retune import (
    KernelModel,
    Retuned,
    Traffic,
    budget_reason,
    kernel_models,
    retune_kernel,
    traffic_of,
)

ADAPT_ENV: Final = "OFFLOAD_TUNER_ADAPT"
DEFAULT_EVERY_S: Final = 30.0
MIN_NEW_CALLS: Final = 256
"""Calls of a kernel that make a window (the unit of evidence: a pace measured, the mix read)."""
MIX_DECAY: Final = 0.5
"""Weight the mix read so far keeps at each window (the newest calls weigh 1)."""
RECENT_SAMPLES: Final = 64
"""Most recent samples per kind a proposal's timing corrections use (a median moves after half of them)."""
MAX_STEP: Final = 2.0
"""A proposal moves a threshold at most this many-fold."""
TRIAL_PAIRS: Final = 3
"""Windows of the candidate, each compared with the incumbent's windows on either side of it."""
TRIAL_WINDOWS: Final = 2 * TRIAL_PAIRS + 1
"""A trial's windows at its first look: the incumbent's first and last, the candidate's between (I C I C I C I)."""
EXTENDED_PAIRS: Final = 7
"""A promising trial (median at least ``ACCEPT_RATIO`` but not better in every pair) goes on to this many pairs."""
MAX_TRIAL_WINDOWS: Final = 2 * EXTENDED_PAIRS + 1
EXTENDED_LOSSES: Final = 1
"""Pairs of an extended trial the candidate may lose and still be kept."""
ACCEPT_RATIO: Final = 0.97
"""The candidate's median paired pace must be at least this much better (3% less time per unit of work), and
better in every pair (in all but ``EXTENDED_LOSSES`` once extended)."""
COOLDOWN_WINDOWS: Final = 8
"""Windows after a rejected trial before the next proposal (the mix and the timings move on meanwhile)."""


@dataclass(frozen=True)
class Adapted:
    """A change of the threshold in force (None: never offload): a trial's arm, an acceptance or a rejection."""

    key: str
    threshold: int | None
    previous: int | None
    calibrated: int | None
    calls: int
    why: str
    phase: str
    """"trying", "accepted" or "rejected"."""
    at: float = field(default_factory=time.time)

    def reason(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.at))
        return (
            f"adapted at {when} ({self.phase}): threshold {_text(self.previous)} -> {_text(self.threshold)} "
            f"(profile: {_text(self.calibrated)}) after {self.calls} calls; {self.why}"
        )


def _proposal_text(proposal: Retuned, candidate: int | None) -> str:
    """Why the model proposed ``candidate``: the timings it used and the gain it predicts, or where it heads. A
    proposal the loop budget decided can be predicted slower on the mix: that is the budget's price."""
    factors = ", ".join(f"{k} x{r:.2f} ({n} samples)" for k, (r, n) in proposal.factors.items())
    timings = f"timings {factors}" if factors else "the profile's timings"
    if proposal.new != candidate:
        return f"{timings}, heading for {_text(proposal.new)} (at most {MAX_STEP:g}x per step)"
    if proposal.gain < 0:
        return f"{timings}, model predicts the mix {-proposal.gain:.0%} slower, the budget's price"
    return f"{timings}, model predicts the mix {proposal.gain:.0%} faster"


def _text(threshold: int | None) -> str:
    return "never" if threshold is None else str(threshold)


@dataclass
class _Trial:
    incumbent: int | None
    incumbent_reason: str | None
    candidate: int | None
    proposal: str
    """Why the model proposed the candidate."""
    paces: list[float]
    """Seconds per unit of work of each window, alternating: incumbent, candidate, ..., incumbent."""


class _KernelState:
    __slots__ = ("calls", "cooldown", "mix", "reason", "threshold", "trial", "window_counts", "window_start")

    def __init__(self, threshold: int | None) -> None:
        self.window_counts: list[int] | None = None
        self.window_start = 0.0
        self.mix: dict[int, float] = {}
        self.threshold = threshold
        """In force: the profile's until a trial's candidate is accepted."""
        self.reason: str | None = None
        """What decide() says for it (None: the profile's own)."""
        self.trial: _Trial | None = None
        self.cooldown = 0
        self.calls = 0


class Adapter:
    """The adaptation state of this process (one, for the installed profile) and its background thread."""

    def __init__(self) -> None:
        self.profile: Profile | None = None
        self.kernels: dict[str, _KernelState] = {}
        self.lock = threading.Lock()
        self.every_s = DEFAULT_EVERY_S
        self.min_new_calls = MIN_NEW_CALLS
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.events: dict[str, int] = {"trying": 0, "accepted": 0, "rejected": 0}
        """Changes of the threshold in force so far, by phase (a trial's every switch counts as trying)."""

    def table(self) -> dict[str, tuple[int | None, str]]:
        """Kernel key -> (threshold, reason) for every kernel whose threshold adaptation set."""
        return {key: (k.threshold, k.reason) for key, k in self.kernels.items() if k.reason is not None}

    # ------------------------------------------------------------------------------------------- the step

    def step(self, now: float | None = None) -> list[Adapted]:
        """One window's worth of work for every kernel that completed a window; returns the changes of the
        threshold in force (installed in the runtime)."""
        with self.lock:
            now = time.monotonic() if now is None else now
            profile = _state.current_profile()
            if profile is not self.profile:  # a new profile (or none): start afresh from its thresholds
                self.profile, self.kernels = profile, {}
            if profile is None or "transport" not in profile.data:
                return []
            transport, knobs, models = kernel_models(profile.data)
            changes = []
            for stats in list(_stats._by_fn.values()):
                model = models.get(stats.spec.key)
                if model is None or not _entries.profile_decides(stats.spec.fn):
                    continue
                state = self.kernels.setdefault(model.key, _KernelState(model.threshold))
                try:
                    change = self._window(state, stats, model, transport, knobs, now)
                except Exception as exc:  # this kernel's window is lost; the others' changes are installed
                    _failed(f"adapt-failed:{model.key}:{type(exc).__name__}", exc, model.key, profile)
                    continue
                if change is not None:
                    state.threshold, state.reason = change.threshold, change.reason()
                    self.events[change.phase] += 1
                    changes.append(change)
            if changes:
                _entries.install_adapted(profile, self.table())
                for change in changes:  # once installed: a record says what is in force
                    _logged(change, profile)
            return changes

    def _window(
        self, state: _KernelState, stats: KernelStats, model: KernelModel, transport: Any, knobs: Any, now: float
    ) -> Adapted | None:
        """Close the kernel's window if it has ``min_calls`` calls: its pace, the mix; then the trial's next move."""
        counts = [i + o for i, o in zip(stats.inline, stats.offload)]
        if state.window_counts is None:  # the first look (or the first since adaptation restarted)
            state.window_counts, state.window_start = counts, now
            return None
        new = [c - before for c, before in zip(counts, state.window_counts)]
        if min(new) < 0:  # reset_stats() since the window opened: open it again
            state.window_counts, state.window_start = counts, now
            return None
        calls = sum(new)
        if calls < self.min_new_calls:
            return None
        work = sum(n * _yardstick(model, transport, knobs, b) for b, n in enumerate(new) if n > 0)
        pace = (now - state.window_start) / work if work > 0 else math.inf
        state.window_counts, state.window_start = counts, now
        state.calls += calls
        for floor in state.mix:
            state.mix[floor] *= MIX_DECAY
        for b, n in enumerate(new):
            if n > 0:
                state.mix[bucket_floor(b)] = state.mix.get(bucket_floor(b), 0.0) + n
        if state.trial is not None:
            return self._trial_window(state, model, pace)
        if state.cooldown > 0:
            state.cooldown -= 1
            return None
        return self._propose(state, stats, model, transport, knobs, pace)

    def _propose(
        self, state: _KernelState, stats: KernelStats, model: KernelModel, transport: Any, knobs: Any, pace: float
    ) -> Adapted | None:
        samples = traffic_of(stats).samples
        traffic = Traffic(
            inline=dict(state.mix), samples={kind: rows[-RECENT_SAMPLES:] for kind, rows in samples.items()}
        )
        proposal = retune_kernel(model, transport, knobs, traffic, state.threshold)
        top = 2 * max(state.mix)  # above every size seen (the upper end of the highest bucket)
        candidate = budget_capped(limited(state.threshold, proposal.new, top), proposal.budget_size)
        if candidate == state.threshold:
            return None
        why = _proposal_text(proposal, candidate)
        past = budget_capped(state.threshold, proposal.budget_size) != state.threshold  # in force: past the budget
        note = proposal.budget or (
            budget_reason(proposal.costs, transport, knobs, proposal.budget_size) if past else None
        )
        if note is not None:
            why += f"; {note}"
        if past:
            return Adapted(
                model.key,
                candidate,
                state.threshold,
                model.threshold,
                state.calls,
                f"no trial: the threshold in force is past the loop budget; model: {why}",
                "accepted",
            )
        state.trial = _Trial(
            state.threshold, state.reason, candidate, why, [pace]
        )  # the window just closed: the incumbent's
        return Adapted(
            model.key,
            candidate,
            state.threshold,
            model.threshold,
            state.calls,
            f"trying it against the incumbent, window 2 of {TRIAL_WINDOWS}; model: {why}",
            "trying",
        )

    def _trial_window(self, state: _KernelState, model: KernelModel, pace: float) -> Adapted | None:
        trial = state.trial
        assert trial is not None
        trial.paces.append(pace)
        done = len(trial.paces)
        paces = trial.paces
        if done in (TRIAL_WINDOWS, MAX_TRIAL_WINDOWS):  # a look: the incumbent's window has just closed
            pairs = done // 2
            # Each candidate window against the mean of the incumbent's on either side: a steady trend (traffic
            # ramping up, the host slowing down) weighs on both sides alike and cancels.
            ratios = sorted(paces[i] / ((paces[i - 1] + paces[i + 1]) / 2) for i in range(1, done, 2))
            ratio = ratios[len(ratios) // 2]
            losses = sum(r >= 1.0 for r in ratios)
            allowed = 0 if pairs == TRIAL_PAIRS else EXTENDED_LOSSES
            measured = (
                f"the candidate's pace (seconds per unit of work) was {ratio:.2f}x the incumbent's "
                f"(median of {pairs} paired windows, {ratios[0]:.2f}-{ratios[-1]:.2f}, slower in {losses})"
            )
            if ratio <= ACCEPT_RATIO and losses <= allowed:
                state.trial = None
                return Adapted(
                    model.key,
                    trial.candidate,
                    trial.incumbent,
                    model.threshold,
                    state.calls,
                    f"{measured}; model: {trial.proposal}",
                    "accepted",
                )
            if ratio > ACCEPT_RATIO or done == MAX_TRIAL_WINDOWS:
                state.trial, state.cooldown = None, COOLDOWN_WINDOWS
                return Adapted(
                    model.key,
                    trial.incumbent,
                    trial.candidate,
                    model.threshold,
                    state.calls,
                    f"kept: {measured}; {ACCEPT_RATIO} or better, and better in every pair (all but "
                    f"{EXTENDED_LOSSES} of {EXTENDED_PAIRS} once extended), needed; model: {trial.proposal}",
                    "rejected",
                )
        last = TRIAL_WINDOWS if done < TRIAL_WINDOWS else MAX_TRIAL_WINDOWS
        arm = trial.candidate if done % 2 == 1 else trial.incumbent  # I C I C ... I
        extended = " (extended: better by its median, not in every pair)" if done >= TRIAL_WINDOWS else ""
        return Adapted(
            model.key,
            arm,
            state.threshold,
            model.threshold,
            state.calls,
            f"trial of {_text(trial.candidate)} against {_text(trial.incumbent)}, window {done + 1} of "
            f"{last}{extended}; model: {trial.proposal}",
            "trying",
        )

    def restart_windows(self, end_trials: bool) -> None:
        """Adaptation stopped or starting again: the next window starts at the next step (time and calls in
        between were not adaptation's); with ``end_trials``, a trial in progress ends (the incumbent is
        restored), else it goes on with its next window."""
        with self.lock:
            for state in self.kernels.values():
                state.window_counts = None
                if end_trials and state.trial is not None:
                    state.threshold, state.reason = state.trial.incumbent, state.trial.incumbent_reason
                    state.trial = None
            if isinstance(self.profile, Profile):
                _entries.install_adapted(self.profile, self.table())

    # ------------------------------------------------------------------------------------ the thread

    def start(self, every_s: float) -> None:
        self.every_s = every_s
        if self.thread is not None and self.thread.is_alive():
            return
        self.restart_windows(end_trials=False)
        self.stop = threading.Event()  # its own: a thread that outlived halt()'s join still sees its stop
        self.thread = threading.Thread(target=self._run, args=(self.stop,), name="offload-tuner-adapt", daemon=True)
        self.thread.start()

    def halt(self, end_trials: bool = True) -> None:
        """Stop the thread. ``end_trials=False`` pauses (a benchmark interleaving other policies with a
        service that, for it, never stopped): trials go on when adaptation starts again."""
        self.stop.set()
        thread, self.thread = self.thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.restart_windows(end_trials)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            try:
                self.step()
            except Exception as exc:  # never let adaptation take the service down: keep what is in force
                _failed(f"adapt-failed:{type(exc).__name__}", exc, None, self.profile)


def _logged(change: Adapted, profile: Profile) -> None:
    """An adaptation step (a trial's arm, an acceptance, a rejection): one INFO record, off the hot path."""
    _log.event(
        "adaptation_step",
        _log.INFO,
        f"kernel {change.key}: {change.reason()}",
        kernel=change.key,
        backend=profile.executor_kind,
        reason=change.why,
        phase=change.phase,
        threshold=change.threshold,
        previous=change.previous,
    )


def _failed(key: str, exc: Exception, kernel: str | None, profile: Profile | None) -> None:
    """A step that raised: warned once per cause (a bug to report), a WARNING record each time (the thresholds
    in force stay; a step runs every ``every_s`` seconds at most, never per call)."""
    what = f"{type(exc).__name__}: {exc}"
    failed = f"online adaptation failed for {kernel} ({what})" if kernel else f"online adaptation failed ({what})"
    kept = "its threshold in force stays" if kernel else "the thresholds in force stay"
    warn_once(key, f"offload-tuner: {failed}; {kept} (said once per cause)")
    backend = profile.executor_kind if profile is not None else None
    _log.event("adaptation_failed", _log.WARNING, f"{failed}; {kept}", kernel=kernel, backend=backend, reason=what)


def _yardstick(model: KernelModel, transport: Any, knobs: Any, bucket: int) -> float:
    """The unit of work of a call in ``bucket``: the model's inline seconds at the bucket's middle (log)."""
    size = max(1.0, bucket_floor(bucket) * math.sqrt(2))
    return predict(model.costs, transport, knobs, size).inline_s


def limited(current: int | None, proposal: int | None, top: int) -> int | None:
    """The hysteresis: ``proposal`` clamped to within ``MAX_STEP``-fold of ``current``. None is never
    offloading, which sits at ``top`` (above every size seen): from never, the first step offloads at most the
    top ``MAX_STEP``-fold of the sizes seen; a threshold stepping up past ``top`` is never again. A threshold
    above ``top`` decides like never and steps from ``top`` too: a mix of 8-80 under a threshold of 256 spent
    its first step on 128, the same decisions, which a trial can only reject (the mix-shift benchmark). For
    the same reason a proposal that decides every size seen as ``current`` does keeps ``current``."""
    above = current is None or current >= top
    if proposal == current or (above and (proposal is None or proposal >= top)):
        return current
    base = max(1, top if current is None else min(current, top))
    high = int(base * MAX_STEP)
    low = math.ceil(base / MAX_STEP) if base > 1 else 0
    if proposal is None:
        return None if current is None or high >= top else high
    limited_ = min(max(proposal, low), high)
    return None if current is None and limited_ >= top else limited_


_adapter = Adapter()


def adapt(enabled: bool | None = None, *, every_s: float | None = None, min_calls: int | None = None) -> bool:
    """Turn online adaptation on or off (see the module docstring); returns whether it was on.

    ``every_s``: seconds between steps (default 30); ``min_calls``: calls of a kernel since its last step
    before a step reads its mix (default 256). Turning adaptation off keeps the thresholds adapted so far
    until a profile is loaded again."""
    was = _adapter.thread is not None
    if every_s is not None and (
        isinstance(every_s, bool) or not isinstance(every_s, (int, float)) or not 0 < every_s < math.inf
    ):
        raise ValueError(f"adapt() needs a finite every_s > 0 seconds, got {every_s!r}")
    if min_calls is not None and (isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 1):
        raise ValueError(f"adapt() needs min_calls >= 1, got {min_calls!r}")
    if min_calls is not None:
        _adapter.min_new_calls = min_calls
    if enabled is None:
        return was
    if enabled:
        _decision.set_exploration(True)
        _adapter.start(float(every_s) if every_s is not None else _adapter.every_s)
    else:
        _adapter.halt()
        _decision.set_exploration(False)
    return was


def pause() -> None:
    """Stop adapting without ending trials in progress (for benchmarks: see :meth:`Adapter.halt`)."""
    _adapter.halt(end_trials=False)
    _decision.set_exploration(False)


def start_from_environment() -> None:
    """``OFFLOAD_TUNER_ADAPT=1`` (or a number of seconds between steps): adapt from the first kernel call."""
    raw = os.environ.get(ADAPT_ENV, "").strip()
    if raw in ("", "0"):
        return
    try:
        every = DEFAULT_EVERY_S if raw.lower() in ("1", "true", "yes", "on") else float(raw)
        if not 0 < every < math.inf:
            raise ValueError
    except ValueError:
        warn_once(
            f"adapt-env:{raw}",
            f"offload-tuner: {ADAPT_ENV}={raw!r} is neither 1 nor a number of seconds > 0; online adaptation stays off",
        )
        return
    adapt(True, every_s=every)
