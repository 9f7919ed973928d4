"""Plain-text tables of a profile, shared by ``calibrate`` and ``show`` (no third-party imports)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f} us"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def format_threshold(value: int | None) -> str:
    return "never" if value is None else ("always" if value == 0 else str(value))


def format_interval(interval: Sequence[int | None] | None) -> str:
    if not interval:
        return "-"
    lo, hi = interval
    return f"[{'-' if lo is None else lo}, {'never' if hi is None else hi}]"


def compare_with_value(value: Any, where: str) -> float | None:
    """A ``compare_with`` (plan or profile entry: the constant a kernel's figures compare with, e.g. the old
    ``offload_if=len(x) >= 256``) as a number, None when absent. Off unless set: most users have no old constant.
    Anything else is an error naming ``where`` and the value, not a figure silently drawn without it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: compare_with must be a number (the constant to compare with), got {value!r}")
    if not (0 < value < float("inf")):
        raise ValueError(f"{where}: compare_with must be a size > 0 (the constant to compare with), got {value!r}")
    return value


def summary_rows(profile: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per kernel: what the final table shows, as data (``show --json`` prints these)."""
    rows = []
    for key, entry in profile.get("kernels", {}).items():
        at = entry.get("at_threshold") or {}
        fit = entry.get("fit_error") or {}
        load = entry.get("load") or {}
        thread = entry.get("thread") or {}
        shared = entry.get("shared") or {}
        rows.append(
            {
                "kernel": key,
                "status": entry.get("status", "ok"),
                "threshold": entry.get("threshold"),
                "interval": entry.get("interval"),
                "measured_best": load.get("best"),
                "tied": load.get("tied"),
                "candidates_measured": len(load.get("candidates", [])) or None,
                "makespan_error_under_load": load.get("model_error"),
                "reason": load.get("reason"),
                "fit_error_compute": fit.get("compute"),
                "fit_error_offload_latency": fit.get("offload_latency"),
                "inline_s_at_threshold": at.get("inline_s"),
                "offload_loop_s_at_threshold": at.get("offload_loop_s"),
                "offload_latency_s_at_threshold": at.get("offload_latency_s"),
                "thread_gil_hold": thread.get("gil_hold"),
                "thread_threshold": thread.get("threshold"),
                "thread_reason": thread.get("reason"),
                "shared_lane": None if "retuned_to" in shared else shared.get("lane"),  # retune owns it now
                "shared_alone_threshold": shared.get("alone"),
                "workload_range": entry.get("workload_range"),
                "workload_source": entry.get("workload_source"),
                **kernel_transport(profile, entry).to_json(),
                "error": entry.get("error"),
            }
        )
    return rows


_SOURCES = {
    "plan": "stated by the plan's workload_range",
    "kernel": "stated by @kernel(workload=...)",
    "assumed": "assumed: the measured range, no mix was stated",
}


def mix_text(entry: Mapping[str, Any]) -> str | None:
    """``64..16384 (stated by ...)``: the sizes a kernel's threshold was weighed over and where they came from
    (``source not recorded`` for a profile written before the source was); None without a mix."""
    workload = entry.get("workload_range")
    if not workload:
        return None
    source = _SOURCES.get(entry.get("workload_source") or "", "source not recorded")
    return f"{workload[0]:g}..{workload[1]:g} ({source})"


def format_mixes(profile: Mapping[str, Any], advise: bool = False) -> str:
    """One line per kernel with its mix; with ``advise`` (``calibrate``), how to state an assumed mix and why a
    stated mix's top was not measured."""
    lines = []
    for key, entry in profile.get("kernels", {}).items():
        text = mix_text(entry)
        if text is None:
            continue
        lines.append(f"  {key}: {text}")
        short = entry.get("ladder_short")
        if advise and entry.get("workload_source") == "assumed":
            lo, hi = entry["workload_range"]
            lines.append(
                f"    the threshold assumes production calls span {lo:g}..{hi:g}; state the real sizes with "
                f"@kernel(workload=(lo, hi)) or the plan's workload_range and calibrate again"
            )
        if advise and short:
            lines.append(
                f"    the ladder measured up to {short['measured_top']:g}, not the mix's top {short['mix_top']:g}: "
                f"stopped by {short['why']}; above it the choice rests on the fits' extrapolation"
            )
    return "mix (the sizes each threshold was weighed over):\n" + "\n".join(lines) if lines else ""


def guard_text(entry: Mapping[str, Any]) -> str | None:
    """A kernel's guard as ``show`` and ``explain`` print it (None: no guard recorded)."""
    from offload_tuner.runtime._profile import GuardEntry

    guard = entry.get("guard")
    if not isinstance(guard, Mapping):
        return None
    measured = entry.get("calibrated_range")
    top = measured[1] if isinstance(measured, list) and len(measured) == 2 else None
    text = GuardEntry(guard["size"], guard["extrapolated"]).describe(top)
    return f"{text}: offloaded from there whatever the threshold"


def extrapolated_text(entry: Mapping[str, Any]) -> str | None:
    """A kernel's extrapolated offload size as ``show`` and ``explain`` print it, or why calibration withheld one
    (None: neither recorded)."""
    from offload_tuner.runtime._profile import ExtrapolatedEntry, measured_top

    section = entry.get("extrapolated_offload")
    if not isinstance(section, Mapping):
        withheld = entry.get("extrapolation_withheld")
        return f"no extrapolated offload size: {withheld}" if isinstance(withheld, str) else None
    text = ExtrapolatedEntry(section["size"], section["gain"]).describe(measured_top(entry))
    return f"{text}: offloaded from there where the measured threshold would run calls inline"


def format_guards(profile: Mapping[str, Any]) -> str:
    """One line per kernel with a guard (the loop budget at sizes the threshold was not weighed over) or an
    extrapolated offload size (the model's estimate past the calibrated top)."""
    lines = [
        f"  {key}: {text}"
        for key, entry in profile.get("kernels", {}).items()
        for text in (guard_text(entry), extrapolated_text(entry))
        if text
    ]
    return "past the calibrated top:\n" + "\n".join(lines) if lines else ""


def _alone(row: Mapping[str, Any], lane: str) -> str:
    """`` (alone T)`` where the shared stream moved this lane's threshold from the kernel's alone choice."""
    if row.get("shared_lane") != lane:
        return ""
    now = row["thread_threshold"] if lane == "thread" else row["threshold"]
    alone = row["shared_alone_threshold"]
    return "" if alone == now else f" (alone {format_threshold(alone)})"


def _under_load(row: Mapping[str, Any]) -> str:
    measured, tied = row["candidates_measured"], row["tied"] or []
    if not measured:
        return "-"
    return f"{measured} tried, " + ("one best" if len(tied) <= 1 else f"flat ({len(tied)} tie)")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _thread_lane(row: Mapping[str, Any]) -> str:
    """``from T (GIL 2%)``, ``never (GIL 95%)``, or ``-`` for a profile without the measurement."""
    hold = row["thread_gil_hold"]
    if hold is None:
        return "-"
    t = row["thread_threshold"]
    return f"{'never' if t is None else 'from ' + format_threshold(t)} (GIL {hold:.0%}){_alone(row, 'thread')}"


def format_table(profile: Mapping[str, Any]) -> str:
    headers = [
        "kernel",
        "threshold",
        "interval",
        "under load",
        "fit err",
        "load err",
        "inline@thr",
        "loop@thr",
        "latency@thr",
        "thread lane",
        "status",
    ]
    body = []
    for row in summary_rows(profile):
        body.append(
            [
                row["kernel"],
                format_threshold(row["threshold"]) + _alone(row, "process"),
                format_interval(row["interval"]),
                _under_load(row),
                _pct(row["fit_error_compute"]),
                _pct(row["makespan_error_under_load"]),
                format_seconds(row["inline_s_at_threshold"]),
                format_seconds(row["offload_loop_s_at_threshold"]),
                format_seconds(row["offload_latency_s_at_threshold"]),
                _thread_lane(row),
                row["status"] + (f": {row['error']}" if row["error"] else ""),
            ]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *body)] if body else [len(h) for h in headers]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    notes = (
        "interval: thresholds a rerun on this host may choose (between the nearest candidates measured worse); "
        "under load: candidates measured with the reference workload, and how many tied with the best (a flat "
        "basin, resolved by loop lag then CPU; `offload-tuner explain` says why); fit err: cross-validated error "
        "of the compute model; load err: predicted vs measured makespan under load, after correction; @thr: "
        "predicted per call at the threshold (inline; loop-thread time and latency offloaded); thread lane: from which "
        "size a kernel goes to a thread pool when one is installed (set_executors), and the share of its run time "
        "it held the GIL in a thread (measured; above 25% it never does); (alone T): calibrated with --shared, the "
        "threshold tuned on the kernels' shared stream, T the kernel's own"
    )
    return "\n".join(lines) + "\n" + notes


def format_cluster(profile: Mapping[str, Any]) -> str | None:
    """The Dask cluster a profile measured (``calibrate --dask``), or None: its identity, costs, whether large
    arguments are scattered, and each kernel's compute speed on its workers."""
    cluster = profile.get("cluster")
    if not isinstance(cluster, Mapping):
        return None
    identity, transport = cluster.get("identity", {}), cluster.get("transport", {})
    per_byte = transport.get("round_trip_per_byte_s") or 0.0
    scatter = (cluster.get("scatter") or {}).get("from_bytes")
    lines = [
        f"dask cluster {identity.get('address')} ({identity.get('workers')} workers, {identity.get('threads')} "
        f"threads): round trip {format_seconds(transport.get('round_trip_s'))}, "
        + (f"{1e-6 / per_byte:.0f} MB/s, " if per_byte > 0 else "")
        + f"caller CPU {format_seconds(transport.get('caller_cpu_s'))} per call; large arguments "
        + ("go with the call" if scatter is None else f"from {scatter} bytes go by scatter"),
    ]
    for key, entry in sorted((cluster.get("kernels") or {}).items()):
        ratio = entry.get("worker_compute_ratio") if isinstance(entry, Mapping) else None
        if isinstance(ratio, (int, float)):
            lines.append(f"  {key}: computes in {ratio:.2f}x this host's inline time on a cluster worker")
    for key, error in sorted((cluster.get("errors") or {}).items()):
        lines.append(f"  {key}: not measured there ({error}); stays local")
    lines.append(
        "offloaded calls go to the pool or the cluster, whichever is expected to complete them soonest "
        "(`offload-tuner explain KERNEL SIZE` shows the comparison and a what-if for more workers)"
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ transport


def format_bytes(value: float) -> str:
    """``512 B``, ``34.5 kB``, ``1.2 MB`` (decimal units; negative fits read as zero)."""
    value = max(0.0, float(value))
    for scale, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def format_size(value: float) -> str:
    """A kernel size as the profile stores it (floats for integral sizes print without a fraction)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def shared_memory_section(profile: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``transport.shared_memory`` of a profile, or None: a profile from before the shared-memory transport."""
    transport = profile.get("transport")
    section = transport.get("shared_memory") if isinstance(transport, Mapping) else None
    return section if isinstance(section, Mapping) else None


_BEFORE_SHM = "the profile predates the shared-memory transport"


def host_transport_text(profile: Mapping[str, Any]) -> str:
    """The host's shared-memory transport as ``show`` prints it: from which buffer size process-pool calls send
    their buffers through shared memory, and where that size came from (``source``)."""
    from offload_tuner.runtime._shm import DEFAULT_MIN_BYTES

    section = shared_memory_section(profile)
    default = (
        f"; at run time buffers of {DEFAULT_MIN_BYTES} bytes ({format_bytes(DEFAULT_MIN_BYTES)}) and more still go "
        "through shared memory (the default) unless OFFLOAD_TUNER_SHM says otherwise"
    )
    if section is None:
        text = f"shared memory: not recorded ({_BEFORE_SHM}): its costs count every byte in band" + default
    elif section.get("source") == "off":
        text = "shared memory: off at calibration (OFFLOAD_TUNER_SHM=off): its costs count every byte in band" + default
    elif section.get("min_bytes") is None:
        text = "shared memory: never cheaper than in band on this host (calibrated): calls go in band"
    else:
        size = int(section["min_bytes"])
        source = str(section.get("source") or "not recorded")
        how = {"calibrated": "calibrated", "environment": "set by OFFLOAD_TUNER_SHM at calibration"}.get(
            source, f"source {source}"
        )
        text = f"shared memory: buffers of {size} bytes ({format_bytes(size)}) and more ({how})"
        text += _per_megabyte(profile)
    here = os.environ.get("OFFLOAD_TUNER_SHM", "").strip()
    if here:
        text += f"; OFFLOAD_TUNER_SHM={here} in this environment overrides the profile at run time"
    return text


def _per_megabyte(profile: Mapping[str, Any]) -> str:
    """What the loop thread pays per MB in band and through shared memory, when the model has both."""
    model = (profile.get("transport") or {}).get("model") or {}
    in_band, oob = model.get("caller_cpu_per_byte_s"), model.get("oob_caller_per_byte_s")
    if not (isinstance(in_band, (int, float)) and isinstance(oob, (int, float))):
        return ""
    return (
        f"; the loop thread pays {format_seconds(in_band * 1e6)} per MB in band, "
        f"{format_seconds(oob * 1e6)} through shared memory"
    )


@dataclass(frozen=True, slots=True)
class KernelTransport:
    """How a kernel's offloaded calls travel: their buffers through shared memory from ``shared_from`` (a size),
    or everything in band (``shared_from`` None), and why."""

    shared_from: float | None
    note: str

    @property
    def text(self) -> str:
        if self.shared_from is None:
            return "in band"
        if self.shared_from <= 0:
            return "shared memory at every size"
        return f"shared memory from size {format_size(self.shared_from)}"

    def to_json(self) -> dict[str, Any]:
        return {"transport": self.text, "shared_memory_from": self.shared_from, "transport_note": self.note}


def kernel_transport(profile: Mapping[str, Any], entry: Mapping[str, Any]) -> KernelTransport:
    """Which transport the kernel's offloaded calls use, read from its costs (``oob_bytes``, ``oob_from``) and the
    host's section; profiles and kernels without them go in band."""
    section = shared_memory_section(profile)
    costs = entry.get("costs")
    if not isinstance(costs, Mapping):
        return KernelTransport(None, "no fitted costs")
    if costs.get("oob_bytes") is None:
        if section is None:
            return KernelTransport(None, _BEFORE_SHM)
        if section.get("source") == "off":
            return KernelTransport(None, "the transport was off at calibration")
        return KernelTransport(None, "no buffers to send out of band")
    start = costs.get("oob_from")
    if start is None:
        if section is not None and section.get("source") == "off":
            return KernelTransport(None, "the transport was off at calibration")
        if section is not None and section.get("min_bytes") is None:
            return KernelTransport(None, "shared memory never pays on this host")
        return KernelTransport(None, "its buffers never reach the shared-memory size")
    start = float(start)
    measured = entry.get("calibrated_range")
    top = measured[1] if isinstance(measured, (list, tuple)) and len(measured) == 2 else None
    past = isinstance(top, (int, float)) and start > top
    note = f"its buffers{_buffer_bytes_at(costs['oob_bytes'], start)} go through shared memory, the rest in band"
    if past and top is not None:
        note += f"; extrapolated, past the measured top {format_size(top)}"
    return KernelTransport(start, note)


def _buffer_bytes_at(model: Any, size: float) -> str:
    """``, 1.0 MB at size 512,``: the fitted buffer bytes where they switch to shared memory ("" if unreadable)."""
    from offload_tuner.runtime._costmodel import CostModel, CostModelError

    try:
        nbytes = CostModel.from_json(model).predict(size)
    except (CostModelError, KeyError, TypeError, ValueError):
        return ""
    return f", {format_bytes(nbytes)} at size {format_size(size)},"


def format_transports(profile: Mapping[str, Any]) -> str:
    """The host's shared-memory size, then one line per kernel with fitted costs: how its offloaded calls travel."""
    lines = [f"transport (process pool): {host_transport_text(profile)}"]
    for key, entry in profile.get("kernels", {}).items():
        if isinstance(entry, Mapping) and isinstance(entry.get("costs"), Mapping):
            way = kernel_transport(profile, entry)
            lines.append(f"  {key}: {way.text} ({way.note})")
    return "\n".join(lines)


def transport_line(profile: Mapping[str, Any], entry: Mapping[str, Any], size: float) -> str:
    """How one call of ``size`` travels, for ``explain``: its bytes in band, or its buffers through shared memory
    and the rest in band, as the cost models predict them (the offloaded figures are computed from the same)."""
    from offload_tuner.runtime._policy import KernelCosts

    costs = KernelCosts.from_json(entry["costs"])
    way = kernel_transport(profile, entry)
    rest = max(0.0, costs.nbytes.predict(size))
    included = "the offloaded figures above include its cost"
    if costs.oob_bytes is None:
        return f"transport: in band, {format_bytes(rest)} pickled through the pool's pipe ({way.note}); {included}"
    buffers = max(0.0, costs.oob_bytes.predict(size))
    if costs.oob_from is not None and size >= costs.oob_from:
        return (
            f"transport: out of band, {format_bytes(buffers)} of buffers through shared memory (from size "
            f"{format_size(costs.oob_from)}) + "
            f"{format_bytes(rest)} in band; {included}"
        )
    why = f"buffers go through {way.text}" if way.shared_from is not None else way.note
    return (
        f"transport: in band, {format_bytes(rest + buffers)} pickled through the pool's pipe "
        f"({format_bytes(buffers)} of it buffers; {why}); {included}"
    )
