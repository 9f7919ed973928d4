"""offload-tuner: per-kernel, per-host decisions on whether a CPU-bound call runs inline or in a worker pool.

Production API (stdlib only, no numpy/scikit-learn)::

    from offload_tuner import kernel, run_kernel, set_executor, recommended_pool

    @kernel(size=lambda records: len(records), sample=make_records)
    def cluster(records): ...

    set_executor(recommended_pool())
    labels = await run_kernel(cluster, records)          # the profile decides
    labels = await run_kernel(cluster, records, offload_if=True)   # the caller decides

Calibration (``offload-tuner calibrate``) writes the per-host profile the runtime reads.
"""

from offload_tuner._backends import Backend, ResultNotPicklable, recommended_pool, register_backend
from offload_tuner._profile import Profile, ProfileError, default_profile_path
from offload_tuner._registry import KernelSizeError, kernel
from offload_tuner._runtime import (
    Decision,
    OffloadTunerWarning,
    ProfileOverriddenWarning,
    current_profile,
    decide,
    get_executor,
    load_profile,
    run_kernel,
    run_kernel_sync,
    set_executor,
    unload_profile,
)

__all__ = [
    "Backend",
    "Decision",
    "KernelSizeError",
    "OffloadTunerWarning",
    "Profile",
    "ProfileError",
    "ProfileOverriddenWarning",
    "ResultNotPicklable",
    "current_profile",
    "decide",
    "default_profile_path",
    "get_executor",
    "kernel",
    "load_profile",
    "recommended_pool",
    "register_backend",
    "run_kernel",
    "run_kernel_sync",
    "set_executor",
    "unload_profile",
]
__version__ = "0.1.0"
