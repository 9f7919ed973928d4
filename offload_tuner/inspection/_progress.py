"""The calibrate command's progress line: every event the calibration emits changes it.

Calibration reports through one callback, ``progress(event, **info)`` (:mod:`offload_tuner.calibration`). Each
event kind has a line here; a kind this module does not know still gets a generic line, so that a new event can
never freeze the display. The concurrent phase emits ``load`` once per candidate run (a run is a fraction of a
second to a few seconds), so the line moves through the phase that used to leave it frozen for 18-33 s.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from offload_tuner.inspection._report import format_threshold

KINDS = frozenset(
    {
        "start",
        "transport",
        "kernel",
        "size",
        "validate",
        "gil",
        "kernel_measured",
        "load",
        "kernel_done",
        "shared",
        "shared_done",
        "shared_failed",
        "cluster",
        "cluster_kernel",
        "cluster_scatter",
    }
)
"""Every event kind the calibration emits, each with its own line (a test checks this against the source)."""

_PRINTED = frozenset({"start", "shared", "cluster"})
"""Kinds that start a stage: a line of their own, kept on any output (on a terminal it replaces the status line
first, so it is never glued to the end of one)."""
_FINAL = frozenset({"kernel_done", "shared_done", "shared_failed"})
"""Kinds that close a stage: the status line is kept (printed on any output)."""


class TerminalProgress:
    """One updating status line on a terminal; stage lines and results otherwise; nothing when quiet."""

    def __init__(
        self,
        quiet: bool,
        budget_per_kernel: float,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self.budget = budget_per_kernel
        self.clock = clock
        self.index, self.total = 0, 0
        self.done_times: list[float] = []
        self.kernel_started = clock()
        self.indices: dict[str, int] = {}
        """Kernel key -> its index, from the ``kernel`` events (the concurrent phase's events name the key)."""
        self.runs: dict[str, int] = {}
        """Runs under load so far, per kernel (and per stage: the shared stream counts its own)."""
        self.shared = False
        self.line = ""
        """The last text shown."""

    def __call__(self, event: str, **info: Any) -> None:
        if self.quiet:
            return
        handler = getattr(self, f"_on_{event}", None) if event in KINDS else None
        text = handler(info) if handler is not None else _generic(event, info)
        self._status(text, final=event in _PRINTED or event in _FINAL)

    def _status(self, text: str, final: bool = False) -> None:
        """On a terminal: replace the status line (and keep it when ``final``). Elsewhere: final lines only."""
        self.line = text
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
            self.stream.flush()
        elif final:
            print(text, file=self.stream)

    def _prefix(self, key: str) -> str:
        index = self.indices.get(key, self.index)
        return f"[{index + 1}/{self.total}] {key}"

    def _left(self) -> str:
        remaining = self.total - self.index
        per = (sum(self.done_times) / len(self.done_times)) if self.done_times else self.budget * 1.5
        return f"~{max(0.0, remaining * per - (self.clock() - self.kernel_started)):.0f}s left"

    # ----------------------------------------------------------------------------- one method per kind

    def _on_start(self, info: dict[str, Any]) -> str:
        self.total = info["kernels"]
        return f"calibrating {self.total} kernel(s), effort {info['effort']}; measuring the executor..."

    def _on_transport(self, info: dict[str, Any]) -> str:
        return f"executor: round trips with a {info['payload']}-byte payload"

    def _on_kernel(self, info: dict[str, Any]) -> str:
        self.index = info["index"]
        self.total = info.get("total", self.total)
        self.indices[info["kernel"]] = self.index
        self.kernel_started = self.clock()
        return self._prefix(info["kernel"])

    def _on_size(self, info: dict[str, Any]) -> str:
        return f"{self._prefix(info['kernel'])}  size {info['size']}  {self._left()}"

    def _on_validate(self, info: dict[str, Any]) -> str:
        return f"{self._prefix(info['kernel'])}  validating at {info['size']}  {self._left()}"

    def _on_gil(self, info: dict[str, Any]) -> str:
        return f"{self._prefix(info['kernel'])}  GIL hold in a thread at {info['size']}  {self._left()}"

    def _on_kernel_measured(self, info: dict[str, Any]) -> str:
        spent = self.clock() - self.kernel_started
        self.done_times.append(spent)
        return f"{self._prefix(info['kernel'])}  measured alone in {spent:.1f}s; under load after the others"

    def _on_load(self, info: dict[str, Any]) -> str:
        key = info["kernel"]
        self.runs[key] = self.runs.get(key, 0) + 1
        where = "shared stream: " + key if self.shared else self._prefix(key)
        return (
            f"{where}  under load: run {self.runs[key]}, threshold {format_threshold(info['threshold'])} "
            f"(round {info['round']}/{info['rounds']})"
        )

    def _on_kernel_done(self, info: dict[str, Any]) -> str:
        entry = info["entry"]
        if entry["status"] == "failed":
            outcome = "FAILED: " + str(entry.get("error"))
        else:
            outcome = f"threshold {format_threshold(entry.get('threshold'))}"
            thread = entry.get("thread")
            if thread is not None:
                lane = "never" if thread["threshold"] is None else "from " + str(thread["threshold"])
                outcome += (
                    f"; in a thread it holds the GIL {thread['gil_hold']:.0%} of its run time: thread lane {lane}"
                )
        return f"[{info['index'] + 1}/{info['total']}] {info['kernel']}: {outcome}"

    def _on_shared(self, info: dict[str, Any]) -> str:
        self.shared = True
        self.runs = {}
        text = f"tuning {len(info['kernels'])} kernels together on their shared stream"
        if info.get("unrated"):
            return (
                f"{text}, weighted by equal inline work: the plan's rates are ignored, no rate for "
                f"{', '.join(info['unrated'])}..."
            )
        by = "the plan's rates" if info.get("weighted_by") == "rate" else "equal inline work"
        return f"{text}, weighted by {by}..."

    def _on_shared_done(self, info: dict[str, Any]) -> str:
        return (
            f"shared stream: {info['kernel']} {info['lane']} lane {format_threshold(info['alone'])} alone "
            f"-> {format_threshold(info['threshold'])}"
        )

    def _on_shared_failed(self, info: dict[str, Any]) -> str:
        return f"shared stream: {info['error']}"

    def _on_cluster(self, info: dict[str, Any]) -> str:
        return f"measuring the Dask cluster at {info['address']} ({info['workers']} workers)..."

    def _on_cluster_kernel(self, info: dict[str, Any]) -> str:
        return f"cluster: {info['kernel']} speed at size {info['size']}"

    def _on_cluster_scatter(self, info: dict[str, Any]) -> str:
        return "cluster: scatter against sending payloads with each call"


def _generic(event: str, info: dict[str, Any]) -> str:
    """A kind without its own line: its name and its plain values, so the line still moves."""
    details = ", ".join(f"{k} {v}" for k, v in info.items() if isinstance(v, (str, int, float)) or v is None)
    return f"{event.replace('_', ' ')}: {details}" if details else event.replace("_", " ")
