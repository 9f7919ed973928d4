"""The settling step of the concurrent phase (``_loadsettle.settle``) on a fake phase: what it measures before an
unsettled choice is taken, with the real choice rules deciding on synthetic measurements."""

from __future__ import annotations

from types import SimpleNamespace

from offload_tuner.calibration._candidates import Candidate
from offload_tuner.calibration._choice import choose
from offload_tuner.calibration._loadsettle import settle

RANGE = (8.0, 160.0)


def cand(t, makespans, lag=0.005):
    return Candidate(t, 0, tuple(makespans), (lag,) * len(makespans), (0.5,) * len(makespans))


class FakeRunner:
    """Measures from a table of true makespans; records what it was asked."""

    def __init__(self, truth, measured):
        self.truth, self.runs, self.asked, self.again = truth, dict(measured), [], []

    def measure_more(self, thresholds):
        new = [t for t in thresholds if t not in self.runs]
        self.asked += new
        for t in new:
            self.runs[t] = cand(t, self.truth[t])
        return bool(new)

    def remeasure(self, thresholds):
        self.again.append(list(thresholds))
        for t in thresholds:
            c = self.runs[t]
            self.runs[t] = cand(t, c.makespan_s + tuple(self.truth[t]), c.lag_p99)
        return True

    def candidates(self):
        return sorted(self.runs.values(), key=lambda c: (c.threshold is None, c.threshold))


class FakePhase:
    def __init__(self, runner, model_threshold):
        self.runner, self.workload_range = runner, RANGE
        self.fit = SimpleNamespace(threshold=model_threshold, factors=None)

    def refit(self):
        return self.fit

    def decide(self, fit, *, budget_cap, capped):
        measured = self.runner.candidates()
        rounds = max(len(c.makespan_s) for c in measured)
        return measured, choose(
            measured, rounds=rounds, budget_cap=budget_cap, capped=capped, workload_range=RANGE, loop_budget_s=0.1
        )


def test_a_lone_best_far_from_the_model_is_taken_only_after_the_octaves_in_between():
    # The first batch: 91 a lone best by 4%, the model proposing 8, nothing measured from 17 to 90. In truth the
    # basin is flat from 32 to 91, and 45 is as fast as 91 with a fraction of its loop lag.
    first = {
        8: cand(8, [0.213, 0.212, 0.214]),
        16: cand(16, [0.215, 0.214, 0.216]),
        91: cand(91, [0.205, 0.204, 0.206], lag=0.037),
        128: cand(128, [0.216, 0.215, 0.217], lag=0.108),
    }
    truth = {45: [0.204, 0.206, 0.205], 91: [0.205, 0.204, 0.206]}
    runner = FakeRunner(truth, first)
    phase = FakePhase(runner, 8)
    measured, choice = phase.decide(phase.fit, budget_cap=128, capped=True)
    assert choice.threshold == 91 and not choice.flat
    _, candidates, settled_choice, wanted = settle(phase, phase.fit, measured, choice, capped=128, capped_on=True)
    assert runner.asked == [45] and wanted.thresholds == (45,)
    assert "octaves from the model's proposal" in wanted.why
    assert settled_choice.threshold == 45 and settled_choice.flat  # tied with 91, and lower lag decides
    assert {c.threshold for c in candidates} == {8, 16, 45, 91, 128}


def test_a_settled_choice_measures_nothing_more():
    first = {t: cand(t, [1.0 + 0.01 * i] * 3) for i, t in enumerate((8, 11, 16, 23))}
    runner = FakeRunner({}, first)
    phase = FakePhase(runner, 8)
    measured, choice = phase.decide(phase.fit, budget_cap=None, capped=False)
    _fit, candidates, after, wanted = settle(phase, phase.fit, measured, choice, capped=None, capped_on=False)
    assert runner.asked == [] and runner.again == [] and wanted.thresholds == ()
    assert after is choice and candidates is measured


def test_a_regret_bound_still_past_the_limit_after_settling_runs_one_more_batch():
    # Noisy rounds: the choice's regret bound stays above 10% after the octave in between is measured.
    first = {8: cand(8, [0.30, 0.22, 0.26]), 91: cand(91, [0.25, 0.19, 0.21])}
    truth = {45: [0.27, 0.2, 0.23], 91: [0.21, 0.2, 0.22], 8: [0.26, 0.25, 0.27], 23: [0.26, 0.25, 0.27]}
    runner = FakeRunner(truth, first)
    phase = FakePhase(runner, 8)
    measured, choice = phase.decide(phase.fit, budget_cap=None, capped=False)
    _, _, after, wanted = settle(phase, phase.fit, measured, choice, capped=None, capped_on=False)
    assert wanted.thresholds and runner.asked
    assert len(runner.again) == 1 and after.threshold in runner.again[0]
