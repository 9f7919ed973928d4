"""Cost models (pure, stdlib only): a fitted curve of seconds (or bytes) against input size.

Read at run time and by ``offload-tuner explain``/``check``, so this module must not import numpy or
scikit-learn; :mod:`offload_tuner.calibration._fit` produces the models during calibration.

Forms, in order of complexity (the fit prefers the simplest adequate one), in the style of StarPU's
performance models:

* ``constant``: ``c``
* ``power``: ``a * n**b`` (``0`` at ``n = 0`` unless ``b == 0``)
* ``power_offset``: ``c + a * n**b`` (a fixed per-call overhead plus a power law)
* ``loglog_linear_interp``: piecewise-linear interpolation through knots ``(log_n[i], log_y[i])`` in
  log-log space, a monotone smoother of the per-size medians for shapes no closed form fits. Beyond
  the knots it continues the end segments' slopes; below ``min(1, smallest knot size)`` it is flat
  (so size 0 costs what the smallest positive size, or size 1, costs), never NaN.

Every parameter is finite; ``a``, ``b``, ``c`` are ``>= 0`` (costs do not shrink as inputs grow).
Predictions are finite and ``>= 0`` for every finite size ``>= 0`` (overflow saturates at the largest
float).
"""

from __future__ import annotations

import bisect
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

FORMS = ("constant", "power", "power_offset", "loglog_linear_interp")
"""Every form, simplest first."""

MIN_SAMPLES = 6
"""A model fitted on fewer raw samples is not trusted."""
MIN_SPAN = 4.0
"""A model whose largest measured size is less than this many times its smallest is not trusted."""
MIN_DISTINCT_SIZES = 3
"""A model measured at fewer distinct sizes cannot be cross-validated, so it is not trusted."""
TRUST_WINDOW = (0.9, 1.1)
"""``in_range`` accepts sizes from ``0.9 * min`` to ``1.1 * max`` of the measured range (as StarPU)."""

_PARAMS: dict[str, tuple[str, ...]] = {
    "constant": ("c",),
    "power": ("a", "b"),
    "power_offset": ("a", "b", "c"),
    "loglog_linear_interp": ("log_n", "log_y"),
}
_FIELDS = ("form", "params", "size_range", "cv_error", "n_samples", "trusted", "notes")
_REQUIRED = _FIELDS[:-1]
_MAX = sys.float_info.max


class CostModelError(ValueError):
    """A cost model (usually read from a profile) is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class CostModel:
    """A fitted cost curve; validated on construction, so every instance predicts sanely."""

    form: str
    params: Mapping[str, float | list[float]]
    size_range: tuple[float, float]
    """Smallest and largest size measured."""
    cv_error: float
    """Cross-validated median absolute relative error ``|pred - y| / y`` over held-out points."""
    n_samples: int
    trusted: bool
    """Enough samples, distinct sizes and span, and positive data (see ``_fit``)."""
    notes: tuple[str, ...] = ()
    """Human-readable: why not trusted, which forms were tried and their CV errors."""

    def __post_init__(self) -> None:
        form = self.form
        if not isinstance(form, str):
            raise CostModelError(f"cost model field 'form' must be a string, got {_kind(form)}")
        if form not in _PARAMS:
            raise CostModelError(f"cost model field 'form': unknown form {form!r} (expected one of {', '.join(FORMS)})")
        object.__setattr__(self, "params", _check_params(form, self.params))
        object.__setattr__(self, "size_range", _check_size_range(self.size_range))
        object.__setattr__(self, "cv_error", _number("cv_error", self.cv_error, minimum=0.0))
        n_samples = self.n_samples
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
            raise CostModelError(f"cost model field 'n_samples' must be an integer >= 0, got {_show(n_samples)}")
        if not isinstance(self.trusted, bool):
            raise CostModelError(f"cost model field 'trusted' must be true or false, got {_show(self.trusted)}")
        notes = self.notes
        if not isinstance(notes, (list, tuple)) or not all(isinstance(note, str) for note in notes):
            raise CostModelError("cost model field 'notes' must be a list of strings")
        object.__setattr__(self, "notes", tuple(notes))

    # ------------------------------------------------------------------------------------ prediction

    def predict(self, n: float) -> float:
        """Predicted cost at size ``n`` (finite, ``>= 0``); extrapolates with the form outside the range."""
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            raise TypeError(f"size must be a number, got {_kind(n)}")
        try:
            n = float(n)
        except OverflowError:
            raise ValueError("size must be a finite number >= 0, got an integer too large for a float") from None
        if not math.isfinite(n) or n < 0:
            raise ValueError(f"size must be a finite number >= 0, got {n!r}")
        p = self.params
        form = self.form
        # _check_params validated each form's parameters: numbers, and the two lists of "interp".
        if form == "constant":
            value = cast(float, p["c"])
        elif form == "power":
            value = _power(cast(float, p["a"]), cast(float, p["b"]), n)
        elif form == "power_offset":
            value = cast(float, p["c"]) + _power(cast(float, p["a"]), cast(float, p["b"]), n)
        else:
            value = _interp(cast("list[float]", p["log_n"]), cast("list[float]", p["log_y"]), n)
        if not value >= 0:  # NaN guard; cannot happen with validated params, kept as a last line of defence
            return 0.0
        return min(value, _MAX)

    def in_range(self, n: float) -> bool:
        """Whether ``n`` lies in the trusted window ``[0.9 * min, 1.1 * max]`` of the measured sizes."""
        lo, hi = self.size_range
        return TRUST_WINDOW[0] * lo <= n <= TRUST_WINDOW[1] * hi

    # ------------------------------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only; ``from_json(m.to_json()) == m``."""
        return {
            "form": self.form,
            "params": {k: list(v) if isinstance(v, list) else v for k, v in self.params.items()},
            "size_range": list(self.size_range),
            "cv_error": self.cv_error,
            "n_samples": self.n_samples,
            "trusted": self.trusted,
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: object) -> CostModel:
        """Strictly validated: anything malformed raises :class:`CostModelError` naming the field."""
        if not isinstance(data, Mapping):
            raise CostModelError(f"cost model must be a JSON object, got {_kind(data)}")
        unknown = sorted(str(k) for k in data if k not in _FIELDS)
        if unknown:
            raise CostModelError(f"cost model has unknown field(s): {', '.join(map(repr, unknown))}")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise CostModelError(f"cost model is missing field(s): {', '.join(map(repr, missing))}")
        form = data["form"]
        if not isinstance(form, str):
            raise CostModelError(f"cost model field 'form' must be a string, got {_kind(form)}")
        size_range = data["size_range"]
        if not isinstance(size_range, list):  # JSON arrays only (a tuple is accepted when constructing directly)
            raise CostModelError(f"cost model field 'size_range' must be a list [min, max], got {_kind(size_range)}")
        notes = data.get("notes", [])
        if not isinstance(notes, list):
            raise CostModelError(f"cost model field 'notes' must be a list of strings, got {_kind(notes)}")
        return cls(
            form=form,
            params=data["params"],
            size_range=cast("tuple[float, float]", size_range),  # a list, made a checked tuple by __post_init__
            cv_error=data["cv_error"],
            n_samples=data["n_samples"],
            trusted=data["trusted"],
            notes=tuple(notes),
        )


# ---------------------------------------------------------------------------------------- internals


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return _MAX


def _power(a: float, b: float, n: float) -> float:
    if b == 0:
        return a
    if n == 0 or a == 0:
        return 0.0
    return _exp(math.log(a) + b * math.log(n))


def _interp(log_n: list[float], log_y: list[float], n: float) -> float:
    """Linear in log-log through the knots; end slopes beyond them; flat below min(1, first knot)."""
    floor = min(0.0, log_n[0])
    x = floor if n == 0 else max(math.log(n), floor)
    last = len(log_n) - 1
    i = min(max(bisect.bisect_right(log_n, x) - 1, 0), last - 1)  # segment [i, i + 1]
    x0, x1, y0, y1 = log_n[i], log_n[i + 1], log_y[i], log_y[i + 1]
    if x0 <= x <= x1:  # inside: a convex combination, exact at the knots
        t = (x - x0) / (x1 - x0)
        y = y0 + t * (y1 - y0) if t <= 0.5 else y1 - (1 - t) * (y1 - y0)
    elif x < x0:
        y = y0 - (y1 - y0) / (x1 - x0) * (x0 - x)
    else:
        y = y1 + (y1 - y0) / (x1 - x0) * (x - x1)
    if math.isnan(y):  # inf - inf with absurd (but finite) knots: fall back to the nearest knot
        y = y0 if abs(x - x0) <= abs(x - x1) else y1
    return _exp(y)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(name: str, value: object, *, minimum: float | None = None) -> float:
    """A finite float from an int or float (never a bool), optionally bounded below."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CostModelError(f"cost model field {name!r} must be a number, got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise CostModelError(f"cost model field {name!r} must be a finite number, got an integer too large") from None
    if not math.isfinite(number):
        raise CostModelError(f"cost model field {name!r} must be a finite number, got {number!r}")
    if minimum is not None and number < minimum:
        raise CostModelError(f"cost model field {name!r} must be >= {minimum:g}, got {number!r}")
    return number


def _check_params(form: str, params: object) -> dict[str, float | list[float]]:
    if not isinstance(params, Mapping):
        raise CostModelError(f"cost model field 'params' must be an object, got {_kind(params)}")
    expected = _PARAMS[form]
    unknown = sorted(str(k) for k in params if k not in expected)
    if unknown:
        raise CostModelError(
            f"cost model field 'params' has unknown key(s) for form {form!r}: {', '.join(map(repr, unknown))}"
        )
    missing = [k for k in expected if k not in params]
    if missing:
        raise CostModelError(f"cost model field 'params' is missing {', '.join(map(repr, missing))} for form {form!r}")
    if form != "loglog_linear_interp":
        return {k: _number(f"params.{k}", params[k], minimum=0.0) for k in expected}
    knots: dict[str, list[float]] = {}
    for key in expected:
        values = params[key]
        if not isinstance(values, (list, tuple)):
            raise CostModelError(f"cost model field 'params.{key}' must be a list of numbers, got {_kind(values)}")
        knots[key] = [_number(f"params.{key}[{i}]", v) for i, v in enumerate(values)]
    log_n, log_y = knots["log_n"], knots["log_y"]
    if len(log_n) < 2:
        raise CostModelError(f"cost model field 'params.log_n' needs at least 2 knots, got {len(log_n)}")
    if len(log_y) != len(log_n):
        raise CostModelError(
            f"cost model fields 'params.log_n' and 'params.log_y' differ in length ({len(log_n)} vs {len(log_y)})"
        )
    for i in range(1, len(log_n)):
        if not log_n[i] > log_n[i - 1]:
            raise CostModelError(
                f"cost model field 'params.log_n' must be strictly increasing, but [{i - 1}]={log_n[i - 1]!r} "
                f">= [{i}]={log_n[i]!r}"
            )
    return {"log_n": log_n, "log_y": log_y}


def _check_size_range(size_range: object) -> tuple[float, float]:
    if not isinstance(size_range, (list, tuple)) or len(size_range) != 2:
        raise CostModelError(f"cost model field 'size_range' must be [min, max], got {_show(size_range)}")
    lo = _number("size_range[0]", size_range[0], minimum=0.0)
    hi = _number("size_range[1]", size_range[1], minimum=0.0)
    if lo > hi:
        raise CostModelError(f"cost model field 'size_range' must have min <= max, got [{lo!r}, {hi!r}]")
    return (lo, hi)
