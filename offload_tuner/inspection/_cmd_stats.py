"""``offload-tuner drift`` and ``retune``: a stats file of production timings against the profile's models."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from offload_tuner.inspection._cli_shared import (
    EXIT_FAILURES,
    EXIT_OK,
    EXIT_PROFILE,
    EXIT_STATS,
    EXIT_WRITE,
    profile_path,
    read_or_report,
)


def _profile_and_traffic(args: argparse.Namespace) -> tuple[Any, Any, int]:
    """The profile and the observed traffic per kernel, or an exit code after a message naming the problem."""
    from offload_tuner.runtime._host import host_check_mode
    from offload_tuner.runtime.feedback._retune import traffic
    from offload_tuner.runtime.feedback._statsfile import StatsError, read_stats

    path = profile_path(args.profile)
    profile = read_or_report(path)
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


def cmd_drift(args: argparse.Namespace) -> int:
    from offload_tuner.runtime.feedback._drift import extrapolation_checks, guard_checks
    from offload_tuner.runtime.feedback._retune import MIN_SAMPLES, drift

    profile, observed, code = _profile_and_traffic(args)
    if profile is None:
        return code
    results = drift(profile.data, observed)
    guards = {g.key: g for g in guard_checks(profile.data, observed)}
    extrapolations = {c.key: c for c in extrapolation_checks(profile.data, observed)}
    broken = [key for key, g in guards.items() if g.holds is False]
    unpaid = [key for key, c in extrapolations.items() if c.holds is False]
    needs = [r for r in results if r.drifted]
    for r in results:
        wrong = r.drifted or r.key in broken or r.key in unpaid
        verdict = "RECALIBRATE" if wrong else ("ok" if r.judged else "no verdict")
        print(f"{r.key}: {verdict}")
        for b in r.buckets:
            print(f"  {'!' if b.drifted else ' '} {b.sentence()}")
        for line in guard_lines(observed.get(r.key), guards.get(r.key), extrapolations.get(r.key)):
            print(line)
    silent = sorted(set(profile.kernels) - {r.key for r in results})
    if silent:
        print(f"no samples for: {', '.join(silent)}")
    for line in assumed_mix_misses(profile.data, observed):
        print(line)
    if broken:
        print(
            f"\n{', '.join(broken)}: the loop budget's guard rests on an extrapolation past the calibrated top that "
            "production's timings do not bear out: calibrate with the real mix stated (@kernel(workload=...) or the "
            "plan's workload_range) so the ladder measures those sizes."
        )
    if needs:
        names = ", ".join(r.key for r in needs)
        print(
            f"\n{names} no longer behave{'s' if len(needs) == 1 else ''} as calibrated (median observed/predicted "
            f"beyond 1.5x with at least {MIN_SAMPLES} samples): run `offload-tuner calibrate` on this host again."
        )
    if unpaid:
        print(
            f"\n{', '.join(unpaid)}: offloading past the calibrated top rests on the models' extrapolation, which "
            "production's timings say does not pay: calibrate with the real mix stated (@kernel(workload=...) or the "
            "plan's workload_range) so the ladder measures those sizes."
        )
    if needs or broken or unpaid:
        return EXIT_FAILURES
    judged = sum(r.judged for r in results)
    print(
        f"\nno drift: {judged} size bucket(s) with {MIN_SAMPLES}+ samples agree with the models within 1.5x."
        if judged
        else f"\nno verdict yet: no size bucket has {MIN_SAMPLES} samples."
    )
    return EXIT_OK


def guard_lines(t: Any, check: Any, extrapolation: Any = None) -> list[str]:
    """Under a kernel's drift lines: the offloaded calls the loop budget's guard decided (``stats()``'s
    ``guarded``, summed over the file's processes) and whether its extrapolation holds (:func:`guard_checks`); the
    same for the extrapolated offload size (``extrapolated``, :func:`extrapolation_checks`)."""
    lines = []
    if t is not None and t.extrapolated:
        about = "" if t.extrapolated_exact else "about "
        lines.append(
            f"    extrapolated: decided {about}{t.extrapolated:g} of the {sum(t.offload.values()):g} offloaded calls "
            "(sizes past the calibrated top from the extrapolated offload size up to the threshold, which alone "
            "would have run them inline)"
        )
    if extrapolation is not None:
        lines.append(f"  {'!' if extrapolation.holds is False else ' '} {extrapolation.sentence}")
    if t is not None and t.guarded:
        offloaded = sum(t.offload.values())
        about = "" if t.guarded_exact else "about "
        lines.append(
            f"    guard: decided {about}{t.guarded:g} of the {offloaded:g} offloaded calls (sizes from the guard up to "
            "the threshold, which alone would have run them inline)"
        )
    if check is not None:
        lines.append(f"  {'!' if check.holds is False else ' '} {check.sentence}")
    return lines


def assumed_mix_misses(profile: Mapping[str, Any], observed: Mapping[str, Any]) -> list[str]:
    """A line per kernel whose mix calibration assumed (none was stated) while most calls observed fall outside
    it: its threshold was weighed over sizes production does not call. A size bucket counts as outside only
    when its whole octave is; a stated mix, or one whose source is not recorded, is not judged here."""
    lines = []
    for key, t in observed.items():
        entry = (profile.get("kernels") or {}).get(key) or {}
        if entry.get("workload_source") != "assumed" or not entry.get("workload_range") or not t.calls:
            continue
        lo, hi = entry["workload_range"]
        mix = t.mix()
        outside = sum(n for floor, n in mix.items() if max(2 * floor - 1, 0) < lo or floor > hi)
        if outside * 2 > t.calls:
            lines.append(
                f"{key}: {outside / t.calls:.0%} of the {t.calls:g} calls observed fall outside the mix calibration "
                f"assumed ({lo:g}..{hi:g}, no mix was stated): state the real sizes with @kernel(workload=(lo, hi)) "
                "or the plan's workload_range and run `offload-tuner calibrate` again"
            )
    return lines


def cmd_retune(args: argparse.Namespace) -> int:
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
        if r.budget is not None:
            print(f"  {r.budget}")
        if r.held is not None:
            print(f"  the makespan model proposed {format_threshold(r.proposed)}; {r.held}")
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
