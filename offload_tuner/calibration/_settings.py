"""What a calibration is asked to do: how hard to measure (:class:`Effort`, the named :data:`EFFORTS`), per-kernel
overrides from a plan (:class:`KernelPlan`), and where progress is reported (:data:`Progress`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from math import inf
from typing import Any

from offload_tuner.calibration._rounds import Rounds

Progress = Callable[..., None]
"""Called with an event name and its details as keywords (the CLI draws its progress line from them)."""


def _silent(event: str, **info: Any) -> None:
    return None


@dataclass(frozen=True, slots=True)
class GilEffort:
    """How the GIL hold is measured (:mod:`_gil`)."""

    points: int
    """Sizes, from the top of the ladder down."""
    repeats: int
    window_s: float


@dataclass(frozen=True, slots=True)
class Effort:
    """How hard to measure. ``standard`` aims at <= 60 s for the bundled kernels on a 2-core box."""

    name: str
    repeats: int
    """Raw timings per size (median taken)."""
    min_time: float
    """Seconds one raw timing must last (loops are calibrated to reach it)."""
    ceiling_s: float
    """Stop growing the size ladder once inline compute or serialisation passes this."""
    growth: float
    """Ratio between successive ladder sizes."""
    kernel_budget_s: float
    """Soft cap on seconds spent measuring one kernel."""
    validation_sizes: int
    validation_calls: int
    transport_payloads: tuple[int, ...]
    transport_calls: int
    refine: bool
    """Measure two more ladder sizes around the isolated model's threshold and fit again. Off at standard: the
    isolated threshold no longer decides; it seeds the concurrent phase's candidates (snapped to the half-octave
    grid, with neighbours an octave either side, and the corrected model's proposals after) and places the
    validation sizes, and the refinement's cost, over half of it the second cross-validated fit, bought nothing."""
    load: Rounds
    """How the concurrent phase spends its time: rounds, run length, budget per kernel."""
    gil: GilEffort = field(default_factory=lambda: GilEffort(2, 3, 0.04))
    """How the GIL hold is measured (:mod:`_gil`): sizes, repeats, seconds per window. Three paired
    repeats even at quick: one window read alone can land on the wrong side of the 0.25 cut when the host's
    other work preempts the probe; two sizes keep the cost inside the standard calibration's 60 s goal."""


EFFORTS: dict[str, Effort] = {
    "quick": Effort(
        "quick",
        3,
        2e-4,
        0.008,
        2.0,
        1.2,
        2,
        2,
        (0, 65536, 1 << 20),
        40,
        False,
        Rounds(2, 3, 0.04, 0.5, neighbours=False),
        GilEffort(1, 3, 0.03),
    ),
    "standard": Effort(
        "standard",
        5,
        5e-4,
        0.025,
        2.0,
        3.0,
        3,
        4,
        (0, 4096, 65536, 1 << 20, 4 << 20),
        60,
        False,
        Rounds(3, 8, 0.2, 2.5, calls_per_caller=6),
    ),
    "thorough": Effort(
        "thorough",
        15,
        2e-3,
        0.1,
        2**0.5,
        30.0,
        5,
        11,
        (0, 1024, 16384, 131072, 1 << 20, 4 << 20, 16 << 20),
        150,
        True,
        Rounds(5, 15, 0.5, 20.0, calls_per_caller=12),
        GilEffort(3, 3, 0.1),
    ),
}

DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class KernelPlan:
    """Per-kernel overrides from a calibration plan (sizes are in the kernel's own units)."""

    min_size: int = DEFAULT_MIN_SIZE
    max_size: int = DEFAULT_MAX_SIZE
    sizes: tuple[int, ...] | None = None
    """An explicit ladder; skips the adaptive growth."""
    workload_range: tuple[int, int] | None = None
    """Sizes production calls span, for the throughput objective (default: the calibrated range)."""
    time_limit_s: float | None = None
    """Hard limit on one kernel's measurement; default ``HANG_FACTOR`` times the effort's budget + 10 s."""
    compare_with: float | None = None
    """A constant the kernel's figures compare the threshold with (e.g. the old ``offload_if=len(x) >= 256``);
    recorded in the profile entry, drawn only when set."""
    rate: float | None = None
    """How often the service calls this kernel relative to the others (any unit all kernels share, e.g. requests
    per second): the shared stream (``--shared``) then holds the kernels' calls in these proportions. Recorded in
    the profile entry; without it on every kernel, each brings about the same inline work to the stream."""

    def __post_init__(self) -> None:
        rate = self.rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < inf):
            raise ValueError(f"KernelPlan.rate must be a number > 0 (a call rate relative to the others), got {rate!r}")


WORKLOAD_SOURCES = ("plan", "kernel", "assumed")
"""Where a kernel's mix came from: the plan's ``workload_range``, ``@kernel(workload=...)``, or neither (the
measured range is assumed)."""


def stated_mix(plan: KernelPlan | None, declared: tuple[int, int] | None) -> tuple[KernelPlan, str]:
    """The plan to measure with and where its mix came from: the plan's ``workload_range`` if it states one, else
    the kernel's declared ``workload``, else none ("assumed": the ladder's range stands in, as it always did)."""
    plan = plan or KernelPlan()
    if plan.workload_range is not None:
        return plan, "plan"
    if declared is not None:
        return replace(plan, workload_range=(int(declared[0]), int(declared[1]))), "kernel"
    return plan, "assumed"
