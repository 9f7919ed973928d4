"""CostModel: prediction per form, the trust window, strict JSON validation (no numpy needed)."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import offload_tuner.runtime._costmodel as costmodel
from offload_tuner.runtime._costmodel import FORMS, MIN_SAMPLES, MIN_SPAN, CostModel, CostModelError

HUGE = 1e300
EXAMPLES = {
    "constant": {"c": 2.5e-4},
    "power": {"a": 3e-7, "b": 2.0},
    "power_offset": {"a": 2e-8, "b": 1.0, "c": 2e-4},
    "loglog_linear_interp": {"log_n": [math.log(10), math.log(100), math.log(1000)], "log_y": [-9.0, -8.0, -5.0]},
}


def model(form: str, params: dict | None = None, **overrides) -> CostModel:
    fields = dict(
        form=form,
        params=EXAMPLES[form] if params is None else params,
        size_range=(10.0, 1000.0),
        cv_error=0.03,
        n_samples=40,
        trusted=True,
        notes=("chose it",),
    )
    fields.update(overrides)
    return CostModel(**fields)


def valid_json(form: str = "power") -> dict:
    return model(form).to_json()


def test_constants_are_exported():
    assert MIN_SAMPLES == 6
    assert MIN_SPAN == 4.0
    assert FORMS == ("constant", "power", "power_offset", "loglog_linear_interp")
    assert issubclass(CostModelError, ValueError)


def test_module_is_stdlib_only():
    """Read at run time in production: no numpy / scikit-learn import, directly or in a fresh interpreter."""
    tree = ast.parse(Path(costmodel.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    code = "import sys, offload_tuner.runtime._costmodel; assert 'numpy' not in sys.modules and 'sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------ predict


def test_predict_constant():
    m = model("constant")
    assert [m.predict(n) for n in (0, 1, 1e6)] == [2.5e-4] * 3


def test_predict_power():
    m = model("power")
    assert m.predict(0) == 0.0
    assert m.predict(1000) == pytest.approx(3e-7 * 1000**2, rel=1e-12)
    assert m.predict(0.5) == pytest.approx(3e-7 * 0.25, rel=1e-12)
    flat = model("power", {"a": 5.0, "b": 0.0})
    assert flat.predict(0) == 5.0 and flat.predict(1e9) == 5.0
    assert model("power", {"a": 0.0, "b": 2.0}).predict(1e6) == 0.0


def test_predict_power_offset():
    m = model("power_offset")
    assert m.predict(0) == 2e-4
    assert m.predict(1e4) == pytest.approx(2e-4 + 2e-8 * 1e4, rel=1e-12)
    assert model("power_offset", {"a": 1.0, "b": 0.0, "c": 2.0}).predict(0) == 3.0


def test_predict_interp_at_between_and_beyond_the_knots():
    m = model("loglog_linear_interp")
    # exact at the knots
    for log_n, log_y in zip(EXAMPLES["loglog_linear_interp"]["log_n"], EXAMPLES["loglog_linear_interp"]["log_y"]):
        assert m.predict(math.exp(log_n)) == pytest.approx(math.exp(log_y), rel=1e-12)
    # linear in log-log between them: halfway in log n is halfway in log y
    assert m.predict(math.sqrt(100 * 1000)) == pytest.approx(math.exp(-6.5), rel=1e-12)
    # end-segment slopes beyond: the last segment rises 3 per decade of n, the first 1
    assert m.predict(10000) == pytest.approx(math.exp(-5.0 + 3), rel=1e-9)
    assert m.predict(1) == pytest.approx(math.exp(-9.0 - 1), rel=1e-9)
    # flat below min(1, first knot): size 0 costs what size 1 costs
    assert m.predict(0) == m.predict(0.5) == m.predict(1)


def test_predict_interp_size_zero_with_knots_below_one():
    m = model("loglog_linear_interp", {"log_n": [math.log(0.01), math.log(0.1)], "log_y": [-3.0, -2.0]})
    assert m.predict(0) == pytest.approx(math.exp(-3.0))
    assert m.predict(0.001) == m.predict(0)


@pytest.mark.parametrize(
    "form, params",
    [
        *EXAMPLES.items(),
        ("power", {"a": 1e300, "b": 50.0}),
        ("power", {"a": 1e-300, "b": 0.0}),
        ("power_offset", {"a": 1e308, "b": 3.5, "c": 1e308}),
        ("loglog_linear_interp", {"log_n": [0.0, 1e-300], "log_y": [-1e308, 1e308]}),
        ("loglog_linear_interp", {"log_n": [-1e308, 1e308], "log_y": [1e308, -1e308]}),
        ("loglog_linear_interp", {"log_n": [5.0, 6.0], "log_y": [3.0, -40.0]}),
    ],
)
@pytest.mark.parametrize("n", [0, 0.5, 1, 7, HUGE, sys.float_info.max])
def test_predict_is_finite_and_non_negative(form, params, n):
    value = model(form, params).predict(n)
    assert math.isfinite(value) and value >= 0


@pytest.mark.parametrize("n", [-1, -1e-9, math.nan, math.inf])
def test_predict_rejects_sizes_outside_its_domain(n):
    with pytest.raises(ValueError, match="size"):
        model("power").predict(n)


def test_in_range_is_the_starpu_trust_window():
    m = model("power", size_range=(100.0, 1000.0))
    assert m.in_range(90) and m.in_range(100) and m.in_range(1000) and m.in_range(1100)
    assert not m.in_range(89.9) and not m.in_range(1100.1) and not m.in_range(0)


# ---------------------------------------------------------------------------------------------- JSON


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, bool, int, float)


@pytest.mark.parametrize("form", FORMS)
def test_json_round_trip(form):
    m = model(form, trusted=False, notes=("not trusted: only 4 samples (need >= 6)", "tried power"))
    data = m.to_json()
    assert _plain(data)
    assert CostModel.from_json(json.loads(json.dumps(data))) == m
    assert CostModel.from_json(data) == m


def test_notes_are_optional_in_json():
    data = valid_json()
    del data["notes"]
    assert CostModel.from_json(data).notes == ()


def test_to_json_does_not_share_knot_lists():
    m = model("loglog_linear_interp")
    m.to_json()["params"]["log_n"].append(99.0)
    assert len(m.params["log_n"]) == 3


def _with(path: str, value, form: str = "power") -> dict:
    data = valid_json(form)
    target = data
    *parents, last = path.split(".")
    for key in parents:
        target = target[key]
    target[last] = value
    return data


@pytest.mark.parametrize(
    "data, field",
    [
        (_with("form", "cubic"), "form"),
        (_with("form", 3), "form"),
        (_with("params.a", math.nan), "params.a"),
        (_with("params.b", math.inf), "params.b"),
        (_with("params.a", -1e-9), "params.a"),
        (_with("params.b", -0.5), "params.b"),
        (_with("params.c", -2e-4, "power_offset"), "params.c"),
        (_with("params.c", math.nan, "constant"), "params.c"),
        (_with("params.a", "3e-7"), "params.a"),
        (_with("params.a", True), "params.a"),
        (_with("params.a", None), "params.a"),
        (_with("params.a", 10**400), "params.a"),
        (_with("params", [1, 2]), "params"),
        (_with("params", {"a": 1.0}), "params"),  # missing b
        (_with("params", {"a": 1.0, "b": 2.0, "c": 0.0}), "params"),  # c is not a power parameter
        (_with("params.log_n", [1.0, 1.0, 2.0], "loglog_linear_interp"), "params.log_n"),
        (_with("params.log_n", [3.0, 2.0, 1.0], "loglog_linear_interp"), "params.log_n"),
        (_with("params.log_n", [1.0], "loglog_linear_interp"), "params.log_n"),
        (_with("params.log_y", [1.0, 2.0], "loglog_linear_interp"), "params.log_y"),
        (_with("params.log_y", [1.0, math.nan, 2.0], "loglog_linear_interp"), "params.log_y[1]"),
        (_with("params.log_n", "1,2,3", "loglog_linear_interp"), "params.log_n"),
        (_with("size_range", [1000.0, 10.0]), "size_range"),
        (_with("size_range", [10.0]), "size_range"),
        (_with("size_range", {"min": 1, "max": 2}), "size_range"),
        (_with("size_range", [-1.0, 10.0]), "size_range[0]"),
        (_with("size_range", [1.0, math.inf]), "size_range[1]"),
        (_with("cv_error", math.nan), "cv_error"),
        (_with("cv_error", -0.1), "cv_error"),
        (_with("cv_error", "0.1"), "cv_error"),
        (_with("n_samples", 40.0), "n_samples"),
        (_with("n_samples", -1), "n_samples"),
        (_with("n_samples", True), "n_samples"),
        (_with("trusted", "yes"), "trusted"),
        (_with("trusted", 1), "trusted"),
        (_with("notes", "a note"), "notes"),
        (_with("notes", ["ok", 3]), "notes"),
        (_with("extra", 1), "extra"),
        ({k: v for k, v in valid_json().items() if k != "cv_error"}, "cv_error"),
        ([valid_json()], "JSON object"),
        (None, "JSON object"),
    ],
)
def test_from_json_rejects_with_a_message_naming_the_field(data, field):
    with pytest.raises(CostModelError) as info:
        CostModel.from_json(data)
    assert field in str(info.value)


def test_constructor_validates_too():
    with pytest.raises(CostModelError, match="params.a"):
        CostModel("power", {"a": -1.0, "b": 1.0}, (1.0, 10.0), 0.0, 10, True)


# -------------------------------------------------------------------------------- property: from_json

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
finite = st.floats(allow_nan=False, allow_infinity=False)
non_negative = st.floats(min_value=0.0, allow_infinity=False)


@st.composite
def valid_model_json(draw) -> dict:
    form = draw(st.sampled_from(FORMS))
    if form == "loglog_linear_interp":
        log_n = sorted(set(draw(st.lists(finite, min_size=2, max_size=6))))
        if len(log_n) < 2:
            log_n = [0.0, 1.0]
        params = {"log_n": log_n, "log_y": draw(st.lists(finite, min_size=len(log_n), max_size=len(log_n)))}
    else:
        params = {k: draw(non_negative) for k in costmodel._PARAMS[form]}
    lo, hi = sorted(draw(st.lists(non_negative, min_size=2, max_size=2)))
    return {
        "form": form,
        "params": params,
        "size_range": [lo, hi],
        "cv_error": draw(non_negative),
        "n_samples": draw(st.integers(0, 10**6)),
        "trusted": draw(st.booleans()),
        "notes": draw(st.lists(st.text(max_size=5), max_size=3)),
    }


@st.composite
def corrupted_model_json(draw) -> dict:
    """A valid model with one field, or one parameter, replaced by arbitrary JSON (often still valid)."""
    data = draw(valid_model_json())
    replacement = draw(st.one_of(json_values, st.floats(), st.integers(-(10**400), 10**400)))
    if draw(st.booleans()):
        data[draw(st.sampled_from([*data, "junk"]))] = replacement
    else:
        data["params"][draw(st.sampled_from([*data["params"], "junk"]))] = replacement
    return data


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, valid_model_json(), corrupted_model_json()))
def test_from_json_returns_a_model_or_raises_cost_model_error(data):
    try:
        m = CostModel.from_json(data)
    except CostModelError:
        return
    # whatever was accepted is usable: predictions are finite and >= 0, and it round-trips
    for n in (0, 0.5, 1, 1e3, HUGE):
        value = m.predict(n)
        assert math.isfinite(value) and value >= 0
    assert CostModel.from_json(json.loads(json.dumps(m.to_json()))) == m
