"""Import + first decision cost of the production path, in a fresh interpreter each time.

    python -m benchmarks.import_cost [PROFILE] [--runs N]

Prints the median over runs of: ``import offload_tuner`` alone, and ``import`` + ``load_profile`` +
the first ``decide`` (which resolves the kernel's entry). Also lists heavy modules, which must be none.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

PROBE = r"""
import sys, time
t0 = time.perf_counter()
import offload_tuner
t1 = time.perf_counter()
offload_tuner.load_profile(sys.argv[1])
from benchmarks.bench_kernels import tiny
offload_tuner.decide(tiny, [1, 2, 3])
t2 = time.perf_counter()
heavy = [m for m in ("numpy", "sklearn", "scipy", "matplotlib") if m in sys.modules]
print(json.dumps({"import_s": t1 - t0, "first_decision_s": t2 - t0, "heavy": heavy}))
"""


def main(argv: list[str]) -> None:
    profile = argv[0] if argv and not argv[0].startswith("--") else "calibration/reference/vm.json"
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 15
    rows = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", "import json\n" + PROBE, profile], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(out.stdout))
    print(
        f"import offload_tuner: median {statistics.median(r['import_s'] for r in rows) * 1e3:.1f} ms; "
        f"import + load_profile + first decide: median "
        f"{statistics.median(r['first_decision_s'] for r in rows) * 1e3:.1f} ms over {runs} fresh interpreters; "
        f"heavy modules imported: {sorted({m for r in rows for m in r['heavy']}) or 'none'}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
