"""Reruns: are the thresholds reproducible, their intervals honest, and each run right under load?

Calibrates the bundled kernels several times from scratch (each in a fresh process, with a fresh pool) and
benchmarks every resulting profile with the co-hosted workload (:mod:`benchmarks.workload`), then checks,
per kernel, what issue 10 asks of them:

* tuned / oracle makespan <= 1.10 in every run, as the benchmark's confirmation measures it (fresh rounds of
  tuned against the sweep's best statics, nothing selected in them; the sweep's ratio is reported beside it);
* thresholds across runs within 1.5x of each other, or their intervals overlapping with the recorded
  makespans showing a flat basin: several candidates tied under load in every calibration, or, in every
  run's benchmark, each static threshold between the runs' thresholds within 1.10x of the oracle (where a
  basin check ran, its measurement decides instead: see below);
* each run's threshold inside the other runs' intervals (pairwise coverage);
* the model's predicted makespan against the measured one (median error over kernels <= 15%).

    python -m benchmarks.reruns [--runs 3] [--effort standard] [--rounds 5] [--confirm-rounds 8] [--out-dir ...]
    python -m benchmarks.reruns --from-recorded [--out-dir ...]   # re-read recorded runs, measure nothing
    python -m benchmarks.reruns --from-recorded --measure-basins    # ... but run the basin checks they need
    python -m benchmarks.reruns --plan benchmarks/fresh_plan.json --out-dir D   # another plan's kernels

With ``--plan``, the campaign runs on that plan's kernels instead of the bundled ones (``benchmarks/fresh_plan.json``:
the kernels of :mod:`benchmarks.fresh_kernels`, written for the campaign): calibrations with ``--plan``, benchmarks
by :mod:`benchmarks.fresh_runs` (the same measurement for any plan). A campaign may also be run a step at a time
(each a short run, e.g. under a shared lock), then read with ``--from-recorded``::

    offload-tuner calibrate --plan P --out D/profile-N.json -q
    python -m benchmarks.fresh_runs --plan P --profile D/profile-N.json --kernel NAME --out-dir D/run-N
    python -m benchmarks.reruns --plan P --from-recorded --out-dir D

Each run is also checked against the loop budget as the benchmark's long runs see it (issue 29): no choice
whose p99 loop lag passes the budget while a static threshold whose makespan is within the calibration's tie
band of it keeps it (*budget kept*).

Where the runs' thresholds are too far apart to agree by distance but their intervals overlap, a **basin
check** follows: the runs' thresholds, each run's sweep oracle and a few powers of two between them, side by
side in fresh rounds until settled (``benchmarks.workload --compare``); the basin is flat when every
threshold from the lowest to the highest of the runs' is within 1.10x of the best measured beside them.

Run it on an otherwise idle machine: it is a measurement. Writes ``profile-N.json`` and ``run-N/`` (the
workload report) per run, ``basin-KERNEL/basin.json`` per basin check, and ``reruns.{json,md}`` with the
verdicts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from offload_tuner.calibration._choice import order_key
from offload_tuner.inspection._report import format_threshold as _fmt

RESULTS = Path(__file__).resolve().parent / "results" / "reruns"


def run_once(
    index: int, out_dir: Path, effort: str, rounds: int, confirm_rounds: int, plan: Path | None = None
) -> dict[str, Any]:
    """One fresh calibration and its benchmark, each in its own process (``plan``: that plan's kernels)."""
    profile = out_dir / f"profile-{index}.json"
    with_plan = [] if plan is None else ["--plan", str(plan)]
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "offload_tuner.inspection._cli",
            "calibrate",
            "--effort",
            effort,
            "--out",
            str(profile),
            "--quiet",
            *with_plan,
        ],
        check=True,
    )
    calibration_s = time.perf_counter() - started
    run_dir = out_dir / f"run-{index}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.workload" if plan is None else "benchmarks.fresh_runs",
            *with_plan,
            "--profile",
            str(profile),
            "--rounds",
            str(rounds),
            "--confirm-rounds",
            str(confirm_rounds),
            "--out-dir",
            str(run_dir),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return {
        "profile": json.loads(profile.read_text()),
        "workload": json.loads((run_dir / "workload.json").read_text()),
        "calibration_wall_s": calibration_s,
    }


def load_recorded(out_dir: Path) -> list[dict[str, Any]]:
    """Recorded runs, their workload reports re-analysed from the raw per-round makespans."""
    from benchmarks import workload

    runs = []
    for profile in sorted(out_dir.glob("profile-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        report_path = out_dir / f"run-{profile.stem.split('-')[1]}" / "workload.json"
        report = json.loads(report_path.read_text())
        for entry in report["workloads"]:
            workload.analyse(entry)
            entry["verdicts"] = workload.verdicts(entry, report.get("loop_budget_s"))
        report_path.write_text(json.dumps(report, indent=1) + "\n")
        (report_path.parent / "workload.md").write_text(workload.to_markdown(report))
        data = json.loads(profile.read_text())  # the wall time is unknown: the profile's own duration stands in
        runs.append({"profile": data, "workload": report, "calibration_wall_s": data.get("duration_s", math.nan)})
    return runs


FLAT = 1.10
"""A benchmark shows a flat basin where every policy between the runs' thresholds is within this of the best
measured beside it (the basin check's best, or the sweep's oracle)."""
BASIN_BETWEEN = 4
"""Powers of two strictly between the runs' lowest and highest thresholds that the basin check measures too (a
bump between two fine thresholds is not a flat basin); more are thinned to every other, and so on."""


def basin_thresholds(
    thresholds: list[int | None], oracles: list[str], workload_range: tuple[int, int]
) -> list[int | None]:
    """What the basin check measures side by side: the runs' thresholds, each run's sweep oracle (the
    reference), and up to ``BASIN_BETWEEN`` powers of two between the lowest and highest threshold (inside
    the workload range: below its bottom every threshold is ``always``, beyond its top ``never``)."""
    from benchmarks.workload import parse_threshold

    lo = max(min(order_key(t) for t in thresholds), workload_range[0])
    hi = max(order_key(t) for t in thresholds)
    between = [1 << k for k in range(1, 63) if lo < (1 << k) < hi and (1 << k) <= workload_range[1]]
    while len(between) > BASIN_BETWEEN:
        between = between[1::2]
    return sorted(set(thresholds) | set(between) | {parse_threshold(o) for o in oracles}, key=order_key)


def basin_flat(basin: dict[str, Any], thresholds: list[int | None]) -> bool:
    """The basin check's verdict: every measured threshold from the lowest to the highest of the runs' within
    ``FLAT`` of the best measured beside them. A check that did not measure each of the runs' thresholds (a
    failed one, or one recorded for other runs) shows nothing."""
    from benchmarks.workload import static_name

    if basin.get("error") or not {static_name(t) for t in thresholds} <= set(basin.get("vs_best", {})):
        return False
    lo, hi = min(order_key(t) for t in thresholds), max(order_key(t) for t in thresholds)
    span = [t for t in basin["thresholds"] if lo <= order_key(t) <= hi]
    return all(basin["vs_best"][static_name(t)] <= FLAT for t in span)


def needs_basin(row: dict[str, Any]) -> bool:
    """Thresholds too far apart to be reproducible by distance, in intervals that overlap: the basin decides."""
    return not row["within_1.5x"] and row["intervals_overlap"]


def measure_basins(
    runs: list[dict[str, Any]], out_dir: Path, confirm_rounds: int, plan: Path | None = None
) -> dict[str, Any]:
    """The basin check for every kernel that needs one, each in its own process: the runs' thresholds and
    the statics between them side by side in fresh rounds (``benchmarks.workload --compare``). A check that
    fails is recorded as failed (it shows no flat basin); the campaign's report is still written."""
    from benchmarks.workload import load_workloads

    ranges = {w.key: (w.lo, w.hi) for w in (load_workloads() if plan is None else load_workloads(plan))}
    basins: dict[str, Any] = {}
    for key, row in verdicts(runs)["kernels"].items():
        if not needs_basin(row) or key not in ranges:
            continue
        name = key.split(":")[1]
        thresholds = basin_thresholds(row["thresholds"], row["oracles"], ranges[key])
        print(f"basin check: {name} at {', '.join(_fmt(t) for t in thresholds)} ...", file=sys.stderr)
        basin_dir = out_dir / f"basin-{name}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.workload" if plan is None else "benchmarks.fresh_runs",
                *([] if plan is None else ["--plan", str(plan)]),
                "--profile",
                str(out_dir / "profile-1.json"),
                "--kernel",
                key,
                "--compare",
                ",".join(_fmt(t) for t in thresholds),
                "--confirm-rounds",
                str(confirm_rounds),
                "--out-dir",
                str(basin_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            print(f"basin check: {name} failed:\n{done.stderr}", file=sys.stderr)
            basins[key] = {"kernel": key, "thresholds": thresholds, "error": done.stderr.strip().splitlines()[-1:]}
            continue
        basins[key] = _recorded_basin(basin_dir / "basin.json")
    return basins


def load_basins(out_dir: Path) -> dict[str, Any]:
    """Recorded basin checks (``basin-*/basin.json``), re-analysed from their raw rounds."""
    from benchmarks.confirm import analyse_basin, with_aliases

    basins = {}
    for path in sorted(out_dir.glob("basin-*/basin.json")):
        basin = _recorded_basin(path)
        if basin.get("runs"):
            basin.update(analyse_basin(basin["runs"]))
            basin["vs_best"] = with_aliases(basin["vs_best"], basin.get("same_as", {}))
        basins[basin["kernel"]] = basin
    return basins


def _recorded_basin(path: Path) -> dict[str, Any]:
    report = json.loads(path.read_text())
    return {**report["basin"], "duration_s": report.get("duration_s")}


def flat_between(bench: dict[str, Any], thresholds: list[int | None]) -> bool:
    """The recorded makespans show the basin flat across the runs' thresholds: in this benchmark the tuned
    policy and every static threshold of the sweep from the lowest to the highest of them (``always`` and
    ``never`` included when a run chose them) are within ``FLAT`` of the oracle."""
    lo, hi = min(order_key(t) for t in thresholds), max(order_key(t) for t in thresholds)
    summary, same_as = bench["summary"], bench.get("same_as", {})

    def ratio(policy: str) -> float:
        name = same_as.get(policy, policy)
        return summary[name]["makespan_s"] / summary[same_as.get(bench["oracle"], bench["oracle"])]["makespan_s"]

    between = ["tuned"]
    for policy in list(summary) + list(same_as):
        if policy.startswith("T=") and lo <= int(policy[2:]) <= hi:
            between.append(policy)
    between += (["always"] if lo == 0 else []) + (["never"] if hi == math.inf else [])
    return all(ratio(p) <= FLAT for p in between if p in summary or p in same_as)


def budget_kept(bench: dict[str, Any], entry: dict[str, Any], budget: float | None) -> dict[str, Any]:
    """The loop budget as the benchmark's long runs see it: tuned's p99 loop lag within ``budget``, or no static
    threshold of the sweep within the calibration's tie band of tuned's makespan keeping it (a choice past the
    budget is wrong only when a candidate as fast, as far as calibration can tell, keeps it)."""
    summary = bench["summary"]
    lag = summary["tuned"].get("lag_p99_s")
    if budget is None or lag is None or lag <= budget:
        return {"kept": True, "lag_p99_s": lag, "instead": None}
    band = (entry.get("load") or {}).get("tie_band", 0.0)
    bar = summary["tuned"]["makespan_s"] * (1 + band)
    within = [
        name
        for name, row in summary.items()
        if (name.startswith("T=") or name in ("always", "never"))
        and row["lag_p99_s"] <= budget
        and row["makespan_s"] <= bar
    ]
    return {"kept": not within, "lag_p99_s": lag, "instead": within or None}


def _confirmed(bench: dict[str, Any]) -> dict[str, Any] | str | None:
    """The benchmark's confirmation in short; "identical" where tuned decides every call like the sweep's oracle
    (nothing to confirm); None where none ran."""
    c = bench.get("confirmation")
    if c is not None:
        return {"ratio": c["ratio"], "oracle": c["oracle"], "range": [min(c["per_round"]), max(c["per_round"])]}
    same_as = bench.get("same_as", {})
    return "identical" if same_as.get(bench["oracle"], bench["oracle"]) == "tuned" else None


def verdicts(runs: list[dict[str, Any]], basins: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per kernel, the issue's checks; ``basins``: recorded basin checks (:func:`measure_basins`), which decide
    whether the benchmark shows a flat basin where they ran (else every run's sweep decides)."""
    from benchmarks import workload

    kernels = list(runs[0]["profile"]["kernels"])
    rows = {}
    covered = pairs = 0
    model_errors = []
    for key in kernels:
        entries = [r["profile"]["kernels"][key] for r in runs]
        benches = [next((w for w in r["workload"]["workloads"] if w["kernel"] == key), None) for r in runs]
        thresholds = [e.get("threshold") for e in entries]
        intervals = [e.get("interval") or [None, None] for e in entries]
        finite = [t for t in thresholds if t is not None]
        spread = (max(finite) / max(1, min(finite))) if finite and len(finite) == len(thresholds) else None
        same = len({_fmt(t) for t in thresholds}) == 1
        within_15 = same or (spread is not None and spread <= 1.5)
        overlap = max(order_key(lo) for lo, _ in intervals) <= min(order_key(hi) for _, hi in intervals)
        flat = all(len(e.get("load", {}).get("tied", [])) > 1 for e in entries)
        basin = (basins or {}).get(key)
        if basin is not None:
            flat_measured = basin_flat(basin, thresholds)
        else:
            flat_measured = all(b and flat_between(b, thresholds) for b in benches)
        inside = 0
        for (a, _), (_, ib) in itertools.permutations(zip(thresholds, intervals), 2):
            inside += order_key(ib[0]) <= order_key(a) <= order_key(ib[1])
        n_pairs = len(thresholds) * (len(thresholds) - 1)
        covered, pairs = covered + inside, pairs + n_pairs
        ratios = [b["tuned_vs_oracle"] for b in benches if b]
        budget = [budget_kept(b, e, r["workload"].get("loop_budget_s")) for b, e, r in zip(benches, entries, runs) if b]
        judged = [workload.judged_ratio(b) for b in benches if b]
        for b in benches:
            if b and b.get("model_check"):
                model_errors.append(b["model_check"]["median_error"])
        rows[key] = {
            "thresholds": thresholds,
            "intervals": intervals,
            "tuned_vs_oracle": ratios,
            "tuned_vs_oracle_per_round": [b["verdicts"]["tuned_vs_oracle_range"] for b in benches if b],
            "confirmed": [_confirmed(b) for b in benches if b],
            "judged": judged,
            "oracles": [b["oracle"] for b in benches if b],
            "within_1.5x": within_15,
            "intervals_overlap": overlap,
            "flat_basin_every_run": flat,
            "flat_in_benchmark": flat_measured,
            "basin": None
            if basin is None
            else {field: basin.get(field) for field in ("vs_best", "best", "rounds", "duration_s", "error")},
            "reproducible": within_15 or (overlap and (flat or flat_measured)),
            "coverage": f"{inside}/{n_pairs}",
            "all_within_1.10x_oracle": all(r <= 1.10 for r in judged),
            "steady_vs_oracle": [b["steady"]["ratio"] for b in benches if b and "steady" in b],
            "budget": budget,
            "budget_kept": all(b["kept"] for b in budget),
        }
    return {
        "kernels": rows,
        "coverage": covered / pairs if pairs else None,
        "model_error_median": statistics.median(model_errors) if model_errors else None,
        "calibration_wall_s": [round(r["calibration_wall_s"], 1) for r in runs],
    }


def to_markdown(report: dict[str, Any]) -> str:
    v = report["verdicts"]
    host = report["host"]
    lines = [
        "# Reruns: reproducible thresholds, honest intervals, right under load\n",
        f"Host `{host['hostname']}` ({host['cpu_model']}, {host['logical_cores']} cores), Python "
        f"{host['python_version']}; {report['runs']} fresh calibrations at `{report['effort']}` effort, each "
        f"benchmarked with the co-hosted workload ({report['rounds']} rounds, then {report.get('confirm_rounds', 0)} "
        f"confirmation rounds); {report['created']}.\n",
        f"Command: `{report['command']}` ({report['duration_s']:.0f} s in all; calibrations took "
        f"{', '.join(f'{s:.0f}' for s in v['calibration_wall_s'])} s wall).\n",
        "| kernel | thresholds [intervals] per run | within 1.5x | intervals overlap | flat basin: calibration / benchmark "
        "| reproducible | coverage | sweep: tuned / oracle per run [per-round range] | confirmed: tuned / oracle per run "
        "[per-round range] | <= 1.10x | steady pass: tuned / oracle | tuned p99 loop lag per run | budget kept |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in v["kernels"].items():
        ts = ", ".join(f"{_fmt(t)} [{_fmt(i[0])}, {_fmt(i[1])}]" for t, i in zip(r["thresholds"], r["intervals"]))
        ratios = ", ".join(
            f"{x:.2f} [{lo:.2f}, {hi:.2f}]" for x, (lo, hi) in zip(r["tuned_vs_oracle"], r["tuned_vs_oracle_per_round"])
        )
        confirmed = ", ".join(
            "-"
            if c is None
            else "same as the oracle"
            if c == "identical"
            else f"{c['ratio']:.2f} [{c['range'][0]:.2f}, {c['range'][1]:.2f}] vs {c['oracle']}"
            for c in r.get("confirmed", [None] * len(r["tuned_vs_oracle"]))
        )
        yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
        lines.append(
            f"| {key.split(':')[1]} | {ts} | {yes(r['within_1.5x'])} | {yes(r['intervals_overlap'])} | "
            f"{yes(r['flat_basin_every_run'])} / {yes(r.get('flat_in_benchmark', False))} | {yes(r['reproducible'])} | {r['coverage']} | {ratios} | {confirmed} | "
            f"{yes(r['all_within_1.10x_oracle'])} | {', '.join(f'{x:.2f}' for x in r['steady_vs_oracle']) or '-'} | "
            f"{_lags(r)} | {yes(r.get('budget_kept', True))} |"
        )
    lines += [
        "",
        "*Reproducible*: the thresholds are within 1.5x of each other, or their intervals overlap and the basin "
        "is flat, either in calibration's measurements (every run found several candidates tied) or in the "
        "benchmark's: where a basin check ran, every threshold it measured from the lowest to the highest of the "
        "runs' within 1.10x of the best measured beside them (below); else, in every run's sweep, the tuned policy "
        "and each static threshold in that span within 1.10x of the oracle.",
        "",
        "*Budget kept*: in every run's benchmark, tuned's p99 loop lag within the profile's loop budget, or no "
        "static threshold whose makespan is within the calibration's tie band of tuned's keeping it (issue 29).",
        "",
        "*Confirmed*: tuned against the sweep's best two statics again, in fresh rounds of those three alone (none "
        'where tuned decides every call like the sweep\'s oracle: "same as the oracle", 1.00 by identity); the '
        "median of tuned / static round by round, against the static it compares worse with. The sweep's oracle "
        "is the lowest of 8-12 noisy medians and reads low by selection; *<= 1.10x* judges the confirmed ratio.",
        "",
        *_basin_lines(v),
        f"Pairwise coverage (a run's threshold inside another run's interval): **{v['coverage']:.0%}**.",
        f"Model check, median over kernels and runs of the predicted-vs-measured makespan error: "
        f"**{v['model_error_median']:.0%}**.",
        "",
        "Per-run details: `run-N/workload.md` (every policy, the model check) and `profile-N.json` (every "
        "candidate measured under load; `offload-tuner explain KERNEL SIZE --profile profile-N.json`).",
    ]
    return "\n".join(lines) + "\n"


def _lags(row: dict[str, Any]) -> str:
    """Tuned's p99 loop lag per run, and the statics that would have kept the budget where it did not."""
    cells = []
    for b in row.get("budget", []):
        cell = "-" if b["lag_p99_s"] is None else f"{b['lag_p99_s'] * 1e3:.0f} ms"
        cells.append(cell if b["kept"] else f"{cell} (kept by {', '.join(b['instead'])})")
    return ", ".join(cells) or "-"


def _basin_lines(v: dict[str, Any]) -> list[str]:
    rows = {key: r["basin"] for key, r in v["kernels"].items() if r.get("basin")}
    if not rows:
        return []
    lines = [
        "*Basin checks* (the thresholds alone, side by side in fresh rounds; each against the best of them "
        "in the same rounds, the median of the per-round ratios; picking that best in the same rounds reads "
        "the others slightly slow, against flatness):",
        "",
    ]
    for key, basin in rows.items():
        if basin.get("error"):
            lines.append(f"- `{key.split(':')[1]}`: the check failed ({' '.join(basin['error'])}); it shows nothing.")
            continue
        cells = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in basin["vs_best"].items())
        took = "" if basin.get("duration_s") is None else f", {basin['duration_s']:.0f} s"
        lines.append(f"- `{key.split(':')[1]}`: {cells} ({basin['rounds']} rounds{took}; best `{basin['best']}`).")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--effort", default="standard", choices=("quick", "standard", "thorough"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--confirm-rounds",
        type=int,
        default=8,
        help="the workload benchmark's confirmation rounds (0: judge the sweep's ratio)",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--plan", type=Path, help="calibrate and benchmark this plan's kernels (default: the bundled kernels' plan)"
    )
    parser.add_argument(
        "--from-recorded",
        action="store_true",
        help="re-analyse the runs and basin checks recorded in --out-dir; measure nothing",
    )
    parser.add_argument(
        "--measure-basins",
        action="store_true",
        help="with --from-recorded: run the basin checks the recorded runs need, now",
    )
    args = parser.parse_args(argv)
    from offload_tuner.runtime._host import host_fingerprint

    args.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    previous: dict[str, Any] = {}
    if args.from_recorded:
        runs = load_recorded(args.out_dir)
        previous = (
            json.loads((args.out_dir / "reruns.json").read_text()) if (args.out_dir / "reruns.json").exists() else {}
        )
        walls = previous.get("verdicts", {}).get("calibration_wall_s", [])
        for run, wall in zip(runs, walls):
            run["calibration_wall_s"] = wall
    for i in range(1, 0 if args.from_recorded else args.runs + 1):
        print(f"run {i}/{args.runs}: calibrating and benchmarking ...", file=sys.stderr)
        runs.append(run_once(i, args.out_dir, args.effort, args.rounds, args.confirm_rounds, args.plan))
    if args.from_recorded and not args.measure_basins:
        basins = load_basins(args.out_dir)
    else:
        basins = measure_basins(runs, args.out_dir, previous.get("confirm_rounds") or args.confirm_rounds, args.plan)
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m benchmarks.reruns " + " ".join(argv if argv is not None else sys.argv[1:]),
        "host": host_fingerprint(),
        "runs": len(runs),
        "effort": args.effort,
        "plan": None if args.plan is None else str(args.plan),
        "rounds": args.rounds,
        "confirm_rounds": args.confirm_rounds,
        "duration_s": time.perf_counter() - started,
        "verdicts": verdicts(runs, basins),
    }
    if args.from_recorded and previous:  # keep what was measured, say it was re-read
        command = previous["command"].split("; re-analysed")[0]
        report.update(
            command=command + "; re-analysed with --from-recorded",
            duration_s=previous["duration_s"],
            effort=previous["effort"],
            rounds=previous["rounds"],
            created=previous["created"],
            confirm_rounds=previous.get("confirm_rounds", 0),
        )
        if args.measure_basins:
            report["command"] += " --measure-basins"
    (args.out_dir / "reruns.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out_dir / "reruns.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
