"""Figures of a profile: measured samples, fitted curves, thresholds (matplotlib; never imported by the runtime).

The one place for plots, shared by ``offload-tuner plot`` and the notebooks in ``notebooks/``:

* :func:`kernel_figure` — one kernel: samples, fitted curves, threshold and its interval, validation round
  trips, and the compute fit's residuals;
* :func:`overview_figure` — every kernel's threshold and interval against its calibrated range;
* :func:`comparison_table` / :func:`comparison_figure` — two profiles (e.g. two hosts) kernel by kernel;
* :func:`threshold_vs_budget_figure` — what-if: thresholds recomputed from the stored models under
  other loop budgets (nothing is measured);
* :func:`write_pngs` — one PNG per kernel plus ``overview.png``.

Figures are built with :class:`matplotlib.figure.Figure`, not pyplot: no window, no global figure list to
leak, and each call returns a figure the caller saves or displays. Everything is read from the profile's
JSON data (a ``dict``); the host is never checked, so a profile from another machine plots fine. A constant to
compare with (the hand-picked ``offload_if=len(x) >= 256`` a plan's ``compare_with`` names) is drawn only where
the profile records one.

Each figure has its module (``_plot_kernel``, ``_plot_overview``, ``_plot_compare``, ``_plot_whatif``, sharing
``_plot_common``); this one gathers their public names and writes the PNG files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Imported here, not only in the figure modules: with the plot extra missing this import is what fails (the CLI
# turns it into its "install matplotlib" message), even when a figure module is already in sys.modules.
import matplotlib  # noqa: F401

from offload_tuner.inspection._plot_common import _kernels
from offload_tuner.inspection._plot_compare import comparison_figure, comparison_table
from offload_tuner.inspection._plot_kernel import kernel_figure
from offload_tuner.inspection._plot_overview import overview_figure
from offload_tuner.inspection._plot_whatif import threshold_vs_budget_figure

__all__ = [
    "comparison_figure",
    "comparison_table",
    "kernel_figure",
    "overview_figure",
    "png_name",
    "threshold_vs_budget_figure",
    "write_pngs",
]


def png_name(key: str) -> str:
    """A safe file name for a kernel key: ``offload_tuner_kernels.clustering:cluster_observations`` ->
    ``offload_tuner_kernels.clustering-cluster_observations.png``."""
    stem = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in key.replace(":", "-")).strip(".-") or "kernel"
    return f"{stem[:150]}.png"


def write_pngs(profile_data: Mapping[str, Any], out_dir: str | os.PathLike[str], *, dpi: int = 100) -> list[Path]:
    """One PNG per kernel with fitted costs (failed kernels appear only in the overview), then ``overview.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used = {"overview.png"}
    for key, entry in _kernels(profile_data).items():
        if "costs" not in entry:
            continue
        name = png_name(key)
        stem, k = name[:-4], 2
        while name in used:
            name, k = f"{stem}_{k}.png", k + 1
        used.add(name)
        path = out / name
        kernel_figure(profile_data, key).savefig(path, dpi=dpi)
        written.append(path)
    path = out / "overview.png"
    overview_figure(profile_data).savefig(path, dpi=dpi)
    written.append(path)
    return written
