"""What the production statistics cost per call: this decision path against an earlier one, in one process.

    git worktree add /tmp/before 6c51ef9     # the last commit before statistics
    python -m benchmarks.stats_cost --against /tmp/before

pytest-benchmark runs its tests one after the other, and a shared VM's speed drifts within minutes, so a
difference of ~100 ns between two tests is lost in it. Here both versions of ``_offload_target`` (the
decision shared by ``run_kernel`` and its twin) run in one interpreter, each with its own profile and
executor installed, interleaved round by round; the difference of medians is what the newer one adds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.bench_kernels import tiny_sized as tiny
from offload_tuner.runtime import _decision, _runtime
from offload_tuner.runtime._host import host_identity
from offload_tuner.runtime._profile import SCHEMA_VERSION
from offload_tuner.runtime._registry import code_fingerprint, kernel_key


def load_runtime(checkout: Path):  # type: ignore[no-untyped-def]
    """The ``_runtime`` module of another checkout, under another name (it shares this one's other modules)."""
    candidates = [checkout / "offload_tuner" / "runtime" / "_runtime.py", checkout / "offload_tuner" / "_runtime.py"]
    found = next((c for c in candidates if c.is_file()), None)  # the flat layout before the subpackages
    spec = importlib.util.spec_from_file_location("earlier_runtime", found) if found else None
    if spec is None or spec.loader is None:
        raise SystemExit(f"benchmarks.stats_cost: no offload_tuner/runtime/_runtime.py under {checkout}")
    if found == candidates[1]:  # it imports the runtime's modules by their flat names: point those at ours
        for name in ("_backends", "_host", "_profile", "_registry", "_stats", "_costmodel", "_policy"):
            sys.modules.setdefault(f"offload_tuner.{name}", importlib.import_module(f"offload_tuner.runtime.{name}"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["earlier_runtime"] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", type=Path, required=True, metavar="CHECKOUT")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    earlier = load_runtime(args.against)
    path = Path(tempfile.mkdtemp()) / "profile.json"
    path.write_text(
        json.dumps(
            {
                "schema": SCHEMA_VERSION,
                "host": host_identity(),
                "executor": {"kind": "thread"},
                "kernels": {
                    kernel_key(tiny): {"threshold": 256, "status": "ok", "code_fingerprint": code_fingerprint(tiny)}
                },
            }
        )
    )
    pool = ThreadPoolExecutor(1)  # never used: the size (3) is below the threshold; the decision is what is timed
    for module in (_runtime, earlier):
        module.set_executor(pool)
        module.load_profile(path)
    call = ([1, 2, 3],)

    def per_call(module, offload_if):  # type: ignore[no-untyped-def]
        decide = _decision.offload_target if module is _runtime else module._offload_target
        start = time.perf_counter()
        for _ in range(args.calls):
            decide(tiny, call, offload_if)
        return (time.perf_counter() - start) / args.calls * 1e9

    runs: dict[str, list[float]] = {"earlier": [], "now": [], "earlier, caller decides": [], "now, caller decides": []}
    for _ in range(args.rounds):
        runs["earlier"].append(per_call(earlier, None))
        runs["now"].append(per_call(_runtime, None))
        runs["earlier, caller decides"].append(per_call(earlier, False))
        runs["now, caller decides"].append(per_call(_runtime, False))
    pool.shutdown()
    medians = {name: statistics.median(values) for name, values in runs.items()}
    for name, value in medians.items():
        print(f"{name:26s} {value:7.0f} ns per decision")
    print(
        f"added, profile decides: {medians['now'] - medians['earlier']:+.0f} ns; "
        f"caller decides: {medians['now, caller decides'] - medians['earlier, caller decides']:+.0f} ns"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
