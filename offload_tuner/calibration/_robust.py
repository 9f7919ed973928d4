"""Robust choice under noise (pure): when one short phase is not enough to take its best, and the regret a rerun
may show.

A short concurrent phase measures a handful of candidates a few rounds each. Two situations made reruns swing
(issue 29: an O(n^2) kernel served 16-700 chose 128, 16 and 512 in three standard calibrations, 512 from three
candidates, "one best", reading 1.16x the oracle and breaking the loop budget in a long stream):

* **far from the model**: the measured best lies ``FAR_STEPS`` or more half-octave steps (two octaves) from the
  corrected model's proposal. The model and the measurement disagree by more than its error explains; one
  phase of a few rounds is not the evidence to overrule it on;
* **a lone best among few candidates spanning a wide range**: not tied with anything, with at most
  ``FEW_CANDIDATES`` eligible candidates measured, and more than an octave unmeasured between it and a measured
  neighbour. Whether the curve between them is a slope, a cliff or a plateau is unseen.

Either way the phase measures the octaves in between (:func:`unsettled`: grid points an octave apart from the
best towards the gap, and towards the model's proposal, at most ``MAX_BETWEEN``) before choosing; the choice then
rests on neighbours measured, and the tie band and secondary objective (lag, CPU, fewest offloaded) resolve a
basin that turns out flat.

The choice reports its **regret bound** (:func:`regret_bound`): how much slower than the best measured candidate
a rerun may read it, at two standard errors of the difference, the noise taken at its 90% upper confidence
bound. A choice whose bound is above ``REGRET_LIMIT`` is one the measurement cannot vouch for: more rounds
(:func:`needs_rounds`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from offload_tuner.calibration._candidates import Candidate, degrees_of_freedom, measured_noise, noise_upper_bound
from offload_tuner.calibration._grid import grid_index, grid_point, order_key, snap

FAR_STEPS = 4
"""Half-octave steps (two octaves) between the measured best and the model's proposal beyond which the best is
not taken on one short phase."""
FEW_CANDIDATES = 4
"""A lone best among at most this many eligible candidates, with an unmeasured octave beside it, is checked."""
GAP_STEPS = 2
"""More than this many half-octave steps between two measured candidates leaves an octave unmeasured."""
MAX_BETWEEN = 3
"""At most this many thresholds are added between: a few seconds of rounds, only where the choice is unsettled."""
REGRET_ERRORS = 2.0
"""The regret bound is taken at this many standard errors of a difference of medians."""
REGRET_LIMIT = 0.10
"""A choice whose regret bound passes this (10%: the campaign's acceptance line) asks for more rounds."""


@dataclass(frozen=True, slots=True)
class Unsettled:
    """What to measure before the choice is taken, and why (empty: the choice stands)."""

    thresholds: tuple[int | None, ...]
    why: str = ""


def grid_position(t: int | None, workload_range: tuple[float, float]) -> int:
    """Where a threshold stands on the half-octave grid: "always" (0) at the mix's low end, "never" (None) one
    step past its top, sizes clamped into the mix."""
    lo, hi = workload_range
    if t == 0:
        return grid_index(snap(max(1.0, lo)))
    if t is None:
        return grid_index(snap(hi)) + 1
    return grid_index(snap(min(max(t, lo), hi)))


def unsettled(
    chosen: int | None,
    flat: bool,
    eligible: Sequence[Candidate],
    model_threshold: int | None,
    workload_range: tuple[float, float],
    cap: int | None = None,
) -> Unsettled:
    """The octaves to measure before ``chosen`` (the choice among ``eligible`` measured candidates) is taken, by
    the rules in this module's docstring; ``cap``: nothing above the loop budget's cap is proposed."""
    if not eligible or chosen not in [c.threshold for c in eligible]:
        return Unsettled(())
    position = grid_position(chosen, workload_range)
    positions = sorted({grid_position(c.threshold, workload_range) for c in eligible})
    model = grid_position(model_threshold, workload_range)
    far = abs(position - model) >= FAR_STEPS
    below = [p for p in positions if p < position]
    above = [p for p in positions if p > position]
    gaps = [g for g in ((below[-1] if below else None), (above[0] if above else None)) if g is not None]
    wide = [g for g in gaps if abs(g - position) > GAP_STEPS]
    lone = not flat and len(eligible) <= FEW_CANDIDATES and bool(wide)
    if not far and not lone:
        return Unsettled(())
    targets = set(wide)
    if far:  # towards the model's proposal, up to the nearest measured candidate on that side
        side = below if model < position else above
        targets.add(max(side) if model < position and side else min(side) if side else model)
    points: list[int] = []
    for target in sorted(targets, key=lambda g: abs(g - position)):
        step = GAP_STEPS if target > position else -GAP_STEPS
        for p in range(position + step, target, step):
            if all(abs(p - q) >= GAP_STEPS for q in positions) and p not in points:
                points.append(p)
    points.sort(key=lambda p: abs(p - position))
    lo, hi = grid_position(math.ceil(workload_range[0]), workload_range), grid_position(None, workload_range) - 1
    chosen_points = [grid_point(p) for p in points if lo < p <= hi][:MAX_BETWEEN]
    if cap is not None:
        chosen_points = [t for t in chosen_points if order_key(t) <= order_key(cap)]
    if not chosen_points:
        return Unsettled(())
    why = (
        f"{_fmt(chosen)} is {abs(position - model) / 2:g} octaves from the model's proposal ({_fmt(model_threshold)})"
        if far
        else f"{_fmt(chosen)} is a lone best among {len(eligible)} candidates with an octave or more unmeasured beside it"
    )
    return Unsettled(tuple(chosen_points), why)


def regret_bound(chosen: Candidate, best: Candidate, candidates: Sequence[Candidate]) -> float:
    """How much slower than ``best`` a rerun may read ``chosen``: their measured ratio plus ``REGRET_ERRORS``
    standard errors of the difference of two medians, the pooled noise at its 90% upper confidence bound."""
    upper = noise_upper_bound(measured_noise(candidates), degrees_of_freedom(candidates))
    error = 1.25 * upper * math.sqrt(1 / len(chosen.makespan_s) + 1 / len(best.makespan_s))
    return chosen.makespan / best.makespan * (1 + REGRET_ERRORS * error) - 1


def needs_rounds(regret: float) -> bool:
    """Whether a choice's regret bound asks for more rounds before it is taken."""
    return regret > REGRET_LIMIT


def _fmt(t: int | None) -> str:
    return "never" if t is None else ("always" if t == 0 else str(t))
