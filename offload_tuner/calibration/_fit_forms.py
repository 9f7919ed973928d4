"""Each cost-model form fitted to samples (calibration only: numpy + scikit-learn); :mod:`_fit` chooses
among them.

Robustness. Timings are noisy multiplicatively and their outliers are one-sided (preemption, page
faults and GC only ever make a call slower), so every fit works on *relative* errors and bounds the
influence of spikes:

* ``constant``: the median of the values.
* ``power``: :class:`sklearn.linear_model.HuberRegressor` of ``log y`` on ``log n``; then the points
  whose relative residual exceeds ``TRIM`` (50%) are dropped and the Huber fit repeated once.
* ``power_offset``: for each exponent ``b`` on a grid over ``[0.3, 3.5]`` (step 0.05, then refined
  to 0.005 around the best), fit ``c + a * n**b`` with ``a, c >= 0`` by iteratively reweighted
  non-negative least squares on relative residuals (weights ``1/y**2`` times Huber weights, points
  whose relative residual exceeds ``TRIM`` get weight 0). The two-variable non-negative weighted
  least squares is solved in closed form, vectorised over the whole ``b`` grid: it is what
  ``LinearRegression(positive=True)`` with ``sample_weight`` computes (the tests check), but one
  scikit-learn call per grid point and iteration (several hundred per fit) would blow the time budget,
  while the whole vectorised grid costs about a tenth of one such call per iteration. ``b`` minimises the capped
  squared relative error ``sum(min(r**2, TRIM**2))``, which a spike cannot dominate.
* ``loglog_linear_interp``: per-size medians, made non-decreasing by
  :func:`sklearn.isotonic.isotonic_regression` in log space (weighted by repeats), knots at the
  distinct sizes.

``_Data`` holds the samples with zero values already replaced by the smallest positive value (:mod:`_fit`).
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.isotonic import isotonic_regression
from sklearn.linear_model import HuberRegressor

TRIM = 0.5
"""Points whose relative residual exceeds this are treated as spikes by the power fits."""
B_MIN, B_MAX = 0.3, 3.5
"""Exponent range searched by ``power_offset``."""
B_STEP, B_FINE = 0.05, 0.005
HUBER_EPSILON = 1.35
IRLS_ITERATIONS = 6


@dataclass(frozen=True)
class _Data:
    n: np.ndarray
    y: np.ndarray
    """Values with zeros replaced by the smallest positive value."""
    ln: np.ndarray
    ly: np.ndarray
    group: np.ndarray
    """Index of each point's size among the sorted distinct sizes."""
    sizes: np.ndarray
    """Sorted distinct sizes."""

    def subset(self, mask: np.ndarray) -> _Data:
        sizes, group = np.unique(self.n[mask], return_inverse=True)
        return _Data(self.n[mask], self.y[mask], self.ln[mask], self.ly[mask], group, sizes)

    def with_log_values(self, ly: np.ndarray) -> _Data:
        return _Data(self.n, np.exp(ly), self.ln, ly, self.group, self.sizes)


def _fit_form(form: str, data: _Data) -> dict:
    with np.errstate(all="ignore"):
        if form == "constant":
            params = {"c": _median(data)}
        elif form == "power":
            params = _fit_power(data)
        elif form == "power_offset":
            params = _fit_power_offset(data)
        else:
            params = _fit_interp(data)
    values = [v for p in params.values() for v in (p if isinstance(p, list) else [p])]
    if all(math.isfinite(v) for v in values):
        return params
    # Only with absurd data (values spanning hundreds of orders of magnitude): the median, as this form.
    c = _median(data)
    return {"a": c, "b": 0.0} if form == "power" else {"a": 0.0, "b": 1.0, "c": c}


def _predict(form: str, params: dict, n: np.ndarray) -> np.ndarray:
    """Vectorised :meth:`CostModel.predict` for positive sizes (same formulas)."""
    if form == "constant":
        return np.full(n.shape, params["c"])
    with np.errstate(over="ignore"):
        if form == "power":
            return _power(params["a"], params["b"], n)
        if form == "power_offset":
            offset: np.ndarray = params["c"] + _power(params["a"], params["b"], n)
            return offset
        log_n, log_y = np.asarray(params["log_n"]), np.asarray(params["log_y"])
        x = np.maximum(np.log(n), min(0.0, log_n[0]))
        y = np.interp(x, log_n, log_y)
        lo_slope = (log_y[1] - log_y[0]) / (log_n[1] - log_n[0])
        hi_slope = (log_y[-1] - log_y[-2]) / (log_n[-1] - log_n[-2])
        y = np.where(x < log_n[0], log_y[0] - lo_slope * (log_n[0] - x), y)
        y = np.where(x > log_n[-1], log_y[-1] + hi_slope * (x - log_n[-1]), y)
        interpolated: np.ndarray = np.exp(y)
        return interpolated


def _power(a: float, b: float, n: np.ndarray) -> np.ndarray:
    if b == 0:
        return np.full(n.shape, a)
    if a == 0:
        return np.zeros(n.shape)
    power: np.ndarray = np.exp(math.log(a) + b * np.log(n))
    return power


def _huber(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of a Huber fit of y on x (x centred for conditioning)."""
    centre = float(x.mean())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = HuberRegressor(epsilon=HUBER_EPSILON, alpha=0.0, max_iter=200).fit((x - centre)[:, None], y)
        slope, intercept = float(model.coef_[0]), float(model.intercept_)
    except ValueError:
        # L-BFGS-B can stop "ABNORMAL" on extreme-scale data; ordinary least squares in log space is the
        # robust fit's own starting point, so fall back to it rather than refuse the samples.
        slope, intercept = np.polyfit(x - centre, y, 1)
        slope, intercept = float(slope), float(intercept)
    return slope, intercept - slope * centre


def _fit_power(data: _Data) -> dict:
    slope, intercept = _huber(data.ln, data.ly)
    relative = np.exp(intercept + slope * data.ln - data.ly) - 1
    keep = np.abs(relative) <= TRIM
    if not keep.all() and keep.sum() * 2 >= keep.size and np.unique(data.n[keep]).size >= 2:
        slope, intercept = _huber(data.ln[keep], data.ly[keep])
    else:
        keep = np.ones_like(keep)
    if slope < 0:  # costs do not fall with size: the best non-increasing power law is a constant
        slope, intercept = 0.0, float(np.median(data.ly[keep]))
    return {"a": _exp(intercept), "b": slope}


def _fit_power_offset(data: _Data) -> dict:
    grid = np.round(np.arange(B_MIN, B_MAX + B_STEP / 2, B_STEP), 10)
    b, loss, _, _ = _offset_grid(data, grid)
    fine = np.round(np.arange(max(B_MIN, b - B_STEP), min(B_MAX, b + B_STEP) + B_FINE / 2, B_FINE), 10)
    fine_b, fine_loss, _, _ = _offset_grid(data, fine)
    if fine_loss <= loss:
        b = fine_b
    _, _, a, c = _offset_grid(data, np.array([b]))
    return {"a": a, "b": float(b), "c": c}


def _offset_grid(data: _Data, grid: np.ndarray) -> tuple[float, float, float, float]:
    """Best (b, loss, a, c) over ``grid`` for ``c + a * n**b``, a, c >= 0, robust in relative error.

    In relative terms the model is ``(c + a * n**b) / y = c * u + a * v`` with ``u = 1/y`` and
    ``v = n**b / y``, to be fitted to 1. Both columns are computed in log space and scaled to a
    maximum of 1 (so any size or value range is safe from overflow and the 2x2 problem well scaled),
    and the coefficients scaled back at the end.
    """
    log_u = -data.ly
    top_u = float(log_u.max())
    u = np.broadcast_to(np.exp(log_u - top_u), (grid.size, data.n.size))
    log_v = grid[:, None] * data.ln[None, :] - data.ly[None, :]
    top_v = log_v.max(axis=1)
    v = np.exp(log_v - top_v[:, None])
    target = np.ones_like(v)
    weights = np.ones_like(v)
    for iteration in range(IRLS_ITERATIONS):
        c, a = _nnls2(u, v, target, weights)
        r = c[:, None] * u + a[:, None] * v - 1  # relative residuals (pred - y) / y
        if iteration == IRLS_ITERATIONS - 1:
            break
        mad = np.median(np.abs(r - np.median(r, axis=1, keepdims=True)), axis=1, keepdims=True)
        sigma = np.maximum(1.4826 * mad, 1e-3)
        huber = np.minimum(1.0, HUBER_EPSILON * sigma / np.maximum(np.abs(r), 1e-300))
        new = huber * (np.abs(r) <= TRIM)
        enough = np.count_nonzero(new, axis=1) >= 3
        weights = np.where(enough[:, None], new, weights)
    losses = np.minimum(r**2, TRIM**2).sum(axis=1)
    best = int(np.argmin(losses))
    return float(grid[best]), float(losses[best]), float(a[best]) * _exp(-top_v[best]), float(c[best]) * _exp(-top_u)


def _median(data: _Data) -> float:
    """The median value (if averaging the middle two overflows, their geometric mean instead)."""
    with np.errstate(over="ignore"):
        median = float(np.median(data.y))
    return median if math.isfinite(median) else min(_exp(float(np.median(data.ly))), sys.float_info.max)


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf  # rejected by _fit_form's finiteness check


def _nnls2(p: np.ndarray, q: np.ndarray, t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: argmin over x, z >= 0 of sum h * (x*p + z*q - t)**2, in closed form (a convex problem).

    The unconstrained normal equations when their solution is feasible, else the better of the two
    faces ``z = 0`` and ``x = 0``, each solved exactly (and clipped at 0).
    """
    spp, spq, sqq = (h * p * p).sum(axis=1), (h * p * q).sum(axis=1), (h * q * q).sum(axis=1)
    spt, sqt, stt = (h * p * t).sum(axis=1), (h * q * t).sum(axis=1), (h * t * t).sum(axis=1)
    det = spp * sqq - spq * spq
    ok = det > 1e-12 * spp * sqq
    safe = np.where(ok, det, 1.0)
    x = (sqq * spt - spq * sqt) / safe
    z = (spp * sqt - spq * spt) / safe
    feasible = ok & (x >= 0) & (z >= 0)
    x_only = np.maximum(spt, 0) / np.where(spp > 0, spp, 1.0)  # z = 0
    z_only = np.maximum(sqt, 0) / np.where(sqq > 0, sqq, 1.0)  # x = 0
    use_x = stt - x_only * spt <= stt - z_only * sqt  # each face's loss at its optimum
    x = np.where(feasible, x, np.where(use_x, x_only, 0.0))
    z = np.where(feasible, z, np.where(use_x, 0.0, z_only))
    return x, z


def _fit_interp(data: _Data) -> dict:
    medians = np.array([np.median(data.ly[data.group == g]) for g in range(data.sizes.size)])
    counts = np.bincount(data.group, minlength=data.sizes.size).astype(float)
    smooth = isotonic_regression(medians, sample_weight=counts, increasing=True)
    return {"log_n": [float(v) for v in np.log(data.sizes)], "log_y": [float(v) for v in smooth]}
