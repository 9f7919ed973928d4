"""``offload-tuner calibrate``: the flags and the plan into a setup, the measuring, the profile written."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offload_tuner.inspection._cli_shared import (
    EXIT_CLUSTER,
    EXIT_FAILURES,
    EXIT_NO_KERNELS,
    EXIT_OK,
    EXIT_TARGET,
    EXIT_USAGE,
    EXIT_WRITE,
    fail,
    shape_text,
)


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
    _plan_rates(plan, str(source))
    return plan


def _plan_rates(plan: dict[str, Any], source: str) -> None:
    """Check every kernel's ``rate`` (a number > 0: its calls' share of the service's) before measuring."""
    for key, raw in (plan.get("kernels") or {}).items():
        rate = raw.get("rate") if isinstance(raw, dict) else None
        if rate is None:
            continue
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
            raise SystemExit(
                f"offload-tuner: plan {source}, kernel {key}: rate must be a number > 0 (how often the service "
                f"calls it relative to the other kernels), got {rate!r}"
            )


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
            rate=float(raw["rate"]) if raw.get("rate") is not None else None,
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


def cmd_calibrate(args: argparse.Namespace) -> int:
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
        return fail("--workers must be >= 1", EXIT_USAGE)
    try:
        knobs = PolicyKnobs(
            concurrency=args.concurrency or plan.get("concurrency") or DEFAULT_CONCURRENCY,
            workers=workers,
            cores=share,  # the cost model's cores: this process's share, the others run the same workload
            loop_budget_s=_loop_budget_s(args.loop_budget_ms, plan, DEFAULT_LOOP_BUDGET_S),
            objective=args.objective or plan.get("objective") or "throughput",
        )
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        specs = resolve_targets(targets, args.kernel)
    except NoKernelsError as exc:
        return fail(str(exc), EXIT_NO_KERNELS)
    except TargetError as exc:
        return fail(str(exc), EXIT_TARGET)
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
            return fail(f"{exc}; or pass --processes N", EXIT_USAGE)
    elif args.processes < 1:
        return fail(f"--processes must be >= 1 (the service processes on this host), got {args.processes}", EXIT_USAGE)
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
        return fail(problem, EXIT_USAGE)
    from offload_tuner.calibration._cluster import ClusterUnreachable, connect

    try:
        return connect(address), EXIT_OK
    except ClusterUnreachable as exc:
        return fail(str(exc), EXIT_CLUSTER)


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
    from offload_tuner.inspection._report import format_cluster, format_mixes, format_table
    from offload_tuner.inspection._report_choice import objective_text
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
    print(objective_text(profile))
    mixes = format_mixes(profile, advise=True)
    if mixes:
        print("\n" + mixes)
    shared_error = (profile.get("shared") or {}).get("error")
    if shared_error:
        print(f"offload-tuner: --shared: {shared_error}", file=sys.stderr)
    cluster_text = format_cluster(profile)
    if cluster_text:
        print("\n" + cluster_text)
    print(
        f"\nprofile: {setup.out}  ({profile['duration_s']:.1f} s, effort {setup.effort.name}, "
        f"{shape_text(profile['executor'])})"
    )
    failed = [k for k, e in profile["kernels"].items() if e["status"] == "failed"]
    for key in failed:
        print(f"offload-tuner: kernel {key} failed: {profile['kernels'][key].get('error')}", file=sys.stderr)
    return EXIT_FAILURES if failed else EXIT_OK
