"""Issue 28's acceptance benchmark: the tuned policy with the shared-memory transport against the best static
threshold of the old, in-band transport, co-hosted (one asyncio process, callers sharing one process pool).

Two profiles of the same kernels from standard calibrations on this host: ``--old`` calibrated with
``OFFLOAD_TUNER_SHM=off`` (every byte pickled in band) and ``--new`` with the transport on. ``--new`` is the
installed profile; the transport is switched per run with ``offload_tuner.runtime._shm.settings.enabled``
(``False``: the old transport). Policies, all through the real ``run_kernel`` on the same pool:

* ``old:T=...``  every static threshold of :mod:`benchmarks.workload`'s sweep (``old:always`` ... ``old:never``),
                 old transport
* ``old:tuned``  the old profile's threshold, old transport (context: what the old calibration chose)
* ``new:tuned``  ``offload_if=None`` with the new profile installed, new transport

Policies deciding every call alike with the same transport are one policy (measured once per round; a policy
offloading nothing is the same whatever the transport). Rounds, slices, normalisation and the confirmation are
:mod:`benchmarks.workload`'s and :mod:`benchmarks.confirm`'s: every distinct policy once per slice of each round
in a shuffled order; makespans normalised round by round; then fresh confirmation rounds of ``new:tuned`` against
the sweep's best two old statics, more until the median ratio settles. The verdict per kernel: the confirmed
``new:tuned`` / best old static <= 1.00. Beside it, what the cost models say: each profile's threshold and the
model's (isolated and load-corrected) choice, the new profile's curves priced in band (the model's own
counterfactual), and the predicted makespan of every policy on the benchmark's calls.

    python -m benchmarks.transport --old P_old.json --new P_new.json [--kernel NAME ...] [--rounds 5]
        [--confirm-rounds 8] [--append] [--smoke]
    python -m benchmarks.transport --render [--notes NOTES.md]   # transport.md again from transport.json

writes ``benchmarks/results/transport/transport.{json,md}`` (``transport-smoke.*`` with ``--smoke``);
``--append`` keeps the other kernels of an existing report (one kernel per locked run).
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import offload_tuner
from benchmarks.confirm import (
    CONFIRM_AGAINST,
    CONFIRM_MAX_FACTOR,
    CONFIRM_ROUNDS,
    CONFIRM_STANDARD_ERROR,
    analyse_confirmation,
    normalised,
    per_round,
    until_settled,
)
from benchmarks.workload import (
    RunResult,
    Workload,
    benchmark_arguments,
    chunk_count,
    fresh_rounds,
    installed_pool,
    load_workloads,
    policy_gate,
    report_header,
    run_policy,
    size_calls,
    static_name,
    summarise,
    sweep_thresholds,
    warm_workers,
)
from offload_tuner.calibration._workload import Calls, shuffled_calls
from offload_tuner.inspection._report import format_threshold as _fmt_t
from offload_tuner.runtime import _shm
from offload_tuner.runtime._registry import KernelSpec

RESULTS = Path(__file__).resolve().parent / "results" / "transport"
KERNELS = ("offload_tuner_kernels.frames:smooth_frames", "offload_tuner_kernels.numeric:detect_spikes")
OLD, NEW = "old", "new"
TUNED_NEW, TUNED_OLD = "new:tuned", "old:tuned"


@contextmanager
def transport(name: str) -> Iterator[None]:
    """Process-pool calls in this block use the old in-band pickle (``old``) or shared memory (``new``)."""
    was = _shm.settings.enabled
    _shm.settings.enabled = name == NEW
    try:
        yield
    finally:
        _shm.settings.enabled = was


def transport_of(policy: str) -> str:
    return policy.split(":", 1)[0]


def gate_of(policy: str) -> str:
    """The :func:`benchmarks.workload.policy_gate` name of a policy (``new:tuned``: the profile decides)."""
    return "tuned" if policy == TUNED_NEW else policy


def decisions(spec: KernelSpec, calls: Calls, gate: str, named: Mapping[str, int | None]) -> tuple[bool, ...]:
    g = policy_gate(gate, named)
    return tuple(offload_tuner.decide(spec.fn, *args, offload_if=g(n)).offload for args, n in calls)


def representatives(
    spec: KernelSpec, calls: Calls, policies: list[str], named: Mapping[str, int | None]
) -> dict[str, str]:
    """Each policy's representative: the first deciding every call alike with the same transport (a policy that
    offloads nothing is one policy whatever the transport)."""
    first: dict[tuple[Any, ...], str] = {}
    same_as = {}
    for name in policies:
        signature = decisions(spec, calls, gate_of(name), named)
        key = (transport_of(name) if any(signature) else "-", signature)
        same_as[name] = first.setdefault(key, name)
    return same_as


def warm_transports(spec: KernelSpec, calls: Calls) -> None:
    """Workers import the kernel, and the first shared-memory call sweeps orphans and takes the owner lock: keep
    both out of the timed runs."""
    from offload_tuner.runtime._packaging import call_sync

    warm_workers(spec, calls)
    executor = offload_tuner.get_executor()
    assert executor is not None
    largest = max(calls, key=lambda call: call[1])[0]
    for name in (NEW, OLD):
        with transport(name):
            for _ in range(4):
                call_sync(executor, spec.fn, largest)


def bench_kernel(
    spec: KernelSpec,
    workload: Workload,
    calls: Calls,
    profiles: Mapping[str, Path],
    *,
    callers: int,
    rounds: int,
    seed: int,
    chunks: int,
    confirm_rounds: int,
    confirm_max_rounds: int,
) -> dict[str, Any]:
    """The sweep of old statics, old:tuned and new:tuned in interleaved rounds, then the confirmation. The old
    profile is installed only to check that its decisions on these calls are its threshold's; the new one stays."""
    old = offload_tuner.load_profile(profiles[OLD], strict=True, check_host=False)
    assert old is not None
    old_threshold = old.kernels[spec.key].data["threshold"]
    old_decides_like = decisions(spec, calls, "tuned", {}) == decisions(spec, calls, "T", {"T": old_threshold})
    offload_tuner.load_profile(profiles[NEW], strict=True, check_host=False)
    warm_transports(spec, calls)
    named = {TUNED_OLD: old_threshold}
    statics = [f"old:{static_name(t)}" for t in sweep_thresholds(workload)]
    named.update(zip(statics, sweep_thresholds(workload)))
    policies = [*statics, TUNED_OLD, TUNED_NEW]  # statics first: they represent what decides alike
    same_as = representatives(spec, calls, policies, named)
    distinct = [p for p in policies if same_as[p] == p]
    slices = chunk_count(len(calls), callers, chunks)
    order_rng, calls_rng = random.Random(seed), random.Random(seed + 1)

    def run(piece: Calls, name: str) -> RunResult:
        with transport(transport_of(name)):
            result = run_policy(spec, piece, gate_of(name), callers, named)
        return dataclasses.replace(result, policy=name)

    def measure(names: list[str], count: int) -> Iterator[dict[str, RunResult]]:
        return fresh_rounds(calls, names, count, slices, order_rng, calls_rng, shuffled_calls, run)

    started = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in distinct}
    for results in measure(distinct, rounds):
        for name, result in results.items():
            runs[name].append(asdict(result))
    sweep_s = time.perf_counter() - started
    entry: dict[str, Any] = {
        "kernel": spec.key,
        "sizes": [workload.lo, workload.hi],
        "calls": len(calls),
        "slices": slices,
        "old_threshold": old_threshold,
        "old_tuned_decides_like_its_threshold": old_decides_like,
        "new_threshold": offload_tuner.decide(spec.fn, *spec.sample(workload.lo)).threshold,  # type: ignore[misc]
        "same_as": {p: rep for p, rep in same_as.items() if rep != p},
        "runs": runs,
        "sweep_s": round(sweep_s, 1),
    }
    analyse(entry)
    against = entry["confirm_against"]
    if confirm_rounds > 0 and against:
        started = time.perf_counter()
        fresh = (
            {("tuned" if name == TUNED_NEW else name): asdict(r) for name, r in results.items()}
            for results in measure([TUNED_NEW, *against], confirm_max_rounds)
        )
        entry["confirmation"] = until_settled(fresh, confirm_rounds, analyse_confirmation)
        entry["confirmation_s"] = round(time.perf_counter() - started, 1)
    entry["verdict"] = verdict(entry)
    return entry


def analyse(entry: dict[str, Any]) -> None:
    """Medians (makespans normalised round by round over the distinct policies), the best old static and
    new:tuned's ratio to it, median and round by round; the statics to confirm against."""
    runs, same_as = entry["runs"], entry["same_as"]
    values = normalised(runs)
    summary = {}
    for name, results in runs.items():
        summary[name] = summarise([RunResult(**r) for r in results])
        summary[name]["raw_makespan_s"] = summary[name]["makespan_s"]
        summary[name]["makespan_s"] = statistics.median(values[name])
    entry["summary"] = summary
    olds = [name for name in runs if name != TUNED_NEW]
    best = min(olds, key=lambda name: summary[name]["makespan_s"])
    entry["best_old"] = best
    entry["best_old_aliases"] = [alias for alias, rep in same_as.items() if rep == best]
    if TUNED_NEW in runs:
        ratios = per_round(values, TUNED_NEW, best)
        entry["sweep_ratio"] = summary[TUNED_NEW]["makespan_s"] / summary[best]["makespan_s"]
        entry["sweep_per_round"] = ratios
        ranked = sorted(olds, key=lambda name: summary[name]["makespan_s"])
        entry["confirm_against"] = ranked[:CONFIRM_AGAINST]
    else:  # new:tuned offloads nothing: it is old:never, one policy
        entry["sweep_ratio"], entry["sweep_per_round"], entry["confirm_against"] = 1.0, [1.0], []


def verdict(entry: dict[str, Any]) -> dict[str, Any]:
    c = entry.get("confirmation")
    ratio = entry["sweep_ratio"] if c is None else c["ratio"]
    rounds = entry["sweep_per_round"] if c is None else c["per_round"]
    return {
        "ratio": ratio,
        "against": entry["best_old"] if c is None else c["oracle"],
        "range": [min(rounds), max(rounds)],
        "standard_error": None if c is None else c["standard_error"],
        "rounds": len(rounds),
        "at_or_below_1.00": ratio <= 1.00,
    }


def model_view(
    profiles: Mapping[str, Any], key: str, calls: Calls | None = None, thresholds: list[int | None] | None = None
) -> dict[str, Any]:
    """What the cost models say, per transport: the profile's threshold and interval, the model's choice
    (isolated, corrected by the load factors), the per-size view, where buffers go out of band; and the new
    profile's own curves priced all in band (the model's counterfactual: the move the new model attributes to
    the transport alone)."""
    from offload_tuner.runtime._policy import (
        KernelCosts,
        LoadFactors,
        PolicyKnobs,
        TransportModel,
        stream_threshold,
        threshold,
    )

    out: dict[str, Any] = {}
    for name, profile in profiles.items():
        data = profile.data
        entry = data["kernels"][key]
        costs = KernelCosts.from_json(entry["costs"])
        model = TransportModel.from_json(data["transport"]["model"])
        knobs = PolicyKnobs.from_json(data.get("policy", {}))
        workload = tuple(float(v) for v in entry.get("workload_range") or costs.compute.size_range)
        isolated = dataclasses.replace(costs, load=LoadFactors())
        load = entry.get("load", {})
        view = {
            "threshold": entry["threshold"],
            "interval": entry.get("interval"),
            "reason": load.get("reason"),
            "model_corrected": threshold(costs, model, knobs, workload),  # type: ignore[arg-type]
            "model_isolated": threshold(isolated, model, knobs, workload),  # type: ignore[arg-type]
            "recorded_model_threshold": load.get("model_threshold"),
            "recorded_isolated_model_threshold": load.get("isolated_model_threshold"),
            "stream_threshold": stream_threshold(costs, model, knobs),
            "candidates": [
                {
                    "threshold": c["threshold"],
                    "makespan_s": statistics.median(c["makespan_s"]),
                    "predicted_s": c.get("predicted_s"),
                }
                for c in load.get("candidates", [])
            ],
            "oob_from": costs.oob_from,
            "min_bytes": data["transport"].get("shared_memory", {}).get("min_bytes"),
            "shared_memory_source": data["transport"].get("shared_memory", {}).get("source"),
        }
        if costs.oob_bytes is not None:  # the same curves, every byte in band
            in_band = dataclasses.replace(costs, oob_from=None)
            view["in_band_counterfactual"] = {
                "model_corrected": threshold(in_band, model, knobs, workload),  # type: ignore[arg-type]
                "model_isolated": threshold(dataclasses.replace(in_band, load=LoadFactors()), model, knobs, workload),  # type: ignore[arg-type]
            }
        out[name] = view
    if calls is not None:
        out["predicted"] = predicted_makespans(profiles, key, calls, thresholds or [])
    return out


def predicted_makespans(
    profiles: Mapping[str, Any], key: str, calls: Calls, thresholds: list[int | None]
) -> dict[str, float]:
    """Each threshold (the sweep's and the profiles' own) priced by the old profile's model and by the new one's
    on the benchmark's calls (load factors included; steady state), as ``old:T=...`` and ``new:T=...``."""
    from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel, predict, workload_makespan

    sizes = sorted(n for _, n in calls)
    grid = list(dict.fromkeys([*thresholds, *(p.data["kernels"][key]["threshold"] for p in profiles.values())]))
    spans: dict[str, float] = {}
    for name, profile in profiles.items():
        data = profile.data
        costs = KernelCosts.from_json(data["kernels"][key]["costs"])
        model = TransportModel.from_json(data["transport"]["model"])
        knobs = PolicyKnobs.from_json(data.get("policy", {}))
        predictions = [predict(costs, model, knobs, n) for n in sizes]
        for t in grid:
            k = len(sizes) if t is None else next((i for i, n in enumerate(sizes) if n >= t), len(sizes))
            spans[f"{name}:{static_name(t)}"] = workload_makespan(predictions, knobs, k)
    return spans


def predicted_ratio(entry: dict[str, Any], sweep: list[int | None]) -> dict[str, Any]:
    """new:tuned over the best old static (the sweep and old:tuned), both as the models price them."""
    predicted = entry["model"]["predicted"]
    olds = {f"old:{static_name(t)}" for t in [*sweep, entry["old_threshold"]]}
    best = min(olds, key=lambda name: predicted[name])
    return {"best_old": best, "ratio": predicted[f"new:{static_name(entry['new_threshold'])}"] / predicted[best]}


def git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "subject": git("log", "-1", "--format=%s")[:120],
        "package_dirty": bool(git("status", "--porcelain", "--", "offload_tuner", "offload_tuner_kernels")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_arguments(__doc__, out=RESULTS, rounds=5, seed=20261204, profile=None, kernel=True)
    parser.add_argument("--old", type=Path, help="profile calibrated with OFFLOAD_TUNER_SHM=off")
    parser.add_argument("--new", type=Path, help="profile calibrated with the shared-memory transport on")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--confirm-rounds", type=int, default=CONFIRM_ROUNDS)
    parser.add_argument("--append", action="store_true", help="keep the other kernels of an existing report")
    parser.add_argument("--render", action="store_true", help="only write the markdown again from the JSON")
    parser.add_argument(
        "--notes", type=Path, help="with --render: markdown kept in the JSON and shown after the header"
    )
    args = parser.parse_args(argv)
    stem = "transport-smoke" if args.smoke else "transport"
    json_path = args.out_dir / f"{stem}.json"
    if args.render:
        report = json.loads(json_path.read_text())
        if args.notes is not None:
            report["notes"] = args.notes.read_text()
            json_path.write_text(json.dumps(report, indent=1) + "\n")
        (args.out_dir / f"{stem}.md").write_text(to_markdown(report))
        return 0
    if args.old is None or args.new is None:
        parser.error("--old and --new are required (unless --render)")

    import offload_tuner_kernels  # noqa: F401  (registers the bundled kernels)
    from offload_tuner.runtime._backends import default_workers
    from offload_tuner.runtime._registry import spec_by_key

    if _shm.settings.pinned or not _shm.settings.enabled:
        raise SystemExit("benchmarks.transport: unset OFFLOAD_TUNER_SHM; the benchmark switches the transport itself")
    warnings.filterwarnings("ignore", category=offload_tuner.ProfileOverriddenWarning)
    wanted = args.kernel or list(KERNELS)
    workloads = [w for w in load_workloads() if any(k in w.key for k in wanted)]
    if not workloads:
        raise SystemExit(f"benchmarks.transport: no planned kernel matches {wanted}")
    profiles = {OLD: args.old, NEW: args.new}
    loaded = {name: offload_tuner.load_profile(path, strict=True, check_host=False) for name, path in profiles.items()}
    rounds = 1 if args.smoke else args.rounds
    confirm = min(1, args.confirm_rounds) if args.smoke else args.confirm_rounds
    workers = args.workers or default_workers()
    entries = []
    started = time.perf_counter()
    with installed_pool(workers):
        for w in workloads:
            spec = spec_by_key(w.key)
            if spec is None:
                raise SystemExit(f"benchmarks.transport: kernel not registered: {w.key}")
            print(f"benchmarking {w.key} ...", file=sys.stderr)
            calls = size_calls(spec, w, args.seed, args.smoke)
            entry = bench_kernel(
                spec,
                w,
                calls,
                profiles,
                callers=args.callers,
                rounds=rounds,
                seed=args.seed,
                chunks=args.chunks,
                confirm_rounds=confirm,
                confirm_max_rounds=confirm if args.smoke else CONFIRM_MAX_FACTOR * confirm,
            )
            entry["model"] = model_view(loaded, w.key, calls, sweep_thresholds(w))
            entry["predicted_vs_best_old"] = predicted_ratio(entry, sweep_thresholds(w))
            entry["git"] = git_state()
            entries.append(entry)
    report = {
        **report_header("benchmarks.transport", argv, args.smoke),
        "git": git_state(),
        "profiles": {OLD: str(args.old), NEW: str(args.new)},
        "profiles_created": {name: p.data.get("created") for name, p in loaded.items()},
        "callers": args.callers,
        "workers": workers,
        "rounds": rounds,
        "confirm_rounds": confirm,
        "duration_s": round(time.perf_counter() - started, 1),
        "workloads": entries,
    }
    if args.append and json_path.exists():
        previous = json.loads(json_path.read_text())
        kept = [e for e in previous["workloads"] if e["kernel"] not in {e["kernel"] for e in entries}]
        report["workloads"] = kept + entries
        report["earlier_runs"] = previous.get("earlier_runs", []) + [
            {k: previous[k] for k in ("created", "command", "git", "duration_s") if k in previous}
        ]
    report["workloads"].sort(key=lambda e: KERNELS.index(e["kernel"]) if e["kernel"] in KERNELS else 99)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    markdown = to_markdown(report)
    (args.out_dir / f"{stem}.md").write_text(markdown)
    print(markdown)
    return 0


def _name(key: str) -> str:
    return key.split(":")[1]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"


def to_markdown(report: dict[str, Any]) -> str:
    host = report["host"]
    lines = [
        "# Transport benchmark: tuned with shared memory against the best static of the in-band transport\n",
        f"Host `{host['hostname']}` ({host.get('cpu_model')}, {host.get('logical_cores')} cores), Python "
        f"{host.get('python_version')}; {report['callers']} callers, one pool of {report['workers']} workers; "
        f"{report['rounds']} interleaved rounds, then at least {report['confirm_rounds']} confirmation rounds; "
        f"{report['created']}, {report['duration_s']} s.\n",
        *(
            f"Earlier run kept (`--append`): `{run['command']}` ({run['created']})\n"
            for run in report.get("earlier_runs", [])
        ),
        f"Command: `{report['command']}`\n",
        f"Profiles: old `{report['profiles'][OLD]}`, new `{report['profiles'][NEW]}`.\n",
        *([report["notes"].rstrip() + "\n"] if report.get("notes") else []),
        "",
        "## Verdicts",
        "",
        "*new:tuned / best old static*: makespans normalised round by round; the confirmation's median of the "
        "per-round ratios against the old static it compares worst with (of the sweep's best "
        f"{CONFIRM_AGAINST}), ± its standard error, [range over rounds]. Sweep: the same against the best old "
        "static of the sweep (lowest of many noisy medians: reads high by selection). Predicted: the same ratio "
        "from the profiles' models (old statics by the old profile, new:tuned by the new one) on the same calls.",
        "",
        "| kernel | old T | new T | sweep: best old, ratio [rounds] | confirmed ratio ± se [rounds], n "
        "| predicted | <= 1.00 | commit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in report["workloads"]:
        v, c = e["verdict"], e.get("confirmation")
        lo, hi = min(e["sweep_per_round"]), max(e["sweep_per_round"])
        confirmed = (
            "-"
            if c is None
            else f"**{c['ratio']:.2f}** ± {c['standard_error']:.2f} vs {c['oracle']} [{min(c['per_round']):.2f}, "
            f"{max(c['per_round']):.2f}], {c['rounds']}"
        )
        p = e.get("predicted_vs_best_old")
        predicted = "-" if p is None else f"{p['ratio']:.2f} (vs {p['best_old']})"
        git = e.get("git", report.get("git", {}))
        lines.append(
            f"| {_name(e['kernel'])} | {_fmt_t(e['old_threshold'])} | {_fmt_t(e['new_threshold'])} | "
            f"{e['best_old']}, {e['sweep_ratio']:.2f} [{lo:.2f}, {hi:.2f}] | {confirmed} | {predicted} | "
            f"{'yes' if v['at_or_below_1.00'] else '**no**'} | `{git.get('commit', '')[:8]}`"
            f"{' (dirty)' if git.get('package_dirty') else ''} |"
        )
    lines += [
        "",
        "## Thresholds: measured and what the model says",
        "",
        "Per profile: the calibrated threshold and its interval; the cost model's own choice over the workload "
        "range (isolated, and corrected by the load factors the concurrent phase fitted); the per-size view (a "
        "saturated stream of one size); where a call's buffers go out of band (`oob_from`, the kernel's size) and "
        "the host's `min_bytes`. *In band*: the new profile's curves with every byte priced in band, i.e. the "
        "move the new model attributes to the transport alone.",
        "",
        "| kernel | profile | threshold | interval | model isolated / corrected | per-size | out of band from "
        "| min_bytes | in band (same curves): isolated / corrected |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["workloads"]:
        for name in (OLD, NEW):
            m = e["model"][name]
            interval = m["interval"]
            cf = m.get("in_band_counterfactual")
            oob = "never" if m["oob_from"] is None else f"{m['oob_from']:.0f}"
            in_band = "-" if cf is None else f"{_fmt_t(cf['model_isolated'])} / {_fmt_t(cf['model_corrected'])}"
            lines.append(
                f"| {_name(e['kernel'])} | {name} | {_fmt_t(m['threshold'])} | "
                f"{'-' if interval is None else f'[{_fmt_t(interval[0])}, {_fmt_t(interval[1])}]'} | "
                f"{_fmt_t(m['model_isolated'])} / {_fmt_t(m['model_corrected'])} | {_fmt_t(m['stream_threshold'])} | "
                f"{oob} | "
                f"{'-' if m['min_bytes'] is None else m['min_bytes']} ({m['shared_memory_source']}) | "
                f"{in_band} |"
            )
    lines += [
        "",
        "Candidates each calibration measured under load (median makespan / the model's prediction):",
        "",
    ]
    for e in report["workloads"]:
        for name in (OLD, NEW):
            cells = ", ".join(
                f"{_fmt_t(c['threshold'])}: {c['makespan_s'] * 1e3:.1f}/"
                f"{'-' if c['predicted_s'] is None else format(c['predicted_s'] * 1e3, '.1f')} ms"
                for c in e["model"][name]["candidates"]
            )
            lines.append(f"- {_name(e['kernel'])}, {name}: {cells}")
    lines += [
        "",
        "## Every policy (sweep rounds)",
        "",
        "| kernel | policy | makespan (raw median) | vs best old (normalised) | predicted | loop lag p50 | p99 | max "
        "| caller CPU | offloaded |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["workloads"]:
        s, pred = e["summary"], e["model"].get("predicted", {})
        best = s[e["best_old"]]["makespan_s"]
        aliases: dict[str, list[str]] = {}
        for alias, rep in e["same_as"].items():
            aliases.setdefault(rep, []).append(alias)
        for name, r in sorted(s.items(), key=lambda item: item[1]["makespan_s"]):
            label = f"**{name}**" if name in (TUNED_NEW, e["best_old"]) else name
            if name in aliases:
                label += f" (= {', '.join(aliases[name])})"
            key = f"new:{static_name(e['new_threshold'])}" if name == TUNED_NEW else name
            if name == TUNED_OLD:
                key = f"old:{static_name(e['old_threshold'])}"
            p = pred.get(key)
            lines.append(
                f"| {_name(e['kernel'])} | {label} | {r['raw_makespan_s'] * 1e3:.0f} ms | {r['makespan_s'] / best:.2f}x "
                f"| {'-' if p is None else f'{p * 1e3:.0f} ms'} | {_ms(r['lag_p50_s'])} | {_ms(r['lag_p99_s'])} | "
                f"{_ms(r['lag_max_s'])} | {r['caller_cpu_s'] * 1e3:.0f} ms | {r['offloaded']:.0f}/{r['calls']} |"
            )
    lines += [
        "",
        "## Confirmation rounds",
        "",
        "| kernel | policy | makespan (raw median) | new:tuned / it, median [range] | p99 loop lag (median) |",
        "|---|---|---|---|---|",
    ]
    for e in report["workloads"]:
        c = e.get("confirmation")
        if c is None:
            lines.append(f"| {_name(e['kernel'])} | - | - | new:tuned offloads nothing: it is old:never | - |")
            continue
        values = normalised(c["runs"])
        for name, runs in c["runs"].items():
            label = TUNED_NEW if name == "tuned" else name
            ratios = per_round(values, "tuned", name)
            lines.append(
                f"| {_name(e['kernel'])} | {label} | {statistics.median(r['makespan_s'] for r in runs) * 1e3:.0f} ms "
                f"| {'-' if name == 'tuned' else f'{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]'} "
                f"| {_ms(statistics.median(r['lag_p99_s'] for r in runs))} |"
            )
    lines += [
        "",
        f"Confirmation: at least {report['confirm_rounds']} fresh rounds, up to {CONFIRM_MAX_FACTOR}x as many until "
        f"the standard error of every median ratio is within {CONFIRM_STANDARD_ERROR:.0%}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
