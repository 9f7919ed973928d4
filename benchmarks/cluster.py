"""A Dask cluster as a backend, on this machine: correctness, its measured costs, decisions, and the what-if.

Starts a LocalCluster on 127.0.0.1 (processes, 2 workers x 1 thread, random ports, no dashboard), measures it as
``offload-tuner calibrate --dask`` does (transport sweep, each bundled kernel's speed on its workers), then

1. runs every bundled kernel on the cluster through ``run_kernel`` at sizes across its workload range and checks the
   result equals the inline one;
2. records the cluster's round trip and bandwidth next to the local process pool's (from the profile);
3. prints each bundled kernel's decision at the bottom, middle and top of its workload range and at 4x the top:
   process pool only; pool and cluster, both idle; pool and cluster with the pool's workers busy (two calls of
   the top size in flight, set on the lane as the runtime's own backlog counter would);
4. the what-if table: a saturated stream at the top size on the local pool, on this cluster, and on the same
   cluster with 8 and 64 workers (from the measured costs).

A LocalCluster shares this host's 2 cores: it adds no capacity here, which is why the what-if matters. Its costs
are real Dask costs (scheduler round trip, client batching), so the decisions are the ones a remote cluster with
the same round trip would get when its workers are as fast as this host.

    python -m benchmarks.cluster --profile calibration/reference/vm.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import offload_tuner
from benchmarks.workload import RESULTS, load_workloads, report_header, write_report

OUT = RESULTS / "cluster"


def _sizes(lo: int, hi: int) -> list[int]:
    mid = round((lo * hi) ** 0.5)
    return [lo, mid, hi, hi * 4]


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", type=Path, required=True, help="a profile of the bundled kernels on this host")
    parser.add_argument("--effort", choices=("quick", "standard"), default="standard")
    parser.add_argument("--smoke", action="store_true", help="one kernel, quick effort: proves it runs")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    import offload_tuner_kernels  # noqa: F401  (registers the bundled kernels)
    from offload_tuner.calibration._calibrate import EFFORTS, same_result
    from offload_tuner.calibration._cluster import calibrate_cluster
    from offload_tuner.runtime import _state
    from offload_tuner.runtime._placement import ClusterCosts, what_if
    from offload_tuner.runtime._policy import KernelCosts, PolicyKnobs, TransportModel
    from offload_tuner.runtime._registry import spec_by_key

    base = json.loads(args.profile.read_text())
    workloads = [w for w in load_workloads() if w.key in base["kernels"] and base["kernels"][w.key]["status"] == "ok"]
    if args.smoke:
        workloads = [w for w in workloads if w.key.endswith("graph_eccentricities")]
    specs = [spec_by_key(w.key) for w in workloads]
    warnings.filterwarnings("ignore", category=offload_tuner.ProfileOverriddenWarning)
    started = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": False},
        silence_logs=logging.ERROR,
    )
    client = Client(cluster, set_as_default=False)
    pool = offload_tuner.recommended_pool()
    try:
        executor = client.get_executor(pure=False)
        print(f"measuring the cluster at {cluster.scheduler_address} ...", file=sys.stderr)
        section = calibrate_cluster(
            executor, pool, specs, base["kernels"], EFFORTS["quick" if args.smoke else args.effort]
        )
        profile_data = {**base, "cluster": section}
        path = args.out_dir / ("profile-smoke.json" if args.smoke else "profile.json")
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(profile_data, indent=1) + "\n")
        profile = offload_tuner.load_profile(path, strict=True, check_host=False)
        assert profile is not None and profile.cluster is not None
        knobs = PolicyKnobs.from_json(base.get("policy", {}))
        local = TransportModel.from_json(base["transport"]["model"])
        remote: ClusterCosts = profile.cluster

        rows = []
        for w, spec in zip(workloads, specs):
            print(f"cluster {w.key} ...", file=sys.stderr)
            sizes = _sizes(w.lo, w.hi)
            decisions: dict[str, list[str]] = {
                "process only": [],
                "with the cluster, idle": [],
                "with the cluster, pool busy": [],
            }
            offload_tuner.set_executors({"process": pool})
            decisions["process only"] = [offload_tuner.decide(spec.fn, *spec.sample(n)).backend for n in sizes]
            offload_tuner.set_executors({"process": pool, "dask": executor})
            decisions["with the cluster, idle"] = [
                offload_tuner.decide(spec.fn, *spec.sample(n)).backend for n in sizes
            ]
            lane = _state._snapshot.lanes["process"]
            costs = KernelCosts.from_json(base["kernels"][w.key]["costs"])
            top = costs.compute.predict(w.hi)
            lane.inflight, lane.work = pool._max_workers, 2 * top  # two top-size calls in flight
            decisions["with the cluster, pool busy"] = [
                offload_tuner.decide(spec.fn, *spec.sample(n)).backend for n in sizes
            ]
            lane.inflight, lane.work = 0, 0.0
            # Correctness: each size through run_kernel with the cluster installed, and once forced onto the cluster.
            identical = True
            for n in sizes[:3]:
                args_n = spec.sample(n)
                expected = spec.fn(*args_n)
                via_runtime = offload_tuner.run_kernel_sync(spec.fn, *args_n)
                import pickle

                from offload_tuner.runtime._backends import dumps_call, invoke_pickled

                on_cluster = pickle.loads(executor.submit(invoke_pickled, dumps_call(spec.fn, args_n)).result())
                identical &= same_result(expected, via_runtime) and same_result(expected, on_cluster)
            ratio = remote.ratios.get(w.key)
            plan = (
                []
                if ratio is None
                else [
                    {"backend": r.backend, "slots": r.slots, "period_s": r.period_s, "latency_s": r.latency_s}
                    for r in what_if(costs, local, remote, ratio, knobs, w.hi, (8, 64))
                ]
            )
            rows.append(
                {
                    "kernel": w.key,
                    "sizes": sizes,
                    "decisions": decisions,
                    "identical": identical,
                    "worker_compute_ratio": ratio,
                    "what_if_size": w.hi,
                    "what_if": plan,
                }
            )
        offload_tuner.set_executors({})
    finally:
        offload_tuner.set_executors({})
        pool.shutdown(wait=True, cancel_futures=True)
        client.close()
        cluster.close()
    report = {
        **report_header("benchmarks.cluster", argv, args.smoke),
        "profile": str(args.profile),
        "cluster": {
            "address": remote.address,
            "workers": remote.workers,
            "threads": remote.threads,
            "transport": remote.transport.to_json(),
            "scatter": section["scatter"],
        },
        "local_transport": local.to_json(),
        "duration_s": round(time.perf_counter() - started, 1),
        "kernels": rows,
    }
    write_report(report, args.out_dir, "cluster-smoke" if args.smoke else "cluster", to_markdown(report))
    print(to_markdown(report))
    return 0 if all(row["identical"] for row in rows) else 1


def to_markdown(report: dict[str, Any]) -> str:
    c, lt = report["cluster"], report["local_transport"]
    ct = c["transport"]

    def bandwidth(per_byte: float) -> str:
        return f"{1e-6 / per_byte:.0f} MB/s" if per_byte > 0 else "unmeasurable"

    lines = [
        f"# A Dask cluster as a backend (`{report['command']}`, {report['created']})",
        "",
        f"LocalCluster on 127.0.0.1: {c['workers']} workers, {c['threads']} threads; it shares this host's cores, so it "
        "adds no capacity here: the decisions below are what its measured costs say, the what-if is the plan.",
        "",
        "| | no-op round trip | per-byte (bandwidth) | caller CPU per call |",
        "|---|---|---|---|",
        f"| local process pool (profile) | {_fmt_s(lt['round_trip_s'])} | {bandwidth(lt['round_trip_per_byte_s'])} "
        f"| {_fmt_s(lt['caller_cpu_s'])} |",
        f"| Dask cluster (measured now) | {_fmt_s(ct['round_trip_s'])} | {bandwidth(ct['round_trip_per_byte_s'])} "
        f"| {_fmt_s(ct['caller_cpu_s'])} |",
        "",
        "## Large arguments: with the call or by `scatter` (no-op call, median of 3 each, interleaved)",
        "",
        "| payload | with the call | scatter to a worker, then the call |",
        "|---|---|---|",
        *[
            f"| {r['bytes'] / 1e6:.1f} MB | {_fmt_s(r['with_call_s'])} | {_fmt_s(r['scatter_s'])} |"
            for r in c["scatter"]["rows"]
        ],
        "",
        "Scatter from: "
        + (
            "never (arguments always go with the call)"
            if c["scatter"]["from_bytes"] is None
            else f"{c['scatter']['from_bytes']} bytes"
        ),
        "",
        "## Decisions (where an offloaded call goes; `inline` below the threshold)",
        "",
        "| kernel | worker speed vs host | sizes | process only | + cluster, idle | + cluster, pool busy | results identical |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["kernels"]:
        d = row["decisions"]
        ratio = row["worker_compute_ratio"]
        lines.append(
            f"| `{row['kernel'].split(':')[-1]}` | {'-' if ratio is None else f'{ratio:.2f}x'} | "
            f"{', '.join(map(str, row['sizes']))} | {' / '.join(d['process only'])} | "
            f"{' / '.join(d['with the cluster, idle'])} | {' / '.join(d['with the cluster, pool busy'])} | "
            f"{'yes' if row['identical'] else '**NO**'} |"
        )
    lines += [
        "",
        "Pool busy: both process workers hold a call of the top size (the backlog the runtime counts).",
        "",
        "## What-if: a saturated stream at the top of each workload range, per call",
        "",
        "| kernel | size | process pool | this cluster | 8 workers | 64 workers | one call on the cluster |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["kernels"]:
        plan = row["what_if"]
        if not plan:
            continue
        lines.append(
            f"| `{row['kernel'].split(':')[-1]}` | {row['what_if_size']} | "
            + " | ".join(f"{_fmt_s(p['period_s'])}" for p in plan)
            + f" | {_fmt_s(plan[1]['latency_s'])} |"
        )
    lines += [
        "",
        f"Measured in {report['duration_s']} s. The what-if keeps the measured round trip, bandwidth and "
        "worker speed and adds workers of the same shape; enough callers are assumed to keep every slot busy.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
