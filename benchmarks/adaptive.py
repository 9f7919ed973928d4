"""The adaptive policy of the benchmarks: the profile decides, with online adaptation on (``offload_tuner.adapt``).

Benchmarks run seconds, production runs hours: adaptation's clock is compressed (a step every ``every_s``
of a fraction of a second, with more calls timed) so that it has as many steps to act on within a run as a
service would have within minutes. A window still needs the production default of 256 new calls: with
64-call windows a trial's paired comparison varied several-fold, and the mix-shift benchmark's
adaptive policy rejected the gains the oracle measured. The benchmarks run each round in slices of ~0.2 s
(``benchmarks.workload.CHUNKS``) with adaptation paused between them, shorter than a window: a warm policy
learns only in its learning passes (whole runs), and the rounds measure what it learnt. Its rules are the
production ones: at most 2x per step, exploration capped, the corrections of ``retune``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import offload_tuner
from benchmarks.workload import Calls, DynamicPolicy, run_policy
from offload_tuner.runtime import _entries, _stats
from offload_tuner.runtime._registry import KernelSpec
from offload_tuner.runtime.feedback import _adapt

EXTRA_LEARN_PASSES = 4
"""Runs :meth:`Adaptive.learn` may add while a trial is still open, before it ends the trial."""


class Adaptive(DynamicPolicy):
    """``warm=False``: every run starts from the profile's thresholds (a service that just started).
    ``warm=True``: what adaptation learnt carries over from run to run (a service that has been running);
    either way the policies between its runs see the static profile."""

    def __init__(
        self,
        spec: KernelSpec,
        profile: Path,
        *,
        every_s: float = 0.25,
        min_calls: int = 256,
        sample_every: int = 4,
        warm: bool = False,
    ) -> None:
        self.spec, self.profile, self.warm = spec, profile, warm
        self.every_s, self.min_calls, self.sample_every = every_s, min_calls, sample_every
        self.thresholds: list[int | None] = []
        """The threshold in force at the end of each run."""
        self.reasons: list[str] = []
        self.trials_ended = 0
        """Trials still open after learning, ended with their incumbent kept (see :meth:`learn`)."""
        self._before = 0

    def settings(self) -> dict[str, object]:
        return {
            "every_s": self.every_s,
            "min_calls": self.min_calls,
            "sample_every": self.sample_every,
            "warm": self.warm,
        }

    def learn(self, calls: Calls, callers: int, passes: int, *, extra: int = 0) -> None:
        """Run the calls ``passes`` times under this policy before anything is measured (a service that has
        been running: only meaningful with ``warm=True``), then up to ``extra`` more while a trial is open;
        a trial still open after that is ended, its incumbent kept. The measured rounds run in slices shorter
        than a window, where adaptation holds what it learnt: a half-run trial would leave the policy
        alternating between two thresholds for the whole measurement."""
        for _ in range(passes):
            run_policy(self.spec, calls, "adaptive", callers, dynamic={"adaptive": self})
        for _ in range(extra):
            if not self.trying():
                break
            run_policy(self.spec, calls, "adaptive", callers, dynamic={"adaptive": self})
        if self.trying():
            _adapt._adapter.restart_windows(end_trials=True)  # installs the adapted table: take it back down
            _entries.install_adapted(offload_tuner.current_profile(), {})  # type: ignore[arg-type]
            self.trials_ended += 1

    def trying(self) -> bool:
        """Whether adaptation has a trial open for this kernel."""
        state = _adapt._adapter.kernels.get(self.spec.key)
        return state is not None and state.trial is not None

    def record(self) -> dict[str, object]:
        """What the report keeps: the settings, and the threshold and decide() reason after each run."""
        return {
            "settings": self.settings(),
            "thresholds": self.thresholds,
            "reasons": self.reasons,
            "trials_ended": self.trials_ended,
        }

    def _offloaded_so_far(self) -> int:
        stats = _stats.stats_for(self.spec.fn)
        return sum(stats.offload) if stats is not None else 0

    def offloaded(self) -> int:
        return self._offloaded_so_far() - self._before

    @contextmanager
    def during(self) -> Iterator[None]:
        previous_every = offload_tuner.sample_every(self.sample_every)
        if not self.warm:  # a profile loaded again: adaptation starts afresh from its thresholds
            offload_tuner.load_profile(self.profile, strict=True, check_host=False)
        self._before = self._offloaded_so_far()
        offload_tuner.adapt(True, every_s=self.every_s, min_calls=self.min_calls)  # installs what it accepted
        try:
            yield
        finally:
            if self.warm:  # the service never stopped: a trial in progress goes on in its next run
                _adapt.pause()
            else:
                offload_tuner.adapt(False)
            decision = offload_tuner.decide(self.spec.fn, *self.spec.sample(1))  # type: ignore[misc]
            self.thresholds.append(decision.threshold)
            self.reasons.append(decision.reason)
            if self.warm:  # the other policies see the static profile; adapt(True) installs it again
                _entries.install_adapted(offload_tuner.current_profile(), {})  # type: ignore[arg-type]
            else:
                offload_tuner.load_profile(self.profile, strict=True, check_host=False)
            offload_tuner.sample_every(previous_every)
