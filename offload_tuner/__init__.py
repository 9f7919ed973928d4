"""offload-tuner: per-kernel, per-host decisions on whether a CPU-bound call runs inline or in a worker pool."""

from offload_tuner._registry import KernelSizeError, kernel

__all__ = ["kernel", "KernelSizeError"]
__version__ = "0.1.0"
