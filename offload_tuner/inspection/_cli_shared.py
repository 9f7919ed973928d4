"""What every ``offload-tuner`` command shares: the exit codes and reading the profile it is pointed at.

The commands live in their own modules (``_cmd_*``) and ``_cli`` dispatches to them, so the codes sit here, below
both, and ``_cli`` re-exports them (no import cycle).
"""

from __future__ import annotations

import sys
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


def profile_path(path: Path | None) -> Path:
    from offload_tuner.runtime._host import configured_profile_path

    return path if path is not None else configured_profile_path()


def fail(message: str, code: int) -> tuple[None, int]:
    print(f"offload-tuner: {message}", file=sys.stderr)
    return None, code


def shape_text(executor: Any) -> str:
    """The shape a profile was calibrated for: "2 processes x 1 workers" (profiles before shapes: 1 process)."""
    processes = executor.get("processes", 1)
    workers = executor.get("workers_per_process", executor.get("workers", "?"))
    return f"{processes} process{'es' if processes != 1 else ''} x {workers} workers"


def read_or_report(path: Path) -> Any:
    """The profile at ``path``, or None after saying on stderr why it cannot be read."""
    from offload_tuner.runtime._profile import ProfileError, read_profile

    try:
        return read_profile(path)
    except ProfileError as exc:
        print(f"offload-tuner: {exc}", file=sys.stderr)
        return None
