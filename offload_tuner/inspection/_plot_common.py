"""What every figure of a profile shares: the backend choice, colours, axis formatting, reading the profile's
JSON, and the constant a plan asks to compare with (never imported by the runtime)."""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

if (
    "matplotlib.pyplot" not in sys.modules
    and not os.environ.get("MPLBACKEND")  # Jupyter's kernel sets it to its inline backend
    and sys.platform not in ("win32", "darwin")
    and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
):
    matplotlib.use("Agg")  # no display: never try a GUI backend if someone imports pyplot later

from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from offload_tuner.inspection._report import compare_with_value
from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel

_COLORS = {
    "compute": "tab:blue",
    "caller_serial": "tab:orange",
    "loop": "tab:red",
    "latency": "tab:purple",
    "period": "tab:green",
    "threshold": "black",
    "interval": "gold",
    "old": "0.45",
    "extrapolated": "0.88",
    "shared_memory": "tab:cyan",
}


# ------------------------------------------------------------------------------------------ formatting


def _fmt_seconds(value: float, _pos: Any = None) -> str:
    if value <= 0 or not math.isfinite(value):
        return ""
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if value >= scale * 0.9999:
            return f"{value / scale:g} {unit}"
    return f"{value:.0e} s"


def _fmt_size(value: float, _pos: Any = None) -> str:
    if value <= 0 or not math.isfinite(value):
        return ""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _log_axis(axis: Any, formatter: Any) -> None:
    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(formatter))
    axis.set_minor_formatter(NullFormatter())


def _host_label(profile: Mapping[str, Any]) -> str:
    host = profile.get("host") or {}
    executor = profile.get("executor") or {}
    parts = [f"host {host.get('hostname', '?')}"]
    if host.get("logical_cores"):
        parts.append(f"{host['logical_cores']} cores")
    if host.get("python_version") or host.get("python_minor"):
        parts.append(f"Python {host.get('python_version') or host.get('python_minor')}")
    if executor.get("kind"):
        parts.append(f"{executor['kind']} pool x{executor.get('workers', '?')}")
    return ", ".join(parts)


def _pct(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _short(key: str) -> str:
    return key.rsplit(":", 1)[-1]


# -------------------------------------------------------------------------------------- profile access


def _kernels(profile: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    kernels = profile.get("kernels")
    if not isinstance(kernels, Mapping):
        raise ValueError("profile data has no 'kernels' object")
    return kernels


def _entry(profile: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    kernels = _kernels(profile)
    if key not in kernels:
        raise KeyError(f"kernel {key!r} is not in the profile (it has: {', '.join(kernels) or 'none'})")
    return kernels[key]


def _costs(entry: Mapping[str, Any]) -> KernelCosts | None:
    if "costs" not in entry:
        return None
    return KernelCosts.from_json(entry["costs"])


def _transport(profile: Mapping[str, Any]) -> TransportModel | None:
    try:
        return TransportModel.from_json(profile["transport"]["model"])
    except (KeyError, TypeError, ValueError):
        return None


def _knobs(profile: Mapping[str, Any]) -> PolicyKnobs:
    return PolicyKnobs.from_json(profile.get("policy") or {})


def _calibrated_range(entry: Mapping[str, Any], costs: KernelCosts | None) -> tuple[float, float] | None:
    rng = entry.get("calibrated_range")
    if isinstance(rng, (list, tuple)) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng):
        return float(rng[0]), float(rng[1])
    return costs.compute.size_range if costs is not None else None


def _interval(entry: Mapping[str, Any]) -> tuple[int | None, int | None]:
    interval = entry.get("interval")
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        return interval[0], interval[1]
    return None, None


def _mad(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    med = statistics.median(values)
    return statistics.median(abs(v - med) for v in values)


def _series(samples: Mapping[str, Any], name: str) -> list[tuple[float, float, float, list[float]]]:
    """(size, median, MAD, raw values) for each size with a positive median, from ``samples``."""
    sizes = samples.get("size") or []
    medians = samples.get(f"{name}_s") or []
    raws = samples.get(f"{name}_values_s") or [[] for _ in sizes]
    mads = samples.get(f"{name}_mad_s")
    out = []
    for i, (n, med) in enumerate(zip(sizes, medians)):
        raw = [v for v in (raws[i] if i < len(raws) else []) if isinstance(v, (int, float)) and v > 0]
        if not (isinstance(n, (int, float)) and n > 0 and isinstance(med, (int, float)) and med > 0):
            continue
        mad = mads[i] if mads is not None and i < len(mads) else _mad(raw)
        out.append((float(n), float(med), float(mad), raw))
    return out


def _geomspace(lo: float, hi: float, count: int) -> list[float]:
    if hi <= lo:
        return [lo]
    step = math.log(hi / lo) / (count - 1)
    return [lo * math.exp(step * i) for i in range(count)]


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:4]) or text


# ------------------------------------------------------------------------------------------ old constant


def _compare_with(entry: Mapping[str, Any] | None, key: str) -> float | None:
    """The constant the plan asked this kernel's figures to compare with (the entry's ``compare_with``), or None:
    profiles written before the field, and plans that do not set it, draw no constant."""
    if entry is None:
        return None
    return compare_with_value(entry.get("compare_with"), f"kernel {key}")


def _old_label(value: float) -> str:
    return f"old constant {value:g}"
