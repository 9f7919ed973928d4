"""Which thresholds the concurrent phase measures (pure): the first candidates, and the corrected model's
follow-ups worth a batch of rounds.

Measuring is the phase's whole cost, so what to measure is decided here from the model and what was already
measured, apart from the orchestration that runs it (:mod:`_loadphase`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from offload_tuner.calibration._candidates import Candidate, measured_noise, tie_band
from offload_tuner.calibration._choice import _fmt
from offload_tuner.calibration._grid import grid_index, grid_point, offload_from, order_key, snap, snap_down
from offload_tuner.calibration._loadfactors import predicted_makespans
from offload_tuner.runtime._policy import (
    KernelCosts,
    LoadFactors,
    PolicyKnobs,
    Prediction,
    TransportModel,
    offload_pays,
    predict,
)

NEIGHBOUR_STEPS = 2
"""Neighbours of the model's choice are this many half-octave grid steps away (an octave)."""


def proposals(
    model_choice: int | None, cap: int | None, workload_range: tuple[float, float], *, neighbours: bool = True
) -> list[int | None]:
    """The first candidates, most informative first: the model's choice on the grid, the budget cap, always,
    never (unless the budget rules it out), and the grid points an octave either side of the model's choice."""
    lo, hi = workload_range
    centre = model_choice if model_choice not in (None, 0) else (snap(hi) if model_choice is None else snap(lo))
    k = grid_index(snap(centre))
    first = [on_grid(model_choice)] + ([] if cap is None else [snap_down(cap)])
    out = first + [0] + ([None] if cap is None else [])
    if neighbours:
        out += [grid_point(k - NEIGHBOUR_STEPS), grid_point(k + NEIGHBOUR_STEPS)]
    return list(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What the corrected model proposed after the first batch, what of it is measured, and why the rest is not."""

    proposed: tuple[int | None, ...]
    measured: tuple[int | None, ...]
    skipped: tuple[tuple[int | None, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "proposed": list(self.proposed),
            "measured": list(self.measured),
            "skipped": [{"threshold": t, "why": why} for t, why in self.skipped],
        }


def worth_measuring(
    proposed: Sequence[int | None],
    measured: Sequence[Candidate],
    sizes: Sequence[int],
    predictions: Sequence[Prediction],
    knobs: PolicyKnobs,
    factors: LoadFactors,
    capped: int | None,
    workload_range: tuple[float, float],
) -> FollowUp:
    """The corrected model's proposals worth a follow-up batch: those the loop budget allows that split the stream
    unlike anything measured, and either lie where nothing the budget allows was measured (more than one
    half-octave step from it; "always" stands at the mix's low end, "never" a step past its top) or are predicted
    faster than the best candidate measured within the budget by more than the measured tie band.

    In a flat basin the model's best moves several-fold from run to run while it predicts neighbouring
    candidates within a few percent of each other, and a follow-up batch there costs seconds of rounds. Comparing prediction with prediction, the model's own bias
    cancels. Where it points past everything measured, or promises more than the noise, the measurement
    decides."""
    splits = {offload_from(sizes, c.threshold): c.threshold for c in measured}
    allowed = [c for c in measured if capped is None or order_key(c.threshold) <= order_key(capped)]
    band = tie_band(measured_noise(measured), max(len(c.makespan_s) for c in measured)) if measured else 0.0

    def model(t: int | None) -> float:
        return predicted_makespans(predictions, [offload_from(sizes, t)], knobs, factors)[0]

    best = min(allowed, key=lambda c: c.makespan) if allowed else None
    chosen: list[int | None] = []
    skipped: list[tuple[int | None, str]] = []
    for t in dict.fromkeys(proposed):
        split = offload_from(sizes, t)
        if split in splits:
            twin = splits[split]
            skipped.append(
                (t, "measured in the first batch" if twin == t else f"splits the calls like {_fmt(twin)}, measured")
            )
            continue
        if capped is not None and order_key(t) > order_key(capped):
            skipped.append((t, f"above the loop budget's cap ({_fmt(capped)})"))
            continue
        splits[split] = t
        why = _inside_noise(t, allowed, best, band, model, workload_range)
        if why is None:
            chosen.append(t)
        else:
            skipped.append((t, why))
    return FollowUp(tuple(dict.fromkeys(proposed)), tuple(chosen), tuple(skipped))


def _inside_noise(
    t: int | None,
    allowed: Sequence[Candidate],
    best: Candidate | None,
    band: float,
    model: Callable[[int | None], float],
    workload_range: tuple[float, float],
) -> str | None:
    """Why proposal ``t`` is not worth a batch: a grid step from a candidate measured and predicted to gain no
    more than the noise band on the best measured. None when it is worth one."""
    near = [
        c for c in allowed if abs(_grid_position(c.threshold, workload_range) - _grid_position(t, workload_range)) <= 1
    ]
    if best is None or not near:
        return None
    gain = 1 - model(t) / model(best.threshold)
    if gain > band:
        return None
    return (
        f"a step from {_fmt(near[0].threshold)}, measured, and predicted {gain:+.0%} "
        f"against the best measured ({_fmt(best.threshold)}), inside the {band:.0%} noise "
        "band: one more candidate the measurement could not tell apart"
    )


def _grid_position(t: int | None, workload_range: tuple[float, float]) -> int:
    """Where a threshold stands on the half-octave grid: "always" (0) at the mix's low end, "never" (None) one
    step past its top, sizes clamped into the mix."""
    lo, hi = workload_range
    if t == 0:
        return grid_index(snap(max(1.0, lo)))
    if t is None:
        return grid_index(snap(hi)) + 1
    return grid_index(snap(min(max(t, lo), hi)))


def always_threshold(
    costs: KernelCosts, transport: TransportModel, knobs: PolicyKnobs, workload_range: tuple[float, float]
) -> int:
    """What "offload every call of the mix" means as a threshold: 0 if offloading pays even at size 1 (by
    the corrected model), else the low end of the mix (below it nothing was measured under load)."""
    return 0 if offload_pays(predict(costs, transport, knobs, 1), knobs) else math.ceil(workload_range[0])


def on_grid(t: int | None) -> int | None:
    """0 and None stay; sizes snap to the grid."""
    return t if t in (None, 0) else snap(t)
