"""Turn a pytest-benchmark JSON file into the Markdown table the README quotes.

    python -m benchmarks.summarize benchmarks/results/decision_overhead.json > benchmarks/results/decision_overhead.md

Figures are per call (each benchmark round awaits ``calls_per_round`` calls); "added" is the median
difference against the group's baseline, measured side by side in the same run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BASELINES = {"decision-overhead": "test_old_boolean_gate", "decision-overhead-sync": "test_sync_plain_call"}


def _fmt(seconds: float) -> str:
    if abs(seconds) >= 1:
        return f"{seconds:.2f} s"
    if abs(seconds) >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e9:.0f} ns"


def summarize(path: Path) -> str:
    data = json.loads(path.read_text())
    machine = data.get("machine_info", {})
    lines = [
        f"Host: {machine.get('node')} ({machine.get('cpu', {}).get('brand_raw', machine.get('processor'))}), "
        f"Python {machine.get('python_version')}, {data.get('datetime', '')[:19]}",
        "",
        "| group | benchmark | median per call (per round if one call per round) | added per call vs baseline | rounds |",
        "|---|---|---|---|---|",
    ]
    by_group: dict[str, list[dict]] = {}
    for bench in data["benchmarks"]:
        by_group.setdefault(bench["group"], []).append(bench)
    for group, benches in by_group.items():
        per_call = {b["name"]: b["stats"]["median"] / b["extra_info"].get("calls_per_round", 1) for b in benches}
        base = per_call.get(BASELINES.get(group, ""))
        for b in benches:
            value = per_call[b["name"]]
            paired = b["extra_info"].get("paired_added_s")
            if paired is not None:  # old and new alternating within every round: the difference is measured there
                q1, q3 = b["extra_info"]["paired_added_quartiles_s"]
                lines.append(
                    f"| {group} | {b['name']} | {_fmt(value)} (both, alternating) | "
                    f"{'+' if paired >= 0 else '-'}{_fmt(abs(paired))} (quartiles {_fmt(q1)} to {_fmt(q3)}) | "
                    f"{b['extra_info']['paired_rounds']} |"
                )
                continue
            added = (
                "baseline"
                if b["name"] == BASELINES.get(group)
                else (
                    ("+" + _fmt(value - base) if value >= base else "-" + _fmt(base - value))
                    if base is not None
                    else "-"
                )
            )
            if b["extra_info"].get("show_range") and b["stats"]["rounds"] > 1:  # few, long rounds: show them all
                value_text = f"{_fmt(value)} (fastest {_fmt(b['stats']['min'])}, slowest {_fmt(b['stats']['max'])})"
            else:
                value_text = _fmt(value)
            lines.append(f"| {group} | {b['name']} | {value_text} | {added} | {b['stats']['rounds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(summarize(Path(sys.argv[1])))
