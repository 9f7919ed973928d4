"""Fitting cost models to measured samples (calibration only: numpy + scikit-learn).

``fit_cost_model`` fits every candidate form of :mod:`offload_tuner.runtime._costmodel`, scores each by
cross-validation grouped by size, and keeps the simplest form that no other form clearly beats.

The forms' fits, robust to the one-sided outliers of timings, live in :mod:`_fit_forms`. Zero values (a timer
that read 0) are replaced by the smallest positive value for fitting and scoring, and make the model untrusted.

Model selection. Folds group points by size (repeats of one size are held out together): leave one
size out with up to ``MAX_FOLDS`` distinct sizes, otherwise ``MAX_FOLDS`` folds interleaved over the
sorted sizes (size ``i`` goes to fold ``i % MAX_FOLDS``, so every fold spans the range and the ends
are extrapolated). The score is the median absolute relative error ``|pred - y| / y`` pooled over
all held-out points. With only 2 distinct sizes nothing can be cross-validated: the errors are
in-sample, only ``constant`` and ``power`` are tried by default, and the model is untrusted. The
chosen form is the simplest one that no more complex form beats clearly: lower pooled error by more
than ``MARGIN_REL`` (10%) of the simpler one's *and* by more than ``MARGIN_ABS`` (0.01), *and* lower
median error at ``MIN_WIN_FRACTION`` (2/3) of the held-out sizes. The last condition is there
because with ~10% timing noise the pooled errors of two adequate forms differ by a few hundredths at
random. Measured over 100 seeds, 10 sizes x 4 repeats, 10% log-normal noise, the margins alone chose
the wrong form for 10% (``2e-4 + 2e-8*n``: interpolation), 11% (``3e-7*n**2``) and 9% (constant) of
the seeds; with the win fraction 0%, 5% (4 of them ``power_offset`` with ``c`` ~ 0, which nests the
truth) and 2%, at the price of 3% of a 10x cost cliff going to ``power`` instead of the interpolation.

The arrays are tiny, so BLAS runs single-threaded inside these functions (``threadpool_limits(1)``):
with OpenBLAS's default threads a 40-point fit took the same wall time but twice the CPU (its idle
threads spin), stealing the second core of a 2-core box.

The fit draws no random numbers: it is deterministic for a given input; ``random_state`` is accepted
for symmetry with :func:`bootstrap_models` and currently unused.

Bootstrap (:func:`bootstrap_models`). Replicas refit one given form without cross-validation (their
``cv_error`` is the in-sample error, and says so in ``notes``). Resampling keeps the design fixed:
when the sizes were measured with repeats (median repeats per size >= 3), each size's values are
resampled with replacement within that size; otherwise (one or two values per size) the full fit's
multiplicative residuals ``y / pred`` are resampled over all points and multiplied back onto the
predictions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from offload_tuner.calibration._fit_forms import _Data, _fit_form, _predict
from offload_tuner.runtime._costmodel import FORMS, MIN_DISTINCT_SIZES, MIN_SAMPLES, MIN_SPAN, CostModel

MAX_FOLDS = 10
"""Leave-one-size-out up to this many distinct sizes, this many interleaved folds beyond."""
MARGIN_REL = 0.10
MARGIN_ABS = 0.01
MIN_WIN_FRACTION = 2 / 3
"""A more complex form is chosen over a simpler one only if its CV error is lower by both margins
and it has the lower (median) held-out error at this fraction of the distinct sizes."""
_TINY, _HUGE = float(np.finfo(float).tiny), float(np.finfo(float).max)
_LOG_TINY, _LOG_HUGE = math.log(_TINY), math.log(_HUGE)


# ------------------------------------------------------------------------------------------ public API


def fit_cost_model(
    sizes: Sequence[float],
    values: Sequence[float],
    *,
    forms: Iterable[str] | None = None,
    random_state: int | None = 0,
) -> CostModel:
    """Fit the candidate ``forms`` (default: all) and return the simplest adequate one (see module doc)."""
    with threadpool_limits(limits=1):
        return _fit_cost_model(sizes, values, forms)


def _fit_cost_model(sizes: Sequence[float], values: Sequence[float], forms: Iterable[str] | None) -> CostModel:
    n, raw = _validate(sizes, values)
    candidates = _validate_forms(forms)
    notes, trusted = _trust_notes(n, raw)
    size_range = (float(n.min()), float(n.max()))
    if not np.any(raw > 0):
        notes.append("all values are 0: constant 0")
        return CostModel("constant", {"c": 0.0}, size_range, 0.0, int(n.size), False, tuple(notes))
    data = _prepare(n, raw)
    distinct = data.sizes.size
    if distinct < 3:
        if forms is None:
            candidates = ["constant", "power"]
        errors = _in_sample_errors(candidates, data)
        how = f"in-sample (only {distinct} distinct sizes: no cross-validation)"
    else:
        errors = _cv_errors(candidates, data)
        k = min(distinct, MAX_FOLDS)
        how = "leave-one-size-out" if k == distinct else f"{k} interleaved folds grouped by size"
    chosen = _select(errors, data.group)
    params = _fit_form(chosen, data)
    scores = {f: float(np.median(e)) for f, e in errors.items()}
    listing = ", ".join(f"{f}={scores[f]:.4g}" for f in candidates)
    notes.append(f"median |relative error|, {how}: {listing}; chose {chosen}")
    return CostModel(chosen, params, size_range, scores[chosen], int(n.size), trusted, tuple(notes))


def bootstrap_models(
    sizes: Sequence[float],
    values: Sequence[float],
    form: str,
    n_boot: int = 50,
    random_state: int | None = 0,
) -> list[CostModel]:
    """``n_boot`` refits of ``form`` on resampled data, for confidence intervals (see module doc)."""
    with threadpool_limits(limits=1):
        return _bootstrap_models(sizes, values, form, n_boot, random_state)


def _bootstrap_models(
    sizes: Sequence[float], values: Sequence[float], form: str, n_boot: int, random_state: int | None
) -> list[CostModel]:
    n, raw = _validate(sizes, values)
    (form,) = _validate_forms([form])
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    notes, trusted = _trust_notes(n, raw)
    size_range = (float(n.min()), float(n.max()))
    if not np.any(raw > 0):
        zero = CostModel("constant", {"c": 0.0}, size_range, 0.0, int(n.size), False, (*notes, "all values are 0"))
        return [zero] * int(n_boot)
    data = _prepare(n, raw)
    rng = np.random.default_rng(random_state)
    counts = np.bincount(data.group)
    within = float(np.median(counts)) >= 3
    if within:
        members = [np.flatnonzero(data.group == g) for g in range(counts.size)]
        method = "values resampled within each size"
    else:
        with np.errstate(all="ignore"):  # in logs: any value range is safe
            log_base = np.log(np.clip(_predict(form, _fit_form(form, data), data.n), _TINY, _HUGE))
        log_ratios = data.ly - log_base
        method = "multiplicative residuals resampled"
    note = f"bootstrap replica of {form} ({method}); cv_error is in-sample"
    replicas = []
    for _ in range(int(n_boot)):
        if within:
            index = np.concatenate([m[rng.integers(0, m.size, m.size)] for m in members])
            replica = _Data(data.n[index], data.y[index], data.ln[index], data.ly[index], data.group[index], data.sizes)
        else:
            log_y = np.clip(
                log_base + log_ratios[rng.integers(0, log_ratios.size, log_ratios.size)], _LOG_TINY, _LOG_HUGE
            )
            replica = data.with_log_values(log_y)
        params = _fit_form(form, replica)
        error = float(np.median(_relative_errors(form, params, replica)))
        replicas.append(CostModel(form, params, size_range, error, int(n.size), trusted, (*notes, note)))
    return replicas


# ------------------------------------------------------------------------------------------ validation


def _validate(sizes: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, seq in (("sizes", sizes), ("values", values)):
        try:
            array = np.asarray(seq, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a sequence of numbers") from None
        if array.ndim != 1:
            raise ValueError(f"{name} must be a flat sequence of numbers, got shape {array.shape}")
        arrays.append(array)
    n, y = arrays
    if n.size != y.size:
        raise ValueError(f"sizes and values must have the same length, got {n.size} sizes and {y.size} values")
    if n.size == 0:
        raise ValueError("no samples: sizes and values are empty")
    for name, array in (("sizes", n), ("values", y)):
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise ValueError(f"{name} must be finite, got {float(array[bad[0]])!r} at index {bad[0]}")
    bad = np.flatnonzero(n <= 0)
    if bad.size:
        raise ValueError(f"sizes must be > 0, got {float(n[bad[0]])!r} at index {bad[0]}")
    bad = np.flatnonzero(y < 0)
    if bad.size:
        raise ValueError(f"values must be >= 0, got {float(y[bad[0]])!r} at index {bad[0]}")
    distinct = np.unique(n)
    if distinct.size < 2:
        raise ValueError(f"need at least 2 distinct sizes to fit a curve, got only size {distinct[0]:g}")
    return n, y


def _validate_forms(forms: Iterable[str] | None) -> list[str]:
    if forms is None:
        return list(FORMS)
    if isinstance(forms, str):
        forms = [forms]
    wanted = list(forms)
    unknown = [f for f in wanted if f not in FORMS]
    if unknown:
        raise ValueError(f"unknown form(s) {unknown!r}: expected some of {', '.join(FORMS)}")
    if not wanted:
        raise ValueError("forms must name at least one form")
    return [f for f in FORMS if f in wanted]  # simplest first, whatever order was given


def _trust_notes(n: np.ndarray, raw: np.ndarray) -> tuple[list[str], bool]:
    notes = []
    distinct = np.unique(n).size
    with np.errstate(over="ignore"):
        span = float(n.max() / n.min())  # inf for absurd ranges: still a real span
    if n.size < MIN_SAMPLES:
        notes.append(f"not trusted: only {n.size} samples (need >= {MIN_SAMPLES})")
    if span < MIN_SPAN:
        notes.append(f"not trusted: sizes span only {span:.3g}x (need >= {MIN_SPAN:g}x)")
    if distinct < MIN_DISTINCT_SIZES:
        notes.append(f"not trusted: only {distinct} distinct sizes (need >= {MIN_DISTINCT_SIZES})")
    zeros = int(np.count_nonzero(raw == 0))
    if zeros:
        notes.append(f"not trusted: {zeros} value(s) are 0 (fitted as the smallest positive value)")
    return notes, not notes


def _prepare(n: np.ndarray, raw: np.ndarray) -> _Data:
    y = np.where(raw > 0, raw, raw[raw > 0].min())
    sizes, group = np.unique(n, return_inverse=True)
    return _Data(n, y, np.log(n), np.log(y), group, sizes)


# ----------------------------------------------------------------------------------- model selection


def _cv_errors(forms: list[str], data: _Data) -> dict[str, np.ndarray]:
    """Each point's absolute relative error when its size was held out, per form."""
    k = min(data.sizes.size, MAX_FOLDS)
    fold = data.group % k
    errors = {f: np.empty(data.n.size) for f in forms}
    for i in range(k):
        test = fold == i
        train = data.subset(~test)
        for f in forms:
            pred = _predict(f, _fit_form(f, train), data.n[test])
            errors[f][test] = _relative(pred, data.y[test])
    return errors


def _in_sample_errors(forms: list[str], data: _Data) -> dict[str, np.ndarray]:
    return {f: _relative_errors(f, _fit_form(f, data), data) for f in forms}


def _relative_errors(form: str, params: dict, data: _Data) -> np.ndarray:
    return _relative(_predict(form, params, data.n), data.y)


def _relative(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        errors: np.ndarray = np.nan_to_num(np.abs(pred - y) / y, nan=np.inf)
    return errors


def _select(errors: dict[str, np.ndarray], group: np.ndarray) -> str:
    """The simplest form that no more complex form beats clearly (see ``_clearly_better``)."""
    forms = [f for f in FORMS if f in errors]
    per_size = {f: _group_medians(errors[f], group) for f in forms}
    score = {f: float(np.median(errors[f])) for f in forms}
    for i, simple in enumerate(forms):
        if not any(_clearly_better(score[c], score[simple], per_size[c], per_size[simple]) for c in forms[i + 1 :]):
            return simple
    raise AssertionError("unreachable: the most complex form is never beaten by a more complex one")


def _clearly_better(
    complex_score: float, simple_score: float, complex_sizes: np.ndarray, simple_sizes: np.ndarray
) -> bool:
    """Lower by both margins, and lower at >= ``MIN_WIN_FRACTION`` of the sizes (ties count half).

    The win fraction guards against noise: with 10% timing noise, two adequate forms' pooled median
    errors differ by a few hundredths at random, which the margins alone let through.
    """
    gain = simple_score - complex_score
    if not (gain > MARGIN_ABS and gain > MARGIN_REL * simple_score):
        return False
    wins = np.count_nonzero(complex_sizes < simple_sizes) + 0.5 * np.count_nonzero(complex_sizes == simple_sizes)
    return bool(wins >= MIN_WIN_FRACTION * complex_sizes.size)


def _group_medians(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    return np.array([np.median(values[group == g]) for g in range(int(group.max()) + 1)])
