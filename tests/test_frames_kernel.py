"""The bundled buffer-heavy kernel ``frames.smooth_frames``: known answers, a numpy reference, dtype and shape kept.

Registration, picklability and the generic sample checks live in test_kernels.py with every other kernel."""

from __future__ import annotations

import numpy as np
import pytest

from offload_tuner.runtime._registry import spec_for
from offload_tuner_kernels import smooth_frames
from offload_tuner_kernels.frames import CHANNELS, DEFAULT_ALPHA, DEFAULT_LIMIT


def reference(frames: np.ndarray, alpha: float = DEFAULT_ALPHA, limit: float = DEFAULT_LIMIT) -> np.ndarray:
    """The definition written out: no buffers reused, ``np.clip`` for the clamp, in float64."""
    x = np.asarray(frames, dtype=np.float64)
    out = [x[0]] if len(x) else []
    for frame in x[1:]:
        out.append(out[-1] + alpha * np.clip(frame - out[-1], -limit, limit))
    return np.array(out).reshape(x.shape)


def sample(n: int) -> np.ndarray:
    spec = spec_for(smooth_frames)
    assert spec is not None and spec.sample is not None
    (frames,) = spec.sample(n)
    return frames


@pytest.mark.parametrize("n", (1, 2, 17, 300))
def test_matches_the_reference_on_its_sample(n: int) -> None:
    frames = sample(n)
    out = smooth_frames(frames)
    assert out.shape == frames.shape == (n, CHANNELS) and out.dtype == np.float64
    np.testing.assert_allclose(out, reference(frames), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("alpha", "limit"), ((1.0, 0.5), (0.1, 10.0), (0.5, 1e-3)))
def test_matches_the_reference_with_other_parameters(alpha: float, limit: float) -> None:
    frames = sample(64)
    np.testing.assert_allclose(smooth_frames(frames, alpha, limit), reference(frames, alpha, limit), rtol=1e-12)


def test_by_hand() -> None:
    frames = np.array([[0.0, 10.0], [4.0, 10.5], [4.0, 6.0], [0.0, 10.0]])
    # channel 0: steps +4 -> clamped to +1, times 0.5: 0.5; then 3.5 -> 1 -> 1.0; then -1.0 -> -1 -> 0.5
    # channel 1: +0.5 -> 0.25 -> 10.25; -4.25 -> -1 -> 9.75; +0.25 -> 0.125 -> 9.875
    expected = [[0.0, 10.0], [0.5, 10.25], [1.0, 9.75], [0.5, 9.875]]
    assert smooth_frames(frames, alpha=0.5, limit=1.0).tolist() == expected
    # alpha 1 with a limit no step reaches: the output is the input
    assert np.array_equal(smooth_frames(frames, alpha=1.0, limit=100.0), frames)


def test_a_glitch_moves_the_average_by_at_most_alpha_times_limit() -> None:
    frames = np.zeros((5, 3))
    frames[2] = 1000.0
    out = smooth_frames(frames, alpha=0.25, limit=2.0)
    assert out[2].tolist() == [0.5, 0.5, 0.5] and out[-1].max() < 0.5


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_float_dtypes_and_shape_are_kept(dtype: type) -> None:
    frames = sample(40).astype(dtype)
    out = smooth_frames(frames)
    assert out.dtype == dtype and out.shape == frames.shape
    np.testing.assert_allclose(out, reference(frames), rtol=1e-5 if dtype is np.float32 else 1e-12, atol=1e-4)


def test_other_input_is_computed_in_float64() -> None:
    frames = np.arange(12, dtype=np.int64).reshape(4, 3) * 3
    out = smooth_frames(frames)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, reference(frames))


def test_empty_and_single_frame() -> None:
    empty = smooth_frames(np.empty((0, CHANNELS)))
    assert empty.shape == (0, CHANNELS) and empty.dtype == np.float64
    one = sample(1)
    assert np.array_equal(smooth_frames(one), one)


def test_input_is_not_modified_and_output_is_a_new_buffer() -> None:
    frames = sample(50)
    before = frames.copy()
    out = smooth_frames(frames)
    assert np.array_equal(frames, before) and not np.shares_memory(out, frames)


@pytest.mark.parametrize("bad", (np.zeros(8), np.zeros((2, 2, 2))))
def test_needs_a_two_dimensional_array(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="2-D array"):
        smooth_frames(bad)


@pytest.mark.parametrize(("alpha", "limit"), ((0.0, 1.0), (1.5, 1.0), (0.5, 0.0), (0.5, float("nan"))))
def test_rejects_parameters_outside_their_range(alpha: float, limit: float) -> None:
    with pytest.raises(ValueError, match="0 < alpha <= 1 and limit > 0"):
        smooth_frames(sample(3), alpha, limit)


def test_sample_is_deterministic_sized_in_frames_and_has_glitches() -> None:
    spec = spec_for(smooth_frames)
    assert spec is not None and spec.sample is not None
    frames = sample(1000)
    assert np.array_equal(frames, sample(1000)) and frames.dtype == np.float64
    assert frames.shape == (1000, CHANNELS) and spec.size(frames) == 1000
    assert frames.flags.c_contiguous  # one raw buffer to pickle or share
    jumps = np.abs(np.diff(frames, axis=0)) > 4.0  # noise (sd 0.3) and drift never jump this far in one frame
    assert 0.001 < jumps.mean() < 0.01  # about one value in 500 is a glitch: two jumps each


def test_rows_stay_under_the_size_numpy_releases_the_gil_for() -> None:
    """The sample's rows are what makes the kernel hold the GIL: numpy releases it only for loops of more than
    500 elements (``NPY_BEGIN_THREADS_THRESHOLDED``), so the process pool, not a thread, is its lane."""
    assert CHANNELS <= 500
