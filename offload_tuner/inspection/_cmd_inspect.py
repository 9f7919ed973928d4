"""``offload-tuner show``, ``explain``, ``check`` and ``plot``: reading a profile, nothing measured."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from offload_tuner.inspection._cli_shared import (
    EXIT_FAILURES,
    EXIT_OK,
    EXIT_PROFILE,
    EXIT_TARGET,
    EXIT_USAGE,
    EXIT_WRITE,
    fail,
    profile_path,
    read_or_report,
    shape_text,
)


def cmd_show(args: argparse.Namespace) -> int:
    from offload_tuner.inspection._report import (
        format_cluster,
        format_guards,
        format_mixes,
        format_table,
        format_transports,
        shared_memory_section,
        summary_rows,
    )
    from offload_tuner.inspection._report_choice import objective_text

    path = profile_path(args.profile)
    profile = read_or_report(path)
    if profile is None:
        return EXIT_PROFILE
    if args.json:
        print(
            json.dumps(
                {
                    "profile": str(path),
                    "host": profile.host,
                    "rows": summary_rows(profile.data),
                    "shared_memory": _shared_memory_json(shared_memory_section(profile.data)),
                    "cluster": profile.data.get("cluster"),
                },
                indent=1,
            )
        )
    else:
        host = profile.host
        print(
            f"profile {path}\nhost {host.get('hostname')} ({host.get('cpu_model')}, "
            f"{host.get('usable_cores', host.get('logical_cores'))} usable cores, "
            f"Python {host.get('python_version', host.get('python_minor'))}), created {profile.data.get('created', '?')}, "
            f"executor {profile.executor.get('kind')}, {shape_text(profile.executor)}\n"
        )
        print(format_table(profile.data))
        print(objective_text(profile.data))
        mixes = format_mixes(profile.data)
        if mixes:
            print("\n" + mixes)
        guards = format_guards(profile.data)
        if guards:
            print("\n" + guards)
        print("\n" + format_transports(profile.data))
        cluster = format_cluster(profile.data)
        if cluster:
            print("\n" + cluster)
    return EXIT_OK


def _shared_memory_json(section: Any) -> dict[str, Any] | None:
    """The host's shared-memory size and its source (``show --json``); None for a profile from before it."""
    return None if section is None else {"min_bytes": section.get("min_bytes"), "source": section.get("source")}


def cmd_explain(args: argparse.Namespace) -> int:
    path = profile_path(args.profile)
    profile = read_or_report(path)
    if profile is None:
        return EXIT_PROFILE
    key, code = _explained_key(profile, args.kernel, path)
    if key is None:
        return code
    if args.size < 0:
        print("offload-tuner: SIZE must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    spec, code = _explained_spec(key, args.size)
    if spec is None:
        return code
    entry = profile.kernels[key].data
    print(f"kernel {key}, size {args.size}, profile {path}")
    if "costs" in entry:
        _explain_costs(profile, entry, args.size)
    _explain_load(entry)
    if profile.cluster is not None and "costs" in entry:
        _explain_cluster(profile, key, entry, args.size, args.what_if)
    _explain_decision(path, spec, args.size, bool(entry.get("thread")))
    return EXIT_OK


def _explained_key(profile: Any, name: str, path: Path) -> tuple[str | None, int]:
    """The profile's key for ``name`` (a full key, or a kernel's own name when only one kernel has it)."""
    if name in profile.kernels:
        return name, EXIT_OK
    matches = [k for k in profile.kernels if k.rsplit(":", 1)[-1].rsplit(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0], EXIT_OK
    ambiguous = f" (ambiguous: {', '.join(matches)})" if matches else ""
    return fail(f"kernel {name!r} is not in {path}{ambiguous}", EXIT_USAGE)


def _explained_spec(key: str, size: int) -> tuple[Any, int]:
    """The kernel itself, imported, with the ``sample(n)`` that builds a call of ``size``."""
    from offload_tuner.calibration._targets import TargetError, import_kernel

    try:
        spec = import_kernel(key)
    except TargetError as exc:
        return fail(str(exc), EXIT_TARGET)
    if spec.sample is None:
        return fail(f"kernel {key} has no sample(n), so a call of size {size} cannot be built", EXIT_USAGE)
    return spec, EXIT_OK


def _explain_costs(profile: Any, entry: Any, size: int) -> None:
    """The cost models' prediction for one call of ``size``, both ways, alone and in a saturated stream."""
    from offload_tuner.inspection._report import (
        compare_with_value,
        extrapolated_text,
        format_seconds,
        format_threshold,
        guard_text,
        mix_text,
        transport_line,
    )
    from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, offload_pays, predict

    knobs = PolicyKnobs.from_json(profile.data.get("policy", {}))
    transport = TransportModel.from_json(profile.data["transport"]["model"])
    costs = KernelCosts.from_json(entry["costs"])
    p = predict(costs, transport, knobs, size)
    lo, hi = costs.compute.size_range
    where = "inside" if costs.compute.in_range(size) else "OUTSIDE (extrapolated)"
    print(f"  inline:    loop thread blocked {format_seconds(p.inline_s)}")
    print(
        f"  offloaded: loop thread blocked {format_seconds(p.offload_loop_s)} (pickling + executor), "
        f"worker busy {format_seconds(p.offload_worker_s)}, latency {format_seconds(p.offload_latency_s)}"
    )
    print(f"  {transport_line(profile.data, entry, size)}")
    print(
        f"  per call in a saturated stream ({knobs.concurrency} callers, {knobs.workers} workers, "
        f"{knobs.cores} cores): inline {format_seconds(p.inline_period_s)}, "
        f"offloaded {format_seconds(p.offload_period_s)}"
    )
    print(f"  calibrated sizes {lo:g}..{hi:g}: size {size} is {where}")
    stream = "pays" if offload_pays(p, knobs) else "does not pay"
    print(
        f"  per-size view: offloading a saturated stream of size-{size} calls {stream}; the threshold "
        f"also weighs the mix of sizes (workload {mix_text(entry) or f'{lo:g}..{hi:g}'})"
    )
    for beyond in (guard_text(entry), extrapolated_text(entry)):
        if beyond is not None:
            print(f"  {beyond}")
    old = compare_with_value(entry.get("compare_with"), "profile entry")
    if old is not None:
        print(
            f"  compared with {old:g} (the plan's compare_with): the profile offloads from {format_threshold(entry.get('threshold'))}"
        )


def _explain_load(entry: Any) -> None:
    """What the concurrent phase measured, the shared stream's choice, and the thread lane."""
    from offload_tuner.inspection._report import format_seconds
    from offload_tuner.inspection._report_load import format_load, format_shared

    shared = entry.get("shared")
    if entry.get("load"):
        alone = shared["alone"] if shared and shared.get("lane") == "process" else entry.get("threshold")
        print(format_load(entry["load"], alone))
    if shared:
        print(format_shared(shared))
    thread = entry.get("thread")
    if thread:
        lane = "never" if thread.get("threshold") is None else f"from size {thread['threshold']}"
        print(
            f"  thread lane: {lane}; in a thread it held up a busy event loop {thread['gil_hold']:.0%} of its "
            f"run time (hand-off {format_seconds(thread.get('fixed_s'))})"
        )
        if thread.get("reason"):
            print(f"    {thread['reason']}")


def _explain_decision(path: Path, spec: Any, size: int, thread: bool) -> None:
    """The decision itself, through run_kernel's own code path, against executors of the profiled kinds
    (never started: no task is submitted)."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    import offload_tuner

    offload_tuner.load_profile(path)
    previous = offload_tuner.get_executors()
    idle_pool, idle_threads = ProcessPoolExecutor(max_workers=1), ThreadPoolExecutor(1)
    try:
        offload_tuner.set_executor(idle_pool)
        decision = offload_tuner.decide(spec.fn, *spec.sample(size))
        offload_tuner.set_executors({"process": idle_pool, "thread": idle_threads})
        both = offload_tuner.decide(spec.fn, *spec.sample(size))
    finally:
        offload_tuner.set_executors(previous)
        idle_pool.shutdown(wait=False)
        idle_threads.shutdown(wait=False)
    verdict = "OFFLOAD" if decision.offload else "INLINE"
    print(f"  decision: {verdict} ({decision.reason})")
    if thread:
        where = both.backend.upper() if both.offload else "INLINE"
        print(f"  with a thread pool installed too (set_executors): {where} ({both.reason})")


def _explain_cluster(profile: Any, key: str, entry: Any, size: int, what_if_workers: Sequence[int]) -> None:
    """The cluster's predicted completion for this call, and the what-if for bigger clusters (from measured costs)."""
    from offload_tuner.inspection._report import format_seconds
    from offload_tuner.runtime._placement import what_if
    from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel

    cluster = profile.cluster
    ratio = cluster.ratios.get(key)
    t = cluster.transport
    print(
        f"  dask cluster {cluster.address} ({cluster.workers} workers, {cluster.threads} threads): round trip "
        f"{format_seconds(t.round_trip_s)}, {1e-6 / t.round_trip_per_byte_s if t.round_trip_per_byte_s else float('inf'):.0f} MB/s, "
        f"caller CPU {format_seconds(t.caller_cpu_s)} per call; arguments "
        + (
            "always go with the call (scatter never measured cheaper)"
            if cluster.scatter_from_bytes is None
            else f"of {cluster.scatter_from_bytes} bytes and more go by scatter (measured cheaper)"
        )
    )
    if ratio is None:
        print("    this kernel was not measured on the cluster: its offloaded calls stay on the local pool")
        return
    knobs = PolicyKnobs.from_json(profile.data.get("policy", {}))
    local = TransportModel.from_json(profile.data["transport"]["model"])
    rows = what_if(KernelCosts.from_json(entry["costs"]), local, cluster, ratio, knobs, size, what_if_workers)
    print(
        f"    its workers compute this kernel in {ratio:.2f}x this host's time; offloaded calls go where they are "
        "expected to complete soonest (each backend's queue once every slot is busy, plus the call's latency there)"
    )
    print(f"    {'backend':<12} {'slots':>5}  {'one call, idle':>14}  {'saturated stream, per call':>26}")
    for row in rows:
        print(
            f"    {row.backend:<12} {row.slots:>5}  {format_seconds(row.latency_s):>14}  "
            f"{format_seconds(row.period_s):>26}"
        )


def cmd_check(args: argparse.Namespace) -> int:
    from offload_tuner.inspection._check import check_profile, sweep_segments

    path = profile_path(args.profile)
    problems = check_profile(path)
    swept = sweep_segments()
    if swept is not None:
        print(swept)
    if not problems:
        print(f"{path}: OK")
        return EXIT_OK
    for problem in problems:
        print(f"{path}: {problem}")
    return EXIT_FAILURES


def cmd_plot(args: argparse.Namespace) -> int:
    path = profile_path(args.profile)
    profile = read_or_report(path)
    if profile is None:
        return EXIT_PROFILE
    try:
        from offload_tuner.inspection._plot import write_pngs
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("matplotlib", "numpy", "PIL"):
            raise
        print(
            f"offload-tuner: plot needs matplotlib ({exc}); install it with: pip install -e '.[plot]'", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        paths = write_pngs(profile.data, args.out)
    except OSError as exc:
        print(f"offload-tuner: cannot write figures to {args.out}: {exc}", file=sys.stderr)
        return EXIT_WRITE
    except ValueError as exc:  # a field the figures read is malformed (e.g. a hand-edited compare_with)
        print(f"offload-tuner: cannot plot {path}: {exc}", file=sys.stderr)
        return EXIT_PROFILE
    for written in paths:
        print(written)
    return EXIT_OK
