"""Kernels of controlled cost for measurement tests: busy-work per element, arguments of known size."""

from __future__ import annotations

from offload_tuner import kernel

ELEMENT_BYTES = 64
SPIN_PER_ELEMENT = 40


def _payload(n: int) -> tuple:
    return (bytes(n * ELEMENT_BYTES),)


@kernel(size=lambda data: len(data) // ELEMENT_BYTES, sample=_payload)
def spin(data: bytes) -> int:
    """About SPIN_PER_ELEMENT loop iterations per element; result is one small int."""
    acc = 0
    for _ in range(len(data) // ELEMENT_BYTES):
        for j in range(SPIN_PER_ELEMENT):
            acc += j
    return acc


@kernel(size=lambda data: len(data) // ELEMENT_BYTES, sample=_payload)
def echo(data: bytes) -> bytes:
    """No compute, all transport: offloading can never pay."""
    return data


@kernel(size=lambda n: n, sample=lambda n: (n,))
def fat_result(n: int) -> list[tuple[int, str, float]]:
    """Cheap compute, a large result of many small objects: unpickling it costs about what computing it
    does, so offloading only moves the work onto the caller's loop (the class that needs the load phase)."""
    return [(i, str(i), float(i)) for i in range(10 * n)]


def timed_spin(data: bytes) -> float:
    """Seconds ``spin(data)`` takes where it runs (in a worker: the worker's own speed, no transport)."""
    import time

    start = time.perf_counter()
    spin(data)
    return time.perf_counter() - start


def noop() -> None:
    return None


def _bad_sample(n: int) -> tuple:
    raise RuntimeError("cannot build inputs")


@kernel(sample=_bad_sample)
def bad_sample(xs: list[int]) -> int:
    return len(xs)


@kernel(sample=lambda n: (list(range(n)),))
def raises_when_big(xs: list[int]) -> int:
    if len(xs) > 8:
        raise ArithmeticError("too big for me")
    return len(xs)


@kernel(sample=lambda n: (list(range(n)),))
def hangs_when_big(xs: list[int]) -> int:
    """Loops forever past 8 elements: the calibration's watchdog must stop it."""
    while len(xs) > 8:
        pass
    return len(xs)


@kernel(size=lambda data: len(data) // ELEMENT_BYTES, sample=_payload)
def nap(data: bytes) -> int:
    """Waits about NAP_PER_ELEMENT_S per element with the GIL released, like a C extension that does: the
    controlled kernel of the thread lane (a process pool would only add pickling)."""
    import time

    time.sleep(len(data) // ELEMENT_BYTES * NAP_PER_ELEMENT_S)
    return len(data)


NAP_PER_ELEMENT_S = 2e-6
