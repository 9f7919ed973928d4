"""Kernels for the sibling-process tests (:mod:`offload_tuner.calibration._siblings`): importable by key, as
siblings import them."""

from __future__ import annotations

import os
import time

from offload_tuner import kernel
from offload_tuner.calibration._siblings import SIBLING_VARIABLE

ELEMENT_BYTES = 64


def _payload(n: int) -> tuple:
    return (bytes(n * ELEMENT_BYTES),)


@kernel(size=lambda data: len(data) // ELEMENT_BYTES, sample=_payload)
def hangs_in_siblings(data: bytes) -> int:
    """Busy work in the measuring process; in a sibling (inline or in its pool's workers, which inherit the
    variable) it sleeps for an hour: a sibling that never answers."""
    if os.environ.get(SIBLING_VARIABLE):
        time.sleep(3600)
    acc = 0
    for _ in range(len(data) // ELEMENT_BYTES):
        for j in range(40):
            acc += j
    return acc
