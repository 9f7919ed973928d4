"""The ``offload-tuner`` command: calibrate, show, explain, check, plot, drift, retune.

Exit codes (documented in the README):
  0  success
  1  calibrate: some kernels failed (the profile is written and records each failure);
     check: the profile has problems
  2  usage error
  3  a target is not importable
  4  a target yields no kernel (or --kernel names none of them); the message names it
  5  the profile could not be written (the previous one is untouched)
  1  drift: a kernel needs recalibration
  6  show/explain/plot/drift/retune: the profile cannot be read (plot: 2 if matplotlib is missing, 5 if a PNG
     cannot be written)
  7  drift/retune: the stats file cannot be used (corrupt, hostile, or from another host)
  130 interrupted (Ctrl-C or SIGTERM; the previous profile is untouched)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_TARGET = 3
EXIT_NO_KERNELS = 4
EXIT_WRITE = 5
EXIT_PROFILE = 6
EXIT_STATS = 7
EXIT_CLUSTER = 8
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offload-tuner",
        description="Calibrate per-kernel offload thresholds on this host and inspect them.",
    )
    from offload_tuner import __version__

    parser.add_argument("--version", action="version", version=f"offload-tuner {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_calibrate, _add_show, _add_explain, _add_check, _add_plot, _add_drift, _add_retune):
        add(sub)
    return parser


def _add_calibrate(sub: Any) -> None:
    cal = sub.add_parser("calibrate", help="measure kernels on this host and write a profile")
    cal.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="module, module:function or path/to/file.py (default: the bundled kernels)",
    )
    cal.add_argument("--out", type=Path, help="profile path (default: the per-host location the runtime reads)")
    cal.add_argument(
        "--effort",
        choices=("quick", "standard", "thorough"),
        default=None,
        help="measurement effort (default: the plan's, else standard)",
    )
    cal.add_argument("--kernel", action="append", default=[], metavar="NAME", help="only these kernels (repeatable)")
    _add_shape(cal)
    cal.add_argument(
        "--plan",
        type=Path,
        help="calibration plan JSON (default with no TARGET: the bundled kernels' plan, "
        "calibration/plan.json in the repository)",
    )
    cal.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="calls typically in flight at once in the service (policy knob, default 4)",
    )
    cal.add_argument(
        "--loop-budget-ms",
        type=_budget_ms,
        default=None,
        metavar="MS",
        help="offload calls predicted to block the loop longer than this whenever offloading blocks it "
        "less (default 100, asyncio's slow-callback limit; 'off' turns it off)",
    )
    cal.add_argument(
        "--dask",
        metavar="ADDRESS",
        default=None,
        help="also measure this Dask cluster (e.g. tcp://scheduler:8786): its round trip, per-byte cost "
        "and each kernel's speed on its workers, so offloaded calls can be placed there",
    )
    cal.add_argument(
        "--shared",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the kernels share one event loop in production: after calibrating each alone, tune their "
        "thresholds on one stream of all their calls, each on the lane it uses with both pools "
        'installed (default: the plan\'s "shared", else off)',
    )
    cal.add_argument("-q", "--quiet", action="store_true", help="no progress, only the final table")


def _add_shape(cal: Any) -> None:
    """The service's shape: processes on this host and pool workers in each."""
    cal.add_argument(
        "--workers", type=int, default=None, help="pool workers per process (default: its share of the usable cores)"
    )
    cal.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="service processes on this host, each with its own loop and pool: the concurrent phase runs N side "
        "by side (default: OFFLOAD_TUNER_PROCESSES, else WEB_CONCURRENCY, else 1)",
    )


def _add_show(sub: Any) -> None:
    show = sub.add_parser("show", help="print a profile's thresholds")
    show.add_argument("profile", nargs="?", type=Path)
    show.add_argument("--json", action="store_true", help="machine-readable rows")


def _add_explain(sub: Any) -> None:
    explain = sub.add_parser("explain", help="predicted costs both ways and the decision for one call size")
    explain.add_argument("kernel", help="module:qualname (or a kernel name present in the profile)")
    explain.add_argument("size", type=int)
    explain.add_argument("--profile", type=Path)
    explain.add_argument(
        "--what-if",
        type=_worker_counts,
        default=(8, 64),
        metavar="N,N",
        help="with a Dask cluster in the profile: what the same cluster would give with these many "
        "workers (default 8,64)",
    )


def _add_check(sub: Any) -> None:
    check = sub.add_parser("check", help="validate a profile against this host and the current kernel code")
    check.add_argument("profile", nargs="?", type=Path)


def _add_plot(sub: Any) -> None:
    plot = sub.add_parser("plot", help="write PNG figures of a profile's fits and thresholds (needs matplotlib)")
    plot.add_argument("profile", nargs="?", type=Path)
    plot.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the PNGs (created if missing)")


def _add_drift(sub: Any) -> None:
    drift = sub.add_parser(
        "drift",
        help="production timings (a stats file) against the profile's models; exit 1 when a kernel needs recalibration",
    )
    drift.add_argument("profile", nargs="?", type=Path)
    drift.add_argument(
        "--stats",
        type=Path,
        required=True,
        metavar="FILE",
        help="what the service recorded (offload_tuner.record_stats or OFFLOAD_TUNER_STATS)",
    )


def _add_retune(sub: Any) -> None:
    retune = sub.add_parser(
        "retune", help="thresholds for the observed mix and timings, from the profile's models (no measuring)"
    )
    retune.add_argument("profile", nargs="?", type=Path)
    retune.add_argument("--stats", type=Path, required=True, metavar="FILE")
    retune.add_argument("--out", type=Path, metavar="NEW", help="write the retuned profile here (default: only print)")


def _worker_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected worker counts like 8,64, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected worker counts >= 1 like 8,64, got {text!r}")
    return counts


def _budget_ms(text: str) -> float:
    """Milliseconds > 0, or 'off' (stored as 0: no budget)."""
    if text.strip().lower() in ("off", "none"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds or 'off', got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number of milliseconds or 'off', got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {
        "calibrate": _calibrate,
        "show": _show,
        "explain": _explain,
        "check": _check,
        "plot": _plot,
        "drift": _drift,
        "retune": _retune,
    }[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("offload-tuner: interrupted; nothing was written, any previous profile is untouched", file=sys.stderr)
        return EXIT_INTERRUPTED


def _profile_path(path: Path | None) -> Path:
    from offload_tuner.runtime._host import configured_profile_path

    return path if path is not None else configured_profile_path()


# ------------------------------------------------------------------------------------------- calibrate


def _load_plan(path: Path | None, use_bundled: bool) -> dict[str, Any]:
    """The plan named by --plan, else the bundled kernels' one when no TARGET is given, else none."""
    from offload_tuner.calibration._targets import bundled_plan

    if path is None and not use_bundled:
        return {}
    source: Any = path if path is not None else bundled_plan()
    try:
        plan = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"offload-tuner: cannot read plan {source}: {exc}") from None
    if not isinstance(plan, dict) or plan.get("schema") != 1:
        raise SystemExit(f'offload-tuner: plan {source} must be a JSON object with "schema": 1')
    if not isinstance(plan.get("shared", False), bool):
        raise SystemExit(f'offload-tuner: plan {source}: "shared" must be true or false, got {plan["shared"]!r}')
    _plan_compare_with(plan, str(source))
    return plan


def _plan_compare_with(plan: dict[str, Any], source: str) -> None:
    """Check every ``compare_with`` of the plan (plan-wide and per kernel) before a minute of measuring."""
    from offload_tuner.inspection._report import compare_with_value

    places = [(plan, f"plan {source}")] + [
        (raw, f"plan {source}, kernel {key}")
        for key, raw in (plan.get("kernels") or {}).items()
        if isinstance(raw, dict)
    ]
    for where, name in places:
        try:
            compare_with_value(where.get("compare_with"), name)
        except ValueError as exc:
            raise SystemExit(f"offload-tuner: {exc}") from None


def _kernel_plans(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan's per-kernel sections as ``KernelPlan``; a plan-wide ``compare_with`` applies to every kernel
    that does not set its own (``null`` there turns it off)."""
    from offload_tuner.calibration._calibrate import KernelPlan

    plans = {}
    for key, raw in (plan.get("kernels") or {}).items():
        sizes = raw.get("sizes")
        workload = raw.get("workload_range")
        plans[key] = KernelPlan(
            min_size=int(raw.get("min_size", 1)),
            max_size=int(raw.get("max_size", 1 << 20)),
            sizes=tuple(int(n) for n in sizes) if sizes else None,
            workload_range=(int(workload[0]), int(workload[1])) if workload else None,
            time_limit_s=float(raw["time_limit_s"]) if raw.get("time_limit_s") else None,
            compare_with=raw["compare_with"] if "compare_with" in raw else plan.get("compare_with"),
        )
    return plans


def _loop_budget_s(flag_ms: float | None, plan: dict[str, Any], default_s: float) -> float | None:
    """The flag, else the plan's ``loop_budget_ms`` (null: off), else the default; 0 means off."""
    ms = flag_ms if flag_ms is not None else plan.get("loop_budget_ms", default_s * 1000)
    if isinstance(ms, bool) or not isinstance(ms, (int, float)):
        return ms  # not a number: PolicyKnobs names the bad value
    return None if not ms else ms / 1000


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@dataclass(frozen=True, slots=True)
class _Setup:
    """What ``calibrate`` measures and how, from the flags and the plan."""

    plan: dict[str, Any]
    effort: Any
    knobs: Any
    workers: int
    specs: list[Any]
    out: Path
    processes: int = 1


def _calibrate(args: argparse.Namespace) -> int:
    from offload_tuner.inspection._extras import requirement_problem

    problem = requirement_problem("calibrate", "offload-tuner calibrate")  # before importing or measuring
    if problem:
        print(f"offload-tuner: {problem}", file=sys.stderr)
        return EXIT_USAGE
    setup, code = _calibration_setup(args)
    if setup is None:
        return code
    client, code = _connect_cluster(args.dask)
    if code != EXIT_OK:
        return code
    profile = _measure(args, setup, client)
    return _write_and_report(profile, setup)


def _fail(message: str, code: int) -> tuple[None, int]:
    print(f"offload-tuner: {message}", file=sys.stderr)
    return None, code


def _calibration_setup(args: argparse.Namespace) -> tuple[_Setup | None, int]:
    """The plan, effort, policy knobs and kernels, or an exit code after a message naming the problem."""
    from offload_tuner.calibration._calibrate import EFFORTS
    from offload_tuner.calibration._targets import NoKernelsError, TargetError, resolve_targets
    from offload_tuner.runtime._policy import DEFAULT_CONCURRENCY, DEFAULT_LOOP_BUDGET_S, PolicyKnobs
    from offload_tuner.runtime._profile import default_profile_path

    plan = _load_plan(args.plan, use_bundled=not args.targets)
    targets = args.targets or plan.get("targets") or []
    effort = EFFORTS[args.effort or plan.get("effort") or "standard"]
    shape, code = _shape(args)
    if shape is None:
        return None, code
    processes, share = shape
    workers = args.workers if args.workers is not None else share
    if workers < 1:
        return _fail("--workers must be >= 1", EXIT_USAGE)
    try:
        knobs = PolicyKnobs(
            concurrency=args.concurrency or plan.get("concurrency") or DEFAULT_CONCURRENCY,
            workers=workers,
            cores=share,  # the cost model's cores: this process's share, the others run the same workload
            loop_budget_s=_loop_budget_s(args.loop_budget_ms, plan, DEFAULT_LOOP_BUDGET_S),
        )
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        specs = resolve_targets(targets, args.kernel)
    except NoKernelsError as exc:
        return _fail(str(exc), EXIT_NO_KERNELS)
    except TargetError as exc:
        return _fail(str(exc), EXIT_TARGET)
    if not args.quiet:  # name them: a kernel missing from this list is never measured
        print(f"kernels: {', '.join(spec.key for spec in specs)}", file=sys.stderr)
    return _Setup(plan, effort, knobs, workers, list(specs), args.out or default_profile_path(), processes), EXIT_OK


def _shape(args: argparse.Namespace) -> tuple[tuple[int, int] | None, int]:
    """(service processes, each one's share of the usable cores), or None and an exit code after a message."""
    from offload_tuner.runtime._cores import cores_per_process, service_processes, usable_cores

    if args.processes is None:
        try:
            processes = service_processes()
        except ValueError as exc:
            return _fail(f"{exc}; or pass --processes N", EXIT_USAGE)
    elif args.processes < 1:
        return _fail(f"--processes must be >= 1 (the service processes on this host), got {args.processes}", EXIT_USAGE)
    else:
        processes = args.processes
    return (processes, cores_per_process(usable_cores(), processes)), EXIT_OK


def _connect_cluster(address: str | None) -> tuple[Any, int]:
    """The Dask client for --dask (reached before a minute of measuring, not after), None without it."""
    if address is None:
        return None, EXIT_OK
    from offload_tuner.inspection._extras import requirement_problem

    problem = requirement_problem("dask", "offload-tuner calibrate --dask")
    if problem:
        return _fail(problem, EXIT_USAGE)
    from offload_tuner.calibration._cluster import ClusterUnreachable, connect

    try:
        return connect(address), EXIT_OK
    except ClusterUnreachable as exc:
        return _fail(str(exc), EXIT_CLUSTER)


def _measure(args: argparse.Namespace, setup: _Setup, client: Any) -> dict[str, Any]:
    """Calibrate on a fresh pool (and the cluster, if any); SIGTERM interrupts like Ctrl-C."""
    from offload_tuner.calibration._calibrate import calibrate
    from offload_tuner.inspection._progress import TerminalProgress
    from offload_tuner.runtime._backends import recommended_pool

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    executor = recommended_pool(setup.workers, processes=setup.processes)  # its BLAS threads: its share
    try:
        progress = TerminalProgress(args.quiet, setup.effort.kernel_budget_s)
        profile = calibrate(
            setup.specs,
            executor,
            effort=setup.effort,
            knobs=setup.knobs,
            plans=_kernel_plans(setup.plan),
            progress=progress,
            shared=bool(args.shared if args.shared is not None else setup.plan.get("shared", False)),
            processes=setup.processes,
        )
        if client is not None:
            _measure_cluster(args.dask, client, executor, setup, profile, progress)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        if client is not None:
            client.close()
        signal.signal(signal.SIGTERM, previous)
    return profile


def _measure_cluster(
    address: str, client: Any, executor: Any, setup: _Setup, profile: dict[str, Any], progress: Any
) -> None:
    from offload_tuner.calibration._cluster import calibrate_cluster

    try:
        profile["cluster"] = calibrate_cluster(
            client.get_executor(pure=False), executor, setup.specs, profile["kernels"], setup.effort, progress
        )
    except Exception as exc:  # the cluster failed mid-way: the local profile is still worth writing
        print(
            f"offload-tuner: measuring the Dask cluster at {address} failed ({type(exc).__name__}: "
            f"{exc}); the profile is written without it",
            file=sys.stderr,
        )


def _write_and_report(profile: dict[str, Any], setup: _Setup) -> int:
    from offload_tuner.inspection._report import format_cluster, format_table
    from offload_tuner.runtime._profile import ProfileError, write_profile

    try:
        write_profile(setup.out, profile)
    except (OSError, ProfileError) as exc:
        print(
            f"offload-tuner: cannot write the profile to {setup.out}: {exc}; any previous profile is untouched",
            file=sys.stderr,
        )
        return EXIT_WRITE
    print(format_table(profile))
    shared_error = (profile.get("shared") or {}).get("error")
    if shared_error:
        print(f"offload-tuner: --shared: {shared_error}", file=sys.stderr)
    cluster_text = format_cluster(profile)
    if cluster_text:
        print("\n" + cluster_text)
    print(
        f"\nprofile: {setup.out}  ({profile['duration_s']:.1f} s, effort {setup.effort.name}, "
        f"{_shape_text(profile['executor'])})"
    )
    failed = [k for k, e in profile["kernels"].items() if e["status"] == "failed"]
    for key in failed:
        print(f"offload-tuner: kernel {key} failed: {profile['kernels'][key].get('error')}", file=sys.stderr)
    return EXIT_FAILURES if failed else EXIT_OK


# ----------------------------------------------------------------------------------------- inspection


def _shape_text(executor: Any) -> str:
    """The shape a profile was calibrated for: "2 processes x 1 workers" (profiles before shapes: 1 process)."""
    processes = executor.get("processes", 1)
    workers = executor.get("workers_per_process", executor.get("workers", "?"))
    return f"{processes} process{'es' if processes != 1 else ''} x {workers} workers"


def _read_or_report(path: Path) -> Any:
    """The profile at ``path``, or None after saying on stderr why it cannot be read."""
    from offload_tuner.runtime._profile import ProfileError, read_profile

    try:
        return read_profile(path)
    except ProfileError as exc:
        print(f"offload-tuner: {exc}", file=sys.stderr)
        return None


def _show(args: argparse.Namespace) -> int:
    from offload_tuner.inspection._report import format_cluster, format_table, summary_rows

    path = _profile_path(args.profile)
    profile = _read_or_report(path)
    if profile is None:
        return EXIT_PROFILE
    if args.json:
        print(
            json.dumps(
                {
                    "profile": str(path),
                    "host": profile.host,
                    "rows": summary_rows(profile.data),
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
            f"executor {profile.executor.get('kind')}, {_shape_text(profile.executor)}\n"
        )
        print(format_table(profile.data))
        cluster = format_cluster(profile.data)
        if cluster:
            print("\n" + cluster)
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    path = _profile_path(args.profile)
    profile = _read_or_report(path)
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
    return _fail(f"kernel {name!r} is not in {path}{ambiguous}", EXIT_USAGE)


def _explained_spec(key: str, size: int) -> tuple[Any, int]:
    """The kernel itself, imported, with the ``sample(n)`` that builds a call of ``size``."""
    from offload_tuner.calibration._targets import TargetError, import_kernel

    try:
        spec = import_kernel(key)
    except TargetError as exc:
        return _fail(str(exc), EXIT_TARGET)
    if spec.sample is None:
        return _fail(f"kernel {key} has no sample(n), so a call of size {size} cannot be built", EXIT_USAGE)
    return spec, EXIT_OK


def _explain_costs(profile: Any, entry: Any, size: int) -> None:
    """The cost models' prediction for one call of ``size``, both ways, alone and in a saturated stream."""
    from offload_tuner.inspection._report import compare_with_value, format_seconds, format_threshold
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
    print(
        f"  per call in a saturated stream ({knobs.concurrency} callers, {knobs.workers} workers, "
        f"{knobs.cores} cores): inline {format_seconds(p.inline_period_s)}, "
        f"offloaded {format_seconds(p.offload_period_s)}"
    )
    print(f"  calibrated sizes {lo:g}..{hi:g}: size {size} is {where}")
    stream = "pays" if offload_pays(p, knobs) else "does not pay"
    print(
        f"  per-size view: offloading a saturated stream of size-{size} calls {stream}; the threshold "
        f"also weighs the mix of sizes (workload {entry.get('workload_range', [lo, hi])})"
    )
    old = compare_with_value(entry.get("compare_with"), "profile entry")
    if old is not None:
        print(
            f"  compared with {old:g} (the plan's compare_with): the profile offloads from {format_threshold(entry.get('threshold'))}"
        )


def _explain_load(entry: Any) -> None:
    """What the concurrent phase measured, the shared stream's choice, and the thread lane."""
    from offload_tuner.inspection._report import format_load, format_seconds, format_shared

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


def _check(args: argparse.Namespace) -> int:
    from offload_tuner.inspection._check import check_profile

    path = _profile_path(args.profile)
    problems = check_profile(path)
    if not problems:
        print(f"{path}: OK")
        return EXIT_OK
    for problem in problems:
        print(f"{path}: {problem}")
    return EXIT_FAILURES


def _plot(args: argparse.Namespace) -> int:
    path = _profile_path(args.profile)
    profile = _read_or_report(path)
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


# ------------------------------------------------------------------------------------ drift and retune


def _profile_and_traffic(args: argparse.Namespace) -> tuple[Any, Any, int]:
    """The profile and the observed traffic per kernel, or an exit code after a message naming the problem."""
    from offload_tuner.runtime._host import host_check_mode
    from offload_tuner.runtime.feedback._retune import traffic
    from offload_tuner.runtime.feedback._statsfile import StatsError, read_stats

    path = _profile_path(args.profile)
    profile = _read_or_report(path)
    if profile is None:
        return None, None, EXIT_PROFILE
    if "transport" not in profile.data:
        print(
            f"offload-tuner: {path} holds no cost models (written by hand or by an old version); calibrate again",
            file=sys.stderr,
        )
        return None, None, EXIT_PROFILE
    try:
        document = read_stats(args.stats)
    except StatsError as exc:
        print(f"offload-tuner: stats not used: {exc}", file=sys.stderr)
        return None, None, EXIT_STATS
    # Containers get a new hostname on every deploy: the stats' host is compared only where the profile's
    # hostname is (OFFLOAD_TUNER_HOST_CHECK=strict); the hardware fields are the runtime's business at load.
    host = profile.host.get("hostname") if host_check_mode() == "strict" else None
    if host is not None and document["host"] != host:
        print(
            f"offload-tuner: stats not used: {args.stats} was recorded on host {document['host']!r}, the profile "
            f"{path} is for {host!r}; compare a host's stats with that host's profile",
            file=sys.stderr,
        )
        return None, None, EXIT_STATS
    return profile, traffic(document), EXIT_OK


def _drift(args: argparse.Namespace) -> int:
    from offload_tuner.runtime.feedback._retune import MIN_SAMPLES, drift

    profile, observed, code = _profile_and_traffic(args)
    if profile is None:
        return code
    results = drift(profile.data, observed)
    needs = [r for r in results if r.drifted]
    for r in results:
        verdict = "RECALIBRATE" if r.drifted else ("ok" if r.judged else "no verdict")
        print(f"{r.key}: {verdict}")
        for b in r.buckets:
            print(f"  {'!' if b.drifted else ' '} {b.sentence()}")
    silent = sorted(set(profile.kernels) - {r.key for r in results})
    if silent:
        print(f"no samples for: {', '.join(silent)}")
    if needs:
        names = ", ".join(r.key for r in needs)
        print(
            f"\n{names} no longer behave{'s' if len(needs) == 1 else ''} as calibrated (median observed/predicted "
            f"beyond 1.5x with at least {MIN_SAMPLES} samples): run `offload-tuner calibrate` on this host again."
        )
        return EXIT_FAILURES
    judged = sum(r.judged for r in results)
    print(
        f"\nno drift: {judged} size bucket(s) with {MIN_SAMPLES}+ samples agree with the models within 1.5x."
        if judged
        else f"\nno verdict yet: no size bucket has {MIN_SAMPLES} samples."
    )
    return EXIT_OK


def _retune(args: argparse.Namespace) -> int:
    from datetime import datetime

    from offload_tuner.inspection._report import format_threshold
    from offload_tuner.runtime._profile import ProfileError, write_profile
    from offload_tuner.runtime.feedback._retune import retune, retuned_profile

    profile, observed, code = _profile_and_traffic(args)
    if profile is None:
        return code
    results = retune(profile.data, observed)
    if not results:
        print("no kernel of the profile has recorded calls in the stats file: nothing to retune")
    for r in results:
        timings = ", ".join(f"{kind} x{ratio:.2f} ({n} samples)" for kind, (ratio, n) in r.factors.items())
        print(
            f"{r.key}: {format_threshold(r.old)} -> {format_threshold(r.new)}  ({r.calls} calls; timings: {timings or 'too few samples, as calibrated'}; "
            f"predicted makespan {r.gain:+.1%} faster)"
        )
        if not r.offload_observed and r.new != r.old:
            print(
                "  the mix has too few timed offloaded calls: the offloaded side is the calibrated model's word "
                "alone here; check the new threshold under load before relying on it"
            )
    if args.out is not None and results:
        when = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            written = write_profile(args.out, retuned_profile(profile.data, results, str(args.stats), when))
        except (OSError, ProfileError) as exc:
            print(f"offload-tuner: cannot write {args.out}: {exc}", file=sys.stderr)
            return EXIT_WRITE
        print(f"retuned profile: {written}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
