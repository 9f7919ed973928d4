"""A numpy kernel: rolling z-score spike detection over a float64 signal, O(n * window).

The work happens in numpy's C loops, which mostly run with the GIL released, and a float64 array pickles as one raw
buffer, so both the cost per element and the transport cost look nothing like the pure-Python kernels:
a process pool only pays off at large ``n``, and a thread pool is a genuine option here.

The result is a small summary (the indices of the spikes), not an array the size of the input.
"""

from __future__ import annotations

import numpy as np

from offload_tuner import kernel

DEFAULT_WINDOW = 64


def _sample_signal(n: int) -> tuple[np.ndarray]:
    """A slow sine plus noise around 10.0, with a spike every ~200 samples, seeded by ``n``."""
    rng = np.random.default_rng(n * 7919 + 29)
    t = np.arange(n, dtype=np.float64)
    signal = 10.0 + 2.0 * np.sin(2 * np.pi * t / 500.0) + rng.normal(0.0, 0.5, n)
    spikes = rng.choice(n, size=n // 200, replace=False) if n else np.empty(0, dtype=np.int64)
    signal[spikes] += rng.choice((-1.0, 1.0), size=spikes.size) * rng.uniform(6.0, 12.0, spikes.size)
    return (signal,)


@kernel(sample=_sample_signal)
def detect_spikes(signal: np.ndarray, window: int = DEFAULT_WINDOW, threshold: float = 4.0) -> np.ndarray:
    """Indices ``i`` (int64, ascending) where ``signal[i]`` is more than ``threshold`` standard
    deviations from the mean of the ``window`` samples before it.

    The rolling mean and mean square are direct convolutions (``window`` multiply-adds per element,
    no temporary ``n * window`` array). The signal is centred first so ``E[x^2] - E[x]^2`` does not
    lose precision to a large offset. A flat window (no spread beyond float rounding) flags any real
    step away from it. Samples without a full window before them are never flagged.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.size <= window:
        return np.empty(0, dtype=np.int64)
    # Rolling sums carry rounding of ~1e-16 of the signal's magnitude: a flat window's spread is
    # floored well above that, so rounding noise is never a spike but a real step off a flat line is.
    floor = 1e-12 * float(np.abs(x).max())
    x = x - x.mean()
    box = np.full(window, 1.0 / window)
    mean = np.convolve(x, box, mode="valid")  # mean[j] = x[j : j + window].mean()
    mean_sq = np.convolve(x * x, box, mode="valid")
    spread = np.maximum(np.sqrt(np.maximum(mean_sq - mean * mean, 0.0)), floor)
    # Sample i = j + window is judged against the window x[j : j + window] that ends just before it.
    deviation = np.abs(x[window:] - mean[:-1])
    return (np.flatnonzero(deviation > threshold * spread[:-1]) + window).astype(np.int64, copy=False)
