"""Fresh rounds where nothing is selected: how the benchmarks read a ratio without the winner's curse.

A sweep's oracle is the lowest of 8-12 noisy medians, so any policy compared with it reads high by selection.
The workload benchmark therefore measures again, in rounds of their own, only the few policies a verdict is
about (tuned and the sweep's best statics; or, for the reruns, the thresholds the calibrations chose), round by
round side by side, for at least a set number of rounds and more until the median ratio has settled.
Everything here is pure (runs in, ratios out), so recorded reports can be re-read.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from typing import Any

CONFIRM_ROUNDS = 8
"""Fresh rounds at least. Tuned / static taken round by round spreads ~6% (one sigma, campaign 14) on this VM;
the median of 8 then has a standard error of ~3%, well inside the 10% the goals are judged at."""
CONFIRM_STANDARD_ERROR = 0.03
CONFIRM_MAX_FACTOR = 3
"""More rounds, up to this many times as many, until the standard error of every median ratio is within
``CONFIRM_STANDARD_ERROR``. Kernels with a few very large calls are lumpy: where the largest calls land decides
a run's drain, and tuned / static spread 13% round to round (cluster_campaigns); 8 rounds then leave a 6%
standard error, too wide to judge 1.10x by."""
CONFIRM_AGAINST = 2
"""Statics tuned is confirmed against: the sweep's best two that decide differently from tuned. The best of
the sweep may be a lucky one; against two, the verdict takes the one tuned compares worse with."""

Runs = Mapping[str, list[dict[str, Any]]]


def normalised(runs: Runs, field: str = "makespan_s") -> dict[str, list[float]]:
    """Each policy's ``field`` (a makespan), each round scaled by the round's geometric mean over the policies
    (a slow moment of the machine weighs on every policy of its round alike)."""
    from offload_tuner.calibration._loadphase import round_scales

    names = list(runs)
    rounds = len(runs[names[0]])
    scale = round_scales([[runs[name][r][field] for name in names] for r in range(rounds)])
    return {name: [run[field] * f for run, f in zip(runs[name], scale)] for name in names}


def per_round(values: Mapping[str, list[float]], a: str, b: str) -> list[float]:
    """``a`` over ``b`` round by round (:func:`normalised` makespans): two policies measured side by side in
    every round, so the machine's drift between rounds cancels."""
    return [x / y for x, y in zip(values[a], values[b])]


def median_standard_error(per_round: list[float]) -> float:
    """Relative standard error of the median of ``per_round`` ratios (~1.25 sigma / sqrt(n) for normal noise,
    sigma of the logs); infinite for fewer than two."""
    if len(per_round) < 2:
        return math.inf
    return 1.25 * statistics.stdev(math.log(r) for r in per_round) / math.sqrt(len(per_round))


def until_settled(
    rounds: Iterable[Mapping[str, dict[str, Any]]],
    least: int,
    analyse: Callable[[dict[str, list[dict[str, Any]]]], dict[str, Any]],
) -> dict[str, Any]:
    """Collect ``rounds`` (each: policy -> one run's numbers) until at least ``least`` have run and the
    analysis says its standard error is within ``CONFIRM_STANDARD_ERROR`` (or ``rounds`` runs out)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    out: dict[str, Any] = {}
    for done, results in enumerate(rounds, 1):
        for name, run in results.items():
            runs.setdefault(name, []).append(run)
        out = analyse(runs)
        if done >= least and out["standard_error"] <= CONFIRM_STANDARD_ERROR:
            break
    if not out:
        raise ValueError("no rounds were run: a comparison needs at least one")
    return out


def confirmation_names(entry: Mapping[str, Any]) -> list[str] | None:
    """Tuned and the sweep's best ``CONFIRM_AGAINST`` distinct statics, or None when tuned decides every call
    like the oracle (their ratio is 1 by identity: one policy, measured once per round).

    Why confirm at all: with tuned / oracle spreading a few percent from round to round, a policy exactly as
    fast as six tied statics reads a median above 1 in a 5-round sweep, and above 1.10x in some kernel-runs
    (at 7% noise per run, 1.05x and 14%; simulated). The measured spread is on the benchmarks page."""
    same_as = entry.get("same_as", {})
    dynamic = set(entry.get("dynamic", ()))
    medians = {name: s["makespan_s"] for name, s in entry["summary"].items()}
    if same_as.get(entry["oracle"], entry["oracle"]) == "tuned":
        return None
    statics = [name for name in medians if name != "tuned" and name not in dynamic and name not in same_as]
    return ["tuned"] + sorted(statics, key=lambda name: medians[name])[:CONFIRM_AGAINST]


def analyse_confirmation(runs: Runs) -> dict[str, Any]:
    """Tuned against each confirmed static, the median of the per-round ratios; the verdict's oracle is the
    static tuned compares worst with."""
    values = normalised(runs)
    per_static = {name: per_round(values, "tuned", name) for name in runs if name != "tuned"}
    against = {name: statistics.median(r) for name, r in per_static.items()}
    oracle = max(against, key=lambda name: against[name])
    return {
        "runs": dict(runs),
        "oracle": oracle,
        "ratio": against[oracle],
        "against": against,
        "per_round": per_static[oracle],
        "rounds": len(runs["tuned"]),
        "standard_error": max(median_standard_error(r) for r in per_static.values()),
    }


def analyse_basin(runs: Runs) -> dict[str, Any]:
    """Several static thresholds side by side: each against the best of them, the median of the per-round
    ratios (the reference is the lowest normalised median; where another reads lower by its per-round
    ratios, every ratio is taken against that one instead)."""
    values = normalised(runs)
    best = min(values, key=lambda name: statistics.median(values[name]))
    per_name = {name: per_round(values, name, best) for name in runs}
    vs_best = {name: statistics.median(r) for name, r in per_name.items()}
    lowest = min(vs_best, key=lambda name: vs_best[name])
    if vs_best[lowest] < 1.0:
        best, scale = lowest, vs_best[lowest]
        vs_best = {name: ratio / scale for name, ratio in vs_best.items()}
    return {
        "runs": dict(runs),
        "best": best,
        "vs_best": vs_best,
        "rounds": len(runs[best]),
        "standard_error": max((median_standard_error(r) for name, r in per_name.items() if name != best), default=0.0),
    }


def with_aliases(vs_best: Mapping[str, float], same_as: Mapping[str, str]) -> dict[str, float]:
    """``vs_best`` with every alias (a threshold deciding every call like another, measured as that one) given
    its representative's ratio."""
    return {**vs_best, **{alias: vs_best[rep] for alias, rep in same_as.items() if alias != rep}}


def judged_ratio(entry: Mapping[str, Any]) -> float:
    """Tuned / oracle as the verdicts judge it: confirmed where a confirmation ran, else the sweep's ratio
    (exactly 1 where tuned decides like the oracle)."""
    c = entry.get("confirmation")
    return entry["tuned_vs_oracle"] if c is None else c["ratio"]
