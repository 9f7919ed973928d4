"""Every reference kernel returns the same result offloaded (through run_kernel's process backend) as inline."""

from __future__ import annotations

import asyncio

import pytest

import offload_tuner_kernels
from offload_tuner import run_kernel, run_kernel_sync, set_executor
from offload_tuner.runtime._registry import registered

REFERENCE = [spec for spec in registered() if spec.fn.__module__.startswith("offload_tuner_kernels.")]


def same(a, b) -> bool:
    try:
        import numpy as np

        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    except ImportError:
        pass
    return type(a) is type(b) and a == b


def test_every_bundled_kernel_is_covered():
    assert {spec.fn.__name__ for spec in REFERENCE} >= set(offload_tuner_kernels.__all__)
    assert len(REFERENCE) >= 6


@pytest.mark.parametrize("spec", REFERENCE, ids=lambda s: s.key)
def test_offloaded_equals_inline(pool, spec):
    set_executor(pool)
    args = spec.sample(64)
    inline = spec.fn(*args)
    offloaded = asyncio.run(run_kernel(spec.fn, *args, offload_if=True))
    assert same(offloaded, inline)
    assert same(run_kernel_sync(spec.fn, *args, offload_if=True), inline)
