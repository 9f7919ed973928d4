"""A buffer-heavy numpy kernel: a large array in, an array of the same shape out, a few cheap passes per byte.

Smoothing a multichannel recording frame by frame (each row one time step across a few hundred channels) is a
recurrence along the rows: frame ``r`` needs the smoothed frame ``r - 1``, so the work is a Python loop over
rows doing a handful of numpy operations on one row each. That shape decides two things:

- Per byte it is cheap (a few microseconds per 2 KB row, comparable to or below what pickling the frames to a
  worker and the result back costs), and the result is as big as the input: how the buffers travel decides
  whether offloading pays, not the arithmetic.
- It holds the GIL. numpy releases it only around loops of more than a few hundred elements; a row of
  ``CHANNELS`` float64 stays under that, so the loop's interpreter work and every numpy call run with the
  GIL held. A thread pool would hold the event loop up; the process pool is the lane that can help.
"""

from __future__ import annotations

import numpy as np

from offload_tuner import kernel

CHANNELS = 256
"""Channels per frame in the calibration sample: wide enough to be a real buffer, narrow enough that numpy
keeps the GIL for each row's operations (it releases it only for loops of more than 500 elements)."""
DEFAULT_ALPHA = 0.25
DEFAULT_LIMIT = 1.0


def _sample_frames(n: int) -> tuple[np.ndarray]:
    """``n`` frames of ``CHANNELS`` float64 channels, seeded by ``n``: each channel a baseline of its own plus a
    slow drift and noise, with a glitch (a jump of 5-20 units for one frame) in about one value in 500."""
    rng = np.random.default_rng(n * 7919 + 31)
    baseline = rng.uniform(-50.0, 50.0, CHANNELS)
    period = rng.uniform(200.0, 2000.0, CHANNELS)
    t = np.arange(n, dtype=np.float64)[:, None]
    frames = baseline + 3.0 * np.sin(2 * np.pi * t / period) + rng.normal(0.0, 0.3, (n, CHANNELS))
    glitches = rng.random((n, CHANNELS)) < 1 / 500
    frames[glitches] += rng.choice((-1.0, 1.0), size=int(glitches.sum())) * rng.uniform(5.0, 20.0, int(glitches.sum()))
    return (frames,)


@kernel(sample=_sample_frames)
def smooth_frames(frames: np.ndarray, alpha: float = DEFAULT_ALPHA, limit: float = DEFAULT_LIMIT) -> np.ndarray:
    """Each channel of ``frames`` (2-D: frames x channels) smoothed along the frames by an exponential moving
    average whose step is clamped: ``out[0] = frames[0]``, then
    ``out[r] = out[r - 1] + alpha * clip(frames[r] - out[r - 1], -limit, limit)``.

    The clamp keeps a one-frame glitch from dragging the average (it moves at most ``alpha * limit`` per
    frame) while a lasting level change is still followed. The result has the input's shape and dtype for
    float32 and float64 input (anything else is computed in float64); the input is not modified. ``np.minimum``
    and ``np.maximum`` clamp in place: on a row this short ``np.clip`` (a Python-level wrapper) costs more than
    the two together.
    """
    x = np.asarray(frames)
    if x.ndim != 2:
        raise ValueError(f"smooth_frames() needs a 2-D array (frames x channels), got {x.ndim} dimension(s)")
    if not 0.0 < alpha <= 1.0 or not limit > 0.0:
        raise ValueError(f"smooth_frames() needs 0 < alpha <= 1 and limit > 0, got {alpha!r}, {limit!r}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    out = np.empty_like(x)
    if len(x) == 0:
        return out
    out[0] = x[0]
    step = np.empty(x.shape[1], dtype=x.dtype)
    prev = out[0]
    for r in range(1, len(x)):
        row = out[r]
        np.subtract(x[r], prev, out=step)
        np.minimum(step, limit, out=step)
        np.maximum(step, -limit, out=step)
        np.multiply(step, alpha, out=step)
        np.add(prev, step, out=row)
        prev = row
    return out
