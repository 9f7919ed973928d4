"""The [prometheus] extra: the collector's scrape parses with prometheus_client's own parser and says what stats()
says (calls by kernel, decision and backend; the sampled timings), the drift verdict, and nothing is imported or
loaded that a service did not ask for."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import prometheus_client  # the [prometheus] extra, part of the test extra
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import offload_tuner
from offload_tuner.runtime import _observe, _state
from offload_tuner.runtime._registry import spec_for
from tests.support import total, write_profile_json

KEY = spec_for(total).key
SIZES = (1, 3, 10, 63, 64, 100, 1000, 5000)  # threshold 64: four inline, four offloaded


def scrape() -> dict[str, list]:
    """A fresh registry's exposition, parsed back: family name -> its samples."""
    registry = CollectorRegistry()
    offload_tuner.prometheus_collector(registry)
    text = generate_latest(registry).decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def samples_of(families: dict[str, list], name: str, **labels: str) -> list:
    return [s for s in families[name] if all(s.labels.get(k) == v for k, v in labels.items())]


def kernel_stats() -> dict:
    (section,) = offload_tuner.stats()["processes"].values()
    return section["kernels"][KEY]


def run_mix(executor, kind: str, tmp_path) -> None:
    offload_tuner.sample_every(1)  # every call timed, so every kind has samples
    offload_tuner.set_executor(executor)
    offload_tuner.load_profile(write_profile_json(tmp_path / "p.json", {KEY: 64}, executor_kind=kind))
    for _ in range(2):
        for n in SIZES:
            assert offload_tuner.run_kernel_sync(total, list(range(n))) == n * (n - 1) // 2


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_the_scrape_parses_and_its_counts_equal_stats(pool, tmp_path, kind):
    if kind == "process":
        run_mix(pool, kind, tmp_path)
        families = scrape()
    else:
        with ThreadPoolExecutor(2) as threads:
            run_mix(threads, kind, tmp_path)
            families = scrape()  # while installed: the backend label says where offloaded calls go now
    mine = kernel_stats()
    expected = {decision: sum(mine["calls"][decision].values()) for decision in ("inline", "offload")}
    assert expected == {"inline": 8, "offload": 8}  # both sides were exercised

    calls = samples_of(families, "offload_tuner_calls", kernel=KEY)
    by_decision = {(s.labels["decision"], s.labels["backend"]): s.value for s in calls}
    assert by_decision == {("inline", "inline"): expected["inline"], ("offloaded", kind): expected["offload"]}
    assert all(s.name == "offload_tuner_calls_total" for s in calls)
    (explored,) = samples_of(families, "offload_tuner_explored_calls", kernel=KEY)
    assert explored.value == mine["explored"] == 0

    for decision, sample_kind, timing in (
        ("inline", "inline", "compute"),
        ("offloaded", "loop", "caller_blocked"),
        ("offloaded", "latency", "round_trip"),
    ):
        seconds = [row[2] for row in mine["samples"][sample_kind]]
        (count,) = samples_of(families, "offload_tuner_sampled_calls", kernel=KEY, timing=timing)
        assert count.labels["decision"] == decision and count.value == len(seconds) > 0
        quantiles = {
            s.labels["quantile"]: s.value
            for s in samples_of(families, "offload_tuner_sampled_seconds", kernel=KEY, timing=timing)
        }
        assert set(quantiles) == {"0.5", "0.9", "0.99"}
        assert quantiles["0.5"] == pytest.approx(statistics.median(seconds), rel=1e-9)
        assert min(seconds) <= quantiles["0.5"] <= quantiles["0.9"] <= quantiles["0.99"] <= max(seconds)


def test_every_family_has_help_and_the_prefix_and_nothing_without_a_profile():
    offload_tuner.run_kernel_sync(total, [1, 2])  # no executor, no profile: inline
    registry = CollectorRegistry()
    offload_tuner.prometheus_collector(registry)
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert sorted(families) == [
        "offload_tuner_calls",
        "offload_tuner_drift_ratio",
        "offload_tuner_explored_calls",
        "offload_tuner_needs_recalibration",
        "offload_tuner_sampled_calls",
        "offload_tuner_sampled_seconds",
    ]
    assert all(f.documentation for f in families.values())
    assert families["offload_tuner_calls"].type == "counter"
    assert families["offload_tuner_needs_recalibration"].samples == []  # no profile: no verdict
    (inline,) = [s for s in families["offload_tuner_calls"].samples if s.labels["decision"] == "inline"]
    assert inline.value == 1


def _profile_with_model(tmp_path, compute_s: float):
    """A profile keeping `total` inline, with a cost model saying one call computes in compute_s."""
    from offload_tuner.runtime._costmodel import CostModel
    from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel

    path = write_profile_json(tmp_path / f"model-{compute_s}.json", {KEY: 1 << 40}, executor_kind="thread")
    data = json.loads(path.read_text())

    def constant(c):
        return CostModel("constant", {"c": c}, (1.0, 100000.0), 0.0, 20, True)

    data["kernels"][KEY]["costs"] = KernelCosts(
        constant(compute_s), constant(1e-6), constant(1e-6), constant(100.0)
    ).to_json()
    data["transport"] = {"model": TransportModel(2e-4, 0.0, 2e-5, 0.0, 2e-5, 0.0).to_json()}
    data["policy"] = PolicyKnobs(concurrency=4, workers=2, cores=2).to_json()
    path.write_text(json.dumps(data))
    return path


def verdict(families) -> tuple[float, str]:
    (sample,) = samples_of(families, "offload_tuner_needs_recalibration", kernel=KEY)
    return sample.value, sample.labels["reason"]


def test_the_drift_verdict_follows_the_installed_model(tmp_path):
    offload_tuner.sample_every(1)
    for _ in range(16):  # inline, no executor: 16 timed calls in one size bucket, over MIN_SAMPLES
        offload_tuner.run_kernel_sync(total, list(range(100)))
    observed = statistics.median(row[2] for row in kernel_stats()["samples"]["inline"])

    offload_tuner.load_profile(_profile_with_model(tmp_path, observed))  # a model that says what was seen
    assert verdict(scrape()) == (0.0, "within_model")

    offload_tuner.load_profile(_profile_with_model(tmp_path, observed / 1000))  # a thousand times too fast
    families = scrape()
    assert verdict(families) == (1.0, "compute_slower")
    (ratio,) = samples_of(families, "offload_tuner_drift_ratio", kernel=KEY, timing="compute")
    assert ratio.value > 1.5


def test_a_scrape_reads_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFLOAD_TUNER_PROFILE", str(write_profile_json(tmp_path / "default.json", {KEY: 64})))
    observers = _observe._observers
    registry = CollectorRegistry()
    offload_tuner.prometheus_collector(registry)
    assert _observe._observers == observers  # nothing added to the call path
    first = generate_latest(registry)
    assert _state.current().profile is _state.UNLOADED  # the configured profile was not loaded by the scrape
    assert generate_latest(registry) == first  # no state between scrapes: the same stats, the same text
    assert offload_tuner.stats()["processes"].popitem()[1]["kernels"] == {}


def test_the_default_registry_and_the_missing_extra(monkeypatch):
    offload_tuner.run_kernel_sync(total, [1, 2, 3])
    collector = offload_tuner.prometheus_collector()
    try:
        text = generate_latest(prometheus_client.REGISTRY).decode()
        assert f'offload_tuner_calls_total{{backend="inline",decision="inline",kernel="{KEY}"}} 1.0' in text
    finally:
        prometheus_client.REGISTRY.unregister(collector)

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "prometheus_client" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"offload-tuner\[prometheus\]"):
        offload_tuner.prometheus_collector(CollectorRegistry())


def test_importing_offload_tuner_imports_neither_prometheus_nor_fastapi():
    code = (
        "import sys\nimport offload_tuner\nfrom tests.support import total\n"
        "offload_tuner.run_kernel_sync(total, [1, 2, 3])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prometheus_client', 'fastapi', 'starlette')"
        " or m == 'offload_tuner.runtime.feedback._prometheus'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
