"""Tiny kernels for micro-benchmarks (module-level so a pool could import them)."""

from offload_tuner import kernel


@kernel()
def tiny(xs: list[int]) -> int:
    """As cheap as a kernel gets: the benchmark measures the decision, not the work."""
    return xs[0]
