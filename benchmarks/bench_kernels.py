"""Tiny kernels for micro-benchmarks (module-level so a pool could import them)."""

from offload_tuner import kernel


@kernel()
def tiny(xs: list[int]) -> int:
    """As cheap as a kernel gets: the benchmark measures the decision, not the work."""
    return xs[0]


@kernel(size=lambda xs: len(xs))
def tiny_sized(xs: list[int]) -> int:
    """``tiny`` with an explicit size function: every version of the decision path calls it alike, so
    :mod:`benchmarks.stats_cost` compares what else they do."""
    return xs[0]


def _ramp(n: int) -> tuple[list[int]]:
    return (list(range(n)),)


@kernel(size=lambda xs, repeat=1: len(xs), sample=_ramp)
def tally(xs: list[int], repeat: int = 1) -> list[tuple[int, int]]:
    """A running checksum per element, ``repeat`` times over: linear compute, and a result of ``len(xs)`` small
    tuples whose unpickling costs the caller about as much as computing it (the class where a threshold is
    most sensitive to the compute/transport ratio). ``repeat=2`` is the same kernel on data that got heavier:
    twice the compute per call, the same bytes."""
    out: list[tuple[int, int]] = []
    for _ in range(repeat):
        out = []
        acc = 0
        for x in xs:
            acc = (acc * 31 + x) % 1000003
            out.append((x, acc & 255))
    return out
