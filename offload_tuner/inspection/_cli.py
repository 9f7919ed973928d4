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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from offload_tuner.inspection._cli_shared import (
    EXIT_CLUSTER,
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_NO_KERNELS,
    EXIT_OK,
    EXIT_PROFILE,
    EXIT_STATS,
    EXIT_TARGET,
    EXIT_USAGE,
    EXIT_WRITE,
)
from offload_tuner.inspection._cmd_calibrate import cmd_calibrate
from offload_tuner.inspection._cmd_inspect import cmd_check, cmd_explain, cmd_plot, cmd_show
from offload_tuner.inspection._cmd_stats import cmd_drift, cmd_retune

# The exit codes live in _cli_shared, below the commands; tests, docs and scripts read them from here.
__all__ = [
    "EXIT_CLUSTER",
    "EXIT_FAILURES",
    "EXIT_INTERRUPTED",
    "EXIT_NO_KERNELS",
    "EXIT_OK",
    "EXIT_PROFILE",
    "EXIT_STATS",
    "EXIT_TARGET",
    "EXIT_USAGE",
    "EXIT_WRITE",
    "main",
]


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
    _add_policy(cal)
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


def _add_policy(cal: Any) -> None:
    """The policy knobs: calls in flight, the loop budget, the objective."""
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
        "--objective",
        choices=("throughput", "latency"),
        default=None,
        help="what the measurement under load decides by: the makespan of the reference workload (throughput, the "
        "default) or the p99 latency of its calls as their callers see it, waits for the loop included (latency: "
        'for request-serving services); default: the plan\'s "objective", else throughput',
    )


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
        "calibrate": cmd_calibrate,
        "show": cmd_show,
        "explain": cmd_explain,
        "check": cmd_check,
        "plot": cmd_plot,
        "drift": cmd_drift,
        "retune": cmd_retune,
    }[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("offload-tuner: interrupted; nothing was written, any previous profile is untouched", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
