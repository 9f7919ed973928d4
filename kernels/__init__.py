"""Reference kernels: the calibration bed, the benchmark workload, and worked examples of ``@kernel``.

Importing this package registers every kernel. Each one is a pure module-level function on seeded
synthetic data, chosen so that together they cover the cost shapes an offload decision has to handle:

=====================================  ======================================================================
kernel                                 cost shape
=====================================  ======================================================================
``clustering.cluster_observations``    O(n^2) pure Python, GIL held; args O(n), result O(n) ints
``clustering.cluster_campaigns``       O(n^2) like the above with a larger constant per pair
``ranking.rank_latencies``             O(n log n) sort of 2-tuples; result a few tuples
``rows.bytes_by_status``               O(n) trivial work on dicts; pickling the args dominates
``expand.expand_schedule``             O(n) cheap rows from two ints; pickling the result dominates
``numeric.detect_spikes``              O(n * window) in numpy C loops; args one raw buffer (needs numpy)
``frames.smooth_frames``               O(n) rows of small numpy calls, GIL held; a big buffer in and out
``graphs.graph_eccentricities``        O(k^3) pure Python on a few hundred edges; tiny args, tiny result
=====================================  ======================================================================

``records`` holds the frozen records and seeded generators the clusterers share.

This folder is installed and imported as ``offload_tuner_kernels`` (``[tool.setuptools.package-dir]`` in
pyproject.toml), never as ``kernels``: that top-level name belongs to an unrelated PyPI package. Imports
inside it are relative so the folder works under whatever name it is mapped to; profile keys read
``offload_tuner_kernels.clustering:cluster_observations``. ``plan.json`` here is a symlink to
``calibration/plan.json`` (the one source of truth), shipped as package data so ``offload-tuner calibrate``
finds the bundled plan in a regular install too.
"""

from __future__ import annotations

from .clustering import cluster_campaigns, cluster_observations
from .expand import expand_schedule
from .graphs import graph_eccentricities
from .ranking import rank_latencies
from .rows import bytes_by_status

__all__ = [
    "bytes_by_status",
    "cluster_campaigns",
    "cluster_observations",
    "expand_schedule",
    "graph_eccentricities",
    "rank_latencies",
]

# numpy is an optional dependency (the ``calibrate`` extra). Without it the other kernels must still
# import: a worker unpickling any of them imports this package first.
try:
    from .frames import smooth_frames  # noqa: F401  (re-exported: __all__ gains it below)
    from .numeric import detect_spikes  # noqa: F401  (re-exported: __all__ gains it below)
except ModuleNotFoundError as exc:
    if exc.name != "numpy":
        raise
else:
    __all__.append("detect_spikes")
    __all__.append("smooth_frames")
