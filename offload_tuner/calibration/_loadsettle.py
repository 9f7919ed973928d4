"""The concurrent phase's last steps (impure orchestration, :mod:`_loadphase`'s): settling a choice that one short
phase cannot vouch for (:mod:`_robust`), and the profile's record of the phase.

They work on the phase through :class:`PhaseView` (what :class:`_loadphase._Phase` offers), so that this module
does not import the one that calls it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, Protocol

from offload_tuner.calibration._candidates import Candidate
from offload_tuner.calibration._choice import Choice
from offload_tuner.calibration._grid import offload_from, order_key
from offload_tuner.calibration._loadfactors import predicted_makespans
from offload_tuner.calibration._measure import clock
from offload_tuner.calibration._proposals import FollowUp
from offload_tuner.calibration._robust import Unsettled, needs_rounds, unsettled
from offload_tuner.runtime._policy import LoadFactors, PolicyKnobs, Prediction


class FitView(Protocol):
    """The corrected model (:class:`_loadphase._Fit`)."""

    @property
    def factors(self) -> LoadFactors: ...
    @property
    def threshold(self) -> int | None: ...


class PhaseView(Protocol):
    """What the last steps use of one kernel's phase (:class:`_loadphase._Phase`)."""

    @property
    def knobs(self) -> PolicyKnobs: ...
    @property
    def workload_range(self) -> tuple[float, float]: ...
    @property
    def calls(self) -> Any: ...
    @property
    def sizes(self) -> list[int]: ...
    @property
    def predictions(self) -> list[Prediction]: ...
    @property
    def runner(self) -> Any: ...
    @property
    def seed(self) -> int: ...

    def refit(self) -> Any: ...
    def decide(self, fit: Any, *, budget_cap: int | None, capped: bool) -> tuple[list[Candidate], Choice]: ...
    def long_lag(self, fit: Any, thresholds: Sequence[int | None]) -> dict[int | None, float]: ...


def settle(
    phase: PhaseView, fit: Any, candidates: list[Candidate], choice: Choice, *, capped: int | None, capped_on: bool
) -> tuple[Any, list[Candidate], Choice, Unsettled]:
    """A choice far from the model, or a lone best among few candidates with an octave unmeasured beside it, is
    not taken on one short phase (:func:`_robust.unsettled`): the octaves in between are measured first, and
    if the choice's regret bound still passes the limit, one more batch of rounds of the choice and the
    candidates tied with it or best. Returns the refit, everything measured, the choice, and what was added."""
    eligible = [c for c in candidates if c.threshold not in choice.over_budget]
    if capped_on:
        eligible = [c for c in eligible if order_key(c.threshold) <= order_key(capped)]
    wanted = unsettled(choice.threshold, choice.flat, eligible, fit.threshold, phase.workload_range, cap=capped)
    if not wanted.thresholds or not phase.runner.measure_more(list(wanted.thresholds)):
        return fit, candidates, choice, Unsettled(())
    fit = phase.refit()
    candidates, choice = phase.decide(fit, budget_cap=capped, capped=capped_on)
    if needs_rounds(choice.regret):
        near = [c.threshold for c in candidates if c.threshold in choice.tied or c.threshold == choice.best]
        if phase.runner.remeasure(list(dict.fromkeys([choice.threshold, *near]))):
            fit = phase.refit()
            candidates, choice = phase.decide(fit, budget_cap=capped, capped=capped_on)
    return fit, candidates, choice, wanted


def load_entry(
    phase: PhaseView,
    fit: FitView,
    candidates: list[Candidate],
    choice: Choice,
    *,
    proposal: int | None,
    follow_up: FollowUp,
    capped: int | None,
) -> dict[str, Any]:
    """The profile's ``load`` section: every candidate's runs, with what the corrected and the isolated model
    predicted for it, the fit, the choice and its reason."""
    knobs, rounds, calls = phase.knobs, phase.runner.rounds, phase.calls
    indices = [offload_from(phase.sizes, c.threshold) for c in candidates]
    measured = [c.makespan for c in candidates]
    fitted = predicted_makespans(phase.predictions, indices, knobs, fit.factors)
    raw = predicted_makespans(phase.predictions, indices, knobs, LoadFactors())
    siblings = phase.runner.siblings
    long_lag = phase.long_lag(fit, [c.threshold for c in candidates]) if knobs.loop_budget_s else {}
    return {
        "callers": knobs.concurrency,
        "processes": 1 if siblings is None else 1 + siblings.count,
        **({} if siblings is None else {"sibling_calls": list(phase.runner.sibling_calls)}),
        "calls": len(calls),
        "rounds": max(len(c.makespan_s) for c in candidates),
        "seed": phase.seed,
        "steady_pass": rounds.steady,
        "warmup_calls": rounds.warmup(len(calls), knobs.concurrency),
        "workload_range": list(phase.workload_range),
        "candidates": [
            {
                **c.to_json(),
                "predicted_s": p,
                "isolated_predicted_s": q,
                **({"long_lag_p99_s": long_lag[c.threshold]} if c.threshold in long_lag else {}),
            }
            for c, p, q in zip(candidates, fitted, raw)
        ],
        "factors": fit.factors.to_json(),
        "model_error": _median_error(fitted, measured),
        "isolated_model_error": _median_error(raw, measured),
        "model_threshold": fit.threshold,
        "isolated_model_threshold": proposal,
        "follow_up": follow_up.to_json(),
        "budget_cap": capped,
        "objective": choice.objective,
        "noise": choice.noise,
        "tie_band": choice.band,
        "best": choice.best,
        "chosen": choice.threshold,
        "tied": list(choice.tied),
        "over_budget": list(choice.over_budget),
        "predicted_over_budget": list(choice.predicted_over),
        "regret_bound": round(choice.regret, 4),
        "flat": choice.flat,
        "reason": choice.reason,
        "duration_s": round(clock() - phase.runner.started, 3),
    }


def _median_error(predicted: Sequence[float], measured: Sequence[float]) -> float:
    return statistics.median(abs(p - m) / m for p, m in zip(predicted, measured))
