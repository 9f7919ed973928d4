"""Measured candidates and their noise (pure): one threshold's interleaved runs of the reference workload,
the machine's noise pooled over candidates, and the band within which two candidates tie.

:mod:`_choice` decides from these; the concurrent phase (:mod:`_loadphase`) and its proposals
(:mod:`_proposals`) read the same noise to decide what is worth measuring.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MIN_TIE_BAND = 0.03
"""Candidates within 3% of the best always tie: medians of a few short runs cannot resolve less."""
LATENCY_TIE_S = 0.001
"""p99 call latencies also tie within 1 ms: below that, the scheduler's and the timer's jitter decide."""
MAX_TIE_BAND = 0.2
"""Noise beyond this says the machine was too busy to compare; the band stops growing here."""
TIE_STANDARD_ERRORS = 1.0
"""Ties are within one standard error of a difference: wider bands let the secondary objective (lag) pick
candidates measurably slower (recorded benchmark: up to 1.65x the oracle with two standard errors)."""
RANGE_TO_SD = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847, 9: 2.970, 10: 3.078}
"""Expected range of R normal samples in standard deviations (d2 of control charts)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One threshold's runs of the reference workload: one value per interleaved round."""

    threshold: int | None
    offloaded: int
    """Calls of the stream it offloads."""
    makespan_s: tuple[float, ...]
    lag_p99_s: tuple[float, ...]
    cpu_s: tuple[float, ...]
    """CPU of the caller process and the workers together."""
    latency_p99_s: tuple[float, ...] = ()
    """p99 of the calls' latency as their callers see it (:mod:`_workload`), one per round; empty where it was not
    recorded (profiles from before the latency objective)."""

    def __post_init__(self) -> None:
        rounds = len(self.makespan_s)
        if rounds == 0 or len(self.lag_p99_s) != rounds or len(self.cpu_s) != rounds:
            raise ValueError(f"candidate {self.threshold}: needs one makespan, lag and CPU value per round")
        if self.latency_p99_s and len(self.latency_p99_s) != rounds:
            raise ValueError(f"candidate {self.threshold}: needs one call latency per round, or none")
        for name in ("makespan_s", "lag_p99_s", "cpu_s", "latency_p99_s"):
            for value in getattr(self, name):
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not math.isfinite(value)
                    or value < 0
                ):
                    raise ValueError(f"candidate {self.threshold}: {name} must hold finite numbers >= 0, got {value!r}")
        if min(self.makespan_s) <= 0:
            raise ValueError(f"candidate {self.threshold}: a makespan of 0 s cannot be measured")

    @property
    def makespan(self) -> float:
        return statistics.median(self.makespan_s)

    @property
    def lag_p99(self) -> float:
        return statistics.median(self.lag_p99_s)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_s)

    @property
    def latency_p99(self) -> float | None:
        """The median over rounds of the p99 call latency; ``None`` where it was not recorded."""
        return statistics.median(self.latency_p99_s) if self.latency_p99_s else None

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "offloaded": self.offloaded,
            "makespan_s": list(self.makespan_s),
            "lag_p99_s": list(self.lag_p99_s),
            "cpu_s": list(self.cpu_s),
            **({"latency_p99_s": list(self.latency_p99_s)} if self.latency_p99_s else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(
            data["threshold"],
            int(data["offloaded"]),
            tuple(data["makespan_s"]),
            tuple(data["lag_p99_s"]),
            tuple(data["cpu_s"]),
            tuple(data.get("latency_p99_s") or ()),
        )


def measured_noise(candidates: Iterable[Candidate]) -> float:
    """Relative standard deviation of one run, pooled over candidates (median of range / d2 per candidate).

    Each candidate's rounds were interleaved with the others', so their spread is the machine's noise
    at that moment; the median over candidates ignores one candidate hit by a stray spike.
    """
    spreads = []
    for c in candidates:
        values = c.makespan_s
        if len(values) >= 2:
            d2 = RANGE_TO_SD.get(len(values), 3.078 + 0.1 * (len(values) - 10))
            spreads.append((max(values) - min(values)) / statistics.median(values) / d2)
    return statistics.median(spreads) if spreads else 0.0


def degrees_of_freedom(candidates: Iterable[Candidate]) -> int:
    """How much the pooled noise estimate rests on: one less than the rounds, summed over candidates."""
    return sum(max(0, len(c.makespan_s) - 1) for c in candidates)


def noise_upper_bound(noise: float, dof: int, z: float = 1.2816) -> float:
    """90% upper confidence bound of a standard deviation estimated with ``dof`` degrees of freedom:
    ``noise * sqrt(dof / chi2_0.10(dof))``, the chi-square quantile by Wilson-Hilferty (no SciPy needed)."""
    if dof < 1:
        return noise * 3.0
    quantile = dof * (1 - 2 / (9 * dof) - z * math.sqrt(2 / (9 * dof))) ** 3
    return noise * math.sqrt(dof / quantile) if quantile > 0 else noise * 3.0


def tie_band(noise: float, rounds: int, errors: float | None = None) -> float:
    """Two candidates tie when their medians differ by less than ``errors`` (default ``TIE_STANDARD_ERRORS``)
    standard errors of a difference of medians."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    standard_error = 1.25 * noise * math.sqrt(2 / rounds)  # the median's SE is ~1.25x the mean's
    if errors is None:
        return min(MAX_TIE_BAND, max(MIN_TIE_BAND, TIE_STANDARD_ERRORS * standard_error))
    return min(2 * MAX_TIE_BAND, max(MIN_TIE_BAND, errors * standard_error))  # a reach, not a tie: capped looser
